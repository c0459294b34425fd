//! The KV capability against the real Redis: every data type through a
//! guest, and every attempt to leave the grant's prefix confined or refused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use warden_capability::AuditKind;
use warden_kv::{KvBackendConfig, KvBackends};
use warden_runtime::RunError;
use warden_sql::SqlBackends;
use warden_tests::{guest_bytes, load_with_backends, manifest_header};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn backends() -> KvBackends {
    let configs = BTreeMap::from([(
        "redis".to_string(),
        KvBackendConfig {
            url: "redis://127.0.0.1:6379".into(),
        },
    )]);
    KvBackends::new(&configs).unwrap()
}

/// A prefix no other test run uses.
fn unique_prefix() -> String {
    format!(
        "warden-test:{}:{}:",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

async fn probe(
    kv: &KvBackends,
    prefix: &str,
    grant: &str,
    config: &str,
) -> (Result<String, RunError>, Vec<warden_capability::AuditEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}[grants.kv.cache]\nbackend = \"redis\"\nprefix = \"{prefix}\"\n[config]\ngrant = \"{grant}\"\n{config}\n",
        manifest_header("kv-probe")
    );
    let (module, audit) = load_with_backends(
        &guest_bytes("kv-probe"),
        &manifest,
        dir.path(),
        &SqlBackends::default(),
        kv,
    )
    .expect("load");
    (
        module
            .run_task()
            .await
            .map(|o| o.stdout.trim_end().to_string()),
        audit.events(),
    )
}

async fn op(
    kv: &KvBackends,
    prefix: &str,
    op: &str,
    key: &str,
    value: &str,
) -> Result<String, RunError> {
    probe(
        kv,
        prefix,
        "cache",
        &format!("op = \"{op}\"\nkey = '''{key}'''\nvalue = '''{value}'''"),
    )
    .await
    .0
}

