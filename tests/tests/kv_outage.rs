//! Redis goes away and comes back: calls fail with `unavailable` while it is
//! down, and the same host recovers by itself, without a restart.
//! (Its own test binary: it stops the shared Redis for a moment.)

use std::collections::BTreeMap;
use std::time::Duration;

use warden_kv::{KvBackendConfig, KvBackends};
use warden_runtime::RunError;
use warden_sql::SqlBackends;
use warden_tests::{guest_bytes, load_with_backends, manifest_header};

const START_REDIS: &[&str] = &[
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
];

async fn run(kv: &KvBackends, op: &str) -> Result<String, RunError> {
    probe(kv, op)
        .run_task()
        .await
        .map(|o| o.stdout.trim_end().to_string())
}

/// The kv-probe doing `op` on key `k` of its grant on `kv`.
fn probe(kv: &KvBackends, op: &str) -> warden_runtime::LoadedModule {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}[limits]\ntimeout = \"8s\"\n[grants.kv.cache]\nbackend = \"redis\"\nprefix = \"warden-outage:{}:\"\n[config]\ngrant = \"cache\"\nop = \"{op}\"\nkey = \"k\"\nvalue = \"v\"\n",
        manifest_header("kv-probe"),
        std::process::id()
    );
    let (module, _) = load_with_backends(
        &guest_bytes("kv-probe"),
        &manifest,
        dir.path(),
        &SqlBackends::default(),
        kv,
    )
    .unwrap();
    module
}

fn redis_up() -> bool {
    std::net::TcpStream::connect("127.0.0.1:6379").is_ok()
}

#[tokio::test]
async fn redis_outage_gives_unavailable_then_recovers() {
    let configs = BTreeMap::from([(
        "redis".to_string(),
        KvBackendConfig {
            url: "redis://127.0.0.1:6379".into(),
        },
    )]);
    let kv = KvBackends::new(&configs).unwrap();
    assert_eq!(run(&kv, "set").await.unwrap(), "ok");

    let up_rss = warden_tests::own_rss_kib();
    let stopped = std::process::Command::new("redis-cli")
        .args(["-p", "6379", "shutdown", "nosave"])
        .status()
        .unwrap();
    assert!(stopped.success() || !redis_up());
    for _ in 0..50 {
        if !redis_up() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let down = run(&kv, "get").await;
    // Thousands of calls while it is down: each fails fast, and the host's
    // memory stays put.
    let get = probe(&kv, "get");
    let failing = async |n: usize| {
        let mut slowest = Duration::ZERO;
        for _ in 0..n {
            let started = std::time::Instant::now();
            let failed = get.run_task().await.is_err();
            slowest = slowest.max(started.elapsed());
            assert!(failed, "a call succeeded while Redis was down");
        }
        slowest
    };
    failing(300).await;
    let before = warden_tests::own_rss_kib();
    let slowest = failing(3000).await;
    let grown = warden_tests::own_rss_kib().saturating_sub(before);
    println!(
        "Redis outage: RSS {before} KiB before 3000 failed calls, +{grown} KiB after; slowest {slowest:?}"
    );
    // Whatever happens next, bring Redis back for everyone else.
    let started = std::process::Command::new("redis-server")
        .args(START_REDIS)
        .status()
        .unwrap();
    assert!(started.success());
    match &down {
        Err(RunError::Failed(m)) => assert!(m.starts_with("unavailable: kv backend redis"), "{m}"),
        other => panic!("expected unavailable while Redis is down, got {other:?}"),
    }
    assert!(
        grown < 10 << 10,
        "3000 failed calls grew the host by {grown} KiB"
    );
    assert!(
        slowest < Duration::from_secs(3),
        "a failed call took {slowest:?}"
    );
    for _ in 0..100 {
        if redis_up() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The same backends object reconnects on its own.
    let mut recovered = None;
    for _ in 0..20 {
        if let Ok(out) = run(&kv, "set").await {
            recovered = Some(out);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        recovered.as_deref(),
        Some("ok"),
        "no recovery after Redis came back"
    );
    assert_eq!(run(&kv, "get").await.unwrap(), "v");
    println!(
        "Redis RSS: {up_rss} KiB before the outage, {} KiB during, {} KiB after",
        before + grown,
        warden_tests::own_rss_kib()
    );
}
