//! RabbitMQ going away under `warden serve`: publishes fail with
//! `unavailable`, consumers reconnect by themselves, and a confirmed
//! persistent message waits in its durable queue and is handled after. Its
//! own test binary: it stops the shared broker (test binaries run one at a
//! time).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn rabbitmqctl(args: &[&str]) {
    let status = Command::new("rabbitmqctl")
        .args(args)
        .status()
        .expect("rabbitmqctl");
    assert!(status.success(), "rabbitmqctl {args:?}");
}

/// Starts the broker again even when the test fails half-way.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").status();
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "await_startup"])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_gives_unavailable_and_consumers_come_back_without_losing_messages() {
    let q = format!("wo{}.q", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(
        tmp.path(),
        "[amqp.r]\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\n",
    );
    let probe = guest("amqp-probe");
    let grant = format!(
        "[grants.amqp.bus]\nbackend = \"r\"\npublish = [\"/{q}\"]\nconsume = [\"{q}\"]\ndeclare = [\"{q}\"]\n"
    );
    s.deploy(&probe, "aout", &grant).await;
    let call = async |op: &str, query: String, body: &[u8]| {
        http(
            &s.ingress,
            "POST",
            &format!("/aout/bus/{op}?{query}"),
            None,
            body,
        )
        .await
    };
    assert_eq!(
        call("declare-queue", format!("name={q}&durable=1"), b"")
            .await
            .0,
        200
    );
    s.deploy(
        &probe,
        "osub",
        &format!("{grant}[[subscribe]]\nsource = \"amqp:r\"\ntopic = \"{q}\"\n"),
    )
    .await;
    let publish = format!("exchange=&key={q}&persistent=1");
    assert_eq!(call("publish", publish.clone(), b"before").await.0, 200);
    eventually("handled before the outage", async || {
        s.stderr()
            .contains(&format!("handled amqp:r {q} before attempt 1"))
    })
    .await;

    // Confirmed while the consumer is paused: it waits in the queue.
    s.client(DEPLOYER)
        .post_json("/v1/modules/osub/pause", &Value::Null)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(call("publish", publish.clone(), b"kept").await.0, 200);

    let up_rss = rss_kib(&s);
    let restart = Restart;
    rabbitmqctl(&["stop_app"]);
    let (status, body) = call("publish", publish.clone(), b"lost?").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("amqp backend r"), "{body}");
    let connected = async || {
        let backends = s.client(DEPLOYER).get("/v1/backends").await.unwrap();
        backends["amqp"][0]["connected"].clone()
    };
    assert_eq!(connected().await, Value::Bool(false));

    // Thousands of publishes during the outage: each fails fast with
    // `unavailable`, and the server's memory stays put (lapin keeps ~10 KB
    // of every connection attempt that fails, so none may be made per call).
    let flood = async |n: usize| {
        let mut slowest = Duration::ZERO;
        for _ in 0..n {
            let started = std::time::Instant::now();
            let (status, body) = call("publish", publish.clone(), b"x").await;
            slowest = slowest.max(started.elapsed());
            assert_eq!(status, 503, "{body}");
            assert!(body.contains("amqp backend r"), "{body}");
        }
        slowest
    };
    flood(500).await;
    let before = rss_kib(&s);
    let slowest = flood(4000).await;
    let grown = rss_kib(&s).saturating_sub(before);
    println!(
        "RSS during the outage: {before} KiB before 4000 failed publishes, +{grown} KiB after; slowest {slowest:?}"
    );
    assert!(
        grown < 10 << 10,
        "4000 failed publishes grew the server by {grown} KiB"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a failed publish took {slowest:?}"
    );
    drop(restart);
    // Back within a second of the broker's return.
    let back = std::time::Instant::now();
    while call("publish", publish.clone(), b"probe").await.0 != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(1),
            "not back {:?} after the broker",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("publishes back {:?} after the broker", back.elapsed());

    s.client(DEPLOYER)
        .post_json("/v1/modules/osub/resume", &Value::Null)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !s
        .stderr()
        .contains(&format!("handled amqp:r {q} kept attempt 1"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the kept message was not handled: {}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Publishing works again on a new connection, and the consumer gets it.
    let (status, body) = call("publish", publish, b"after").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(connected().await, Value::Bool(true));
    eventually("handled after the outage", async || {
        s.stderr()
            .contains(&format!("handled amqp:r {q} after attempt 1"))
    })
    .await;
    println!(
        "RabbitMQ RSS (server): {up_rss} KiB before the outage, {} KiB during, {} KiB after",
        before + grown,
        rss_kib(&s)
    );
}