/// Deletes every key a test made under `prefix`.
async fn cleanup(prefix: &str) {
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    for k in keys {
        let _: () = redis::cmd("DEL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

async fn raw(args: &[&str]) -> redis::Value {
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await.unwrap()
}

#[tokio::test]
async fn every_data_type_round_trips() {
    let kv = backends();
    let p = unique_prefix();
    assert_eq!(op(&kv, &p, "set", "greeting", "hello").await.unwrap(), "ok");
    assert_eq!(op(&kv, &p, "get", "greeting", "").await.unwrap(), "hello");
    assert_eq!(op(&kv, &p, "get", "missing", "").await.unwrap(), "none");
    assert_eq!(op(&kv, &p, "incr", "n", "").await.unwrap(), "2");
    assert_eq!(op(&kv, &p, "incr", "n", "").await.unwrap(), "4");
    assert_eq!(op(&kv, &p, "hash", "h", "").await.unwrap(), "v1 1");
    assert_eq!(op(&kv, &p, "list", "l", "").await.unwrap(), "a,b,c a c");
    assert_eq!(
        op(&kv, &p, "set-ops", "s", "").await.unwrap(),
        "[\"x\"] true"
    );
    assert_eq!(
        op(&kv, &p, "zset", "z", "").await.unwrap(),
        "[(\"low\", 1.0), (\"mid\", 5.0)] Some(5.0)"
    );
    assert_eq!(op(&kv, &p, "delete", "greeting", "").await.unwrap(), "true");
    assert_eq!(op(&kv, &p, "publish", "events", "hi").await.unwrap(), "0");

    let (r, _) = probe(
        &kv,
        &p,
        "cache",
        "op = \"set\"\nkey = \"temp\"\nvalue = \"x\"\nttl-ms = \"60000\"",
    )
    .await;
    r.unwrap();
    assert_eq!(op(&kv, &p, "ttl", "temp", "").await.unwrap(), "Some(true)");
    assert_eq!(op(&kv, &p, "ttl", "greeting", "").await.unwrap(), "None");
    let keys = op(&kv, &p, "keys", "", "").await.unwrap();
    assert_eq!(keys, "[\"h\", \"l\", \"n\", \"s\", \"temp\", \"z\"]");
    cleanup(&p).await;
}

#[tokio::test]
async fn batch_runs_atomically_under_the_prefix() {
    let kv = backends();
    let p = unique_prefix();
    // The last command deletes a hostile key name: confined like the rest.
    let out = op(&kv, &p, "batch", "../b1", "").await.unwrap();
    assert_eq!(out, "ok,5,x,1,v,nil,0");
    for k in ["b1", "b2", "b3"] {
        assert_eq!(
            raw(&["EXISTS", &format!("{p}{k}")]).await,
            redis::Value::Int(1),
            "{k}"
        );
    }
    let msg = match op(&kv, &p, "batch", "", "").await {
        Err(RunError::Failed(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(msg.starts_with("invalid: key must not be empty"), "{msg}");
    cleanup(&p).await;
}

#[tokio::test]
async fn hostile_keys_stay_inside_the_prefix() {
    let kv = backends();
    let p = unique_prefix();
    for key in [
        "..",
        "../../etc",
        "*",
        "a b",
        "ключ🔑",
        "other-module:secret",
        "\\",
        "[x]",
    ] {
        assert_eq!(op(&kv, &p, "set", key, "v").await.unwrap(), "ok", "{key}");
        // The key landed under the prefix, byte for byte.
        let full = format!("{p}{key}");
        assert_eq!(raw(&["EXISTS", &full]).await, redis::Value::Int(1), "{key}");
    }
    let long = "k".repeat(2000);
    for (key, why) in [
        ("", "empty"),
        (long.as_str(), "too long"),
        ("a\r\nFLUSHALL", "control characters"),
    ] {
        let msg = match op(&kv, &p, "set", key, "v").await {
            Err(RunError::Failed(m)) => m,
            other => panic!("{why}: {other:?}"),
        };
        assert!(msg.starts_with("invalid: key"), "{why}: {msg}");
    }
    cleanup(&p).await;
}

#[tokio::test]
async fn another_modules_keys_are_out_of_reach() {
    let kv = backends();
    let mine = unique_prefix();
    let theirs = unique_prefix();
    let secret = format!("{theirs}secret");
    raw(&["SET", &secret, "their data"]).await;

    // Reading "their" key by name only ever reads under my prefix.
    assert_eq!(op(&kv, &mine, "get", &secret, "").await.unwrap(), "none");
    assert_eq!(
        op(&kv, &mine, "get", "../secret", "").await.unwrap(),
        "none"
    );
    // Scan patterns are escaped: `*` matches a literal star, nothing of theirs.
    assert_eq!(op(&kv, &mine, "keys", "*", "").await.unwrap(), "[]");
    assert_eq!(op(&kv, &mine, "keys", "", "").await.unwrap(), "[]");
    assert_eq!(
        op(&kv, &mine, "delete", &secret, "").await.unwrap(),
        "false"
    );
    assert_eq!(
        raw(&["GET", &secret]).await,
        redis::Value::BulkString(b"their data".to_vec())
    );
    cleanup(&mine).await;
    cleanup(&theirs).await;
}

#[tokio::test]
async fn grants_are_checked() {
    let kv = backends();
    let p = unique_prefix();
    let (result, audit) = probe(&kv, &p, "sessions", "op = \"open\"").await;
    assert!(
        matches!(&result, Err(RunError::Failed(m)) if m == "denied: kv grant \"sessions\" not in manifest"),
        "{result:?}"
    );
    assert!(
        audit
            .iter()
            .any(|e| e.kind == AuditKind::Denied && e.rule == "kv")
    );

    let dir = tempfile::tempdir().unwrap();
    for (prefix, why) in [("", "prefix must not be empty"), ("a*", "glob characters")] {
        let manifest = format!(
            "{}[grants.kv.cache]\nbackend = \"redis\"\nprefix = \"{prefix}\"\n",
            manifest_header("kv-probe")
        );
        let err = load_with_backends(
            &guest_bytes("kv-probe"),
            &manifest,
            dir.path(),
            &SqlBackends::default(),
            &kv,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains(why), "{err}");
    }
}

#[tokio::test]
async fn counter_example_counts() {
    let kv = backends();
    let p = unique_prefix();
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../guest-modules/examples/counter/warden.toml"
    ))
    .unwrap()
    .replace("prefix = \"counter:\"", &format!("prefix = \"{p}\""));
    let dir = tempfile::tempdir().unwrap();
    let (module, _) = load_with_backends(
        &guest_bytes("counter"),
        &manifest,
        dir.path(),
        &SqlBackends::default(),
        &kv,
    )
    .unwrap();
    let first = module.run_task().await.unwrap().stdout;
    let second = module.run_task().await.unwrap().stdout;
    assert!(
        first.starts_with("run #1 for demo (another run in the last minute: false)"),
        "{first}"
    );
    assert!(
        second.starts_with("run #2 for demo (another run in the last minute: true)"),
        "{second}"
    );
    cleanup(&p).await;
}

#[tokio::test]
async fn replies_count_against_the_output_cap() {
    let kv = backends();
    let p = unique_prefix();
    raw(&["SET", &format!("{p}big"), &"x".repeat(4096)]).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}[limits]\nmax-output = \"1 KiB\"\n[grants.kv.cache]\nbackend = \"redis\"\nprefix = \"{p}\"\n[config]\ngrant = \"cache\"\nop = \"get\"\nkey = \"big\"\n",
        manifest_header("kv-probe")
    );
    let (module, _) = load_with_backends(
        &guest_bytes("kv-probe"),
        &manifest,
        dir.path(),
        &SqlBackends::default(),
        &kv,
    )
    .unwrap();
    match module.run_task().await {
        Err(RunError::Failed(m)) => assert!(m.starts_with("limit-exceeded: max-output"), "{m}"),
        other => panic!("{other:?}"),
    }
    cleanup(&p).await;
}
