//! Redis pub/sub triggers through `warden serve` against the real Redis:
//! a module hears only channels under its own kv prefix, failures are
//! retried, then published to its dead-letter channel.

mod common;

use std::time::Duration;

use common::*;
use redis::AsyncCommands;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_channels_trigger_only_inside_the_module_prefix() {
    let prefix = format!("rt{}:", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "[kv.redis]\nurl = \"redis://127.0.0.1:6379\"\n");
    s.deploy(&guest("event-probe"), "rsub", &format!(
                "[grants.events]\npublish = []\n[grants.kv.c]\nbackend = \"redis\"\nprefix = \"{prefix}\"\n\
                 [[subscribe]]\nsource = \"redis:redis\"\ntopic = \"jobs\"\nmax-retries = 1\ndead-letter = \"dead\"\n"
            )).await;
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut dead = client.get_async_pubsub().await.unwrap();
    dead.subscribe(format!("{prefix}dead")).await.unwrap();

    // Pub/sub keeps nothing: publish until the subscription is up.
    let mut handled = false;
    for _ in 0..100 {
        // Outside the prefix: never delivered.
        let _: i64 = conn.publish("jobs", "outside").await.unwrap();
        let _: i64 = conn
            .publish(format!("{prefix}jobs"), "hello")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.stderr().contains("handled jobs hello attempt 1") {
            handled = true;
            break;
        }
    }
    assert!(handled, "never handled: {}", s.stderr());
    assert!(!s.stderr().contains("outside"));

    let _: i64 = conn.publish(format!("{prefix}jobs"), "fail").await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(10), async {
        use futures_util::StreamExt;
        dead.on_message().next().await
    })
    .await
    .expect("a dead letter")
    .unwrap();
    assert_eq!(message.get_payload_bytes(), b"fail");
    let log = s.stderr();
    assert!(log.contains("handled jobs fail attempt 2"), "{log}");
    assert!(!log.contains("handled jobs fail attempt 3"), "{log}");
    eventually("the dead letter audited", async || {
        audit_kinds(&s, "")
            .await
            .contains(&("rsub".into(), "dead-letter".into()))
    })
    .await;
}
