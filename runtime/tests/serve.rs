//! `warden serve` over real HTTP, as real processes: upload, hot swap,
//! rejections, auth, failing modules, restart, cron, two nodes on one
//! PostgreSQL registry.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_keeps_in_flight_calls_on_the_old_version_and_rolls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    let faulty = guest("http-faulty");
    s.upload(
        &faulty,
        &faulty_manifest("shop", "1.0.0", "v1", "/shop"),
        true,
    )
    .await
    .unwrap();
    assert_eq!(get(&s.ingress, "/shop").await, (200, "v1".into()));

    // A slow call starts on v1 …
    let ingress = s.ingress.clone();
    let slow = tokio::spawn(async move { get(&ingress, "/shop/slow?ms=1500").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // … v2 is uploaded and activated while it runs …
    let up = s
        .upload(
            &faulty,
            &faulty_manifest("shop", "2.0.0", "v2", "/shop"),
            true,
        )
        .await
        .unwrap();
    assert_eq!(up["stored"], json!(true));
    assert_eq!(get(&s.ingress, "/shop/x").await, (200, "v2".into()));
    // … and still finishes on v1, not dropped.
    assert_eq!(slow.await.unwrap(), (200, "v1".into()));

    // Rollback is an activation of the old version.
    let deployer = s.client(DEPLOYER);
    deployer
        .post_json("/v1/modules/shop/activate", &json!({"version": "1.0.0"}))
        .await
        .unwrap();
    assert_eq!(get(&s.ingress, "/shop").await, (200, "v1".into()));

    let versions = s
        .client(VIEWER)
        .get("/v1/modules/shop/versions")
        .await
        .unwrap();
    let versions = versions["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    // Same component bytes: one blob, two versions.
    assert_eq!(versions[0]["sha256"], versions[1]["sha256"]);

    // Re-uploading a stored version with other content is refused.
    let err = s
        .upload(
            &faulty,
            &faulty_manifest("shop", "1.0.0", "changed", "/shop"),
            false,
        )
        .await
        .unwrap_err();
    assert!(err.contains("409") && err.contains("immutable"), "{err}");

    // Pause → not served; resume → served again.
    deployer
        .post_json("/v1/modules/shop/pause", &Value::Null)
        .await
        .unwrap();
    assert_eq!(get(&s.ingress, "/shop").await.0, 503, "paused");
    deployer
        .post_json("/v1/modules/shop/resume", &Value::Null)
        .await
        .unwrap();
    assert_eq!(get(&s.ingress, "/shop").await, (200, "v1".into()));

    // The audit log is written behind the API calls: wait for the last one.
    eventually("seven audit events", async || {
        audit_kinds(&s, "module=shop").await.len() >= 7
    })
    .await;
    let kinds: Vec<String> = audit_kinds(&s, "module=shop")
        .await
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    assert_eq!(
        kinds,
        [
            "upload", "activate", "upload", "activate", "activate", "state", "state"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_validated_and_rejections_list_every_problem_storing_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "max-upload = \"4 MiB\"");

    let err = s
        .upload(
            b"\0asm not really",
            &faulty_manifest("junk", "1.0.0", "x", "/junk"),
            false,
        )
        .await
        .unwrap_err();
    assert!(
        err.contains("422") && err.contains("invalid component"),
        "{err}"
    );

    // Imports beyond the grants: the net probe without [grants.net].
    let err = s
        .upload(
            &guest("net-probe"),
            "[module]\nname = \"prober\"\nversion = \"1.0.0\"\n",
            false,
        )
        .await
        .unwrap_err();
    assert!(err.contains("422") && err.contains("wasi:sockets"), "{err}");

    // A trigger without its export: a task module with an [http] route.
    let err = s
        .upload(
            &guest("hello"),
            &faulty_manifest("hello", "1.0.0", "x", "/h"),
            false,
        )
        .await
        .unwrap_err();
    assert!(err.contains("wasi:http/incoming-handler"), "{err}");

    // A bad manifest: every problem, each naming its key.
    let err = s
        .upload(
            &guest("hello"),
            "[module]\nname = \"Bad Name\"\nversion = \"one\"\n[limits]\nmemory = \"1 KiB\"\n[[cron]]\nschedule = \"every minute\"\n",
            false,
        )
        .await
        .unwrap_err();
    for key in [
        "module.name",
        "module.version",
        "limits.memory",
        "cron[0].schedule",
    ] {
        assert!(err.contains(key), "{key} missing in: {err}");
    }

    // [config] not matching [config-schema].
    let manifest = faulty_manifest("cfg", "1.0.0", "x", "/cfg")
        + "[config-schema]\nrequired = [\"currency\"]\n[config-schema.properties.greeting]\ntype = \"string\"\nmaxLength = 0\n";
    let err = s
        .upload(&guest("http-faulty"), &manifest, false)
        .await
        .unwrap_err();
    assert!(
        err.contains("422") && err.contains("currency") && err.contains("config.greeting"),
        "{err}"
    );

    // A bad manifest and a bad component: both reported at once.
    let err = s
        .upload(
            b"not wasm",
            "[module]\nname = \"x\"\nversion = \"?\"\n",
            false,
        )
        .await
        .unwrap_err();
    assert!(
        err.contains("module.version") && err.contains("invalid component"),
        "{err}"
    );

    // Missing form fields.
    let err = s
        .client(DEPLOYER)
        .post_multipart("/v1/modules", &[("manifest", "warden.toml", b"x")])
        .await
        .unwrap_err();
    assert!(
        err.0.contains("400") && err.0.contains("component"),
        "{}",
        err.0
    );

    // Over max-upload.
    let big = vec![0u8; 5 << 20];
    let err = s
        .upload(&big, &faulty_manifest("big", "1.0.0", "x", "/big"), false)
        .await
        .unwrap_err();
    assert!(err.contains("413"), "{err}");

    let list = s.client(VIEWER).get("/v1/modules").await.unwrap();
    assert_eq!(list["modules"], json!([]), "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_a_token_with_the_right_role_and_never_logs_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    assert_eq!(http(&s.admin, "GET", "/v1/modules", None, b"").await.0, 401);
    assert_eq!(
        http(&s.admin, "GET", "/v1/modules", Some("wrong"), b"")
            .await
            .0,
        401
    );
    assert_eq!(http(&s.admin, "GET", "/metrics", None, b"").await.0, 401);
    assert_eq!(
        http(&s.admin, "GET", "/v1/modules", Some(VIEWER), b"")
            .await
            .0,
        200
    );
    let err = s
        .client(VIEWER)
        .post_multipart("/v1/modules", &[("component", "c.wasm", b"x")])
        .await
        .unwrap_err();
    assert!(err.0.contains("403"), "{}", err.0);
    let err = s
        .client(VIEWER)
        .post_json("/v1/modules/x/activate", &json!({"version": "1"}))
        .await
        .unwrap_err();
    assert!(err.0.contains("403"), "{}", err.0);
    // The document lists every route without a token.
    let (status, doc) = http(&s.admin, "GET", "/v1/openapi.json", None, b"").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    for r in warden_runtime::server::openapi::ROUTES {
        assert!(
            doc["paths"][r.path][r.method].is_object(),
            "{} {}",
            r.method,
            r.path
        );
    }
    s.upload(
        &guest("http-faulty"),
        &faulty_manifest("t", "1.0.0", "x", "/t"),
        true,
    )
    .await
    .unwrap();
    let stderr = s.stderr();
    assert!(
        stderr.contains("DEBUG") || stderr.contains("INFO"),
        "debug logs were on"
    );
    for token in [ADMIN, DEPLOYER, VIEWER] {
        assert!(!stderr.contains(token), "token in the log");
    }
    let config = std::fs::read_to_string(tmp.path().join("warden.toml")).unwrap();
    assert!(!config.contains(ADMIN), "only hashes are configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_of_the_api_all_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    for r in warden_runtime::server::openapi::ROUTES {
        let path = r.path.replace("{name}", "nobody");
        let (status, body) =
            http(&s.admin, &r.method.to_uppercase(), &path, Some(ADMIN), b"").await;
        // Unknown module or missing body, but never "no such route".
        assert!(
            status != 405 && !(status == 404 && body.is_empty()),
            "{} {path}: {status} {body}",
            r.method
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_keeps_trapping_goes_failed_while_others_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "failure-threshold = 3");
    let faulty = guest("http-faulty");
    s.upload(
        &faulty,
        &faulty_manifest("bad", "1.0.0", "bad", "/bad"),
        true,
    )
    .await
    .unwrap();
    s.upload(
        &faulty,
        &faulty_manifest("good", "1.0.0", "good", "/good"),
        true,
    )
    .await
    .unwrap();
    for _ in 0..3 {
        let (status, body) = get(&s.ingress, "/bad/trap").await;
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("trap"), "{body}");
    }
    assert_eq!(
        get(&s.ingress, "/bad").await.0,
        503,
        "a failed module is out of service"
    );
    assert_eq!(get(&s.ingress, "/good").await, (200, "good".into()));

    let viewer = s.client(VIEWER);
    let detail = viewer.get("/v1/modules/bad").await.unwrap();
    assert_eq!(detail["state"], "failed");
    let (status, _) = http(&s.admin, "GET", "/v1/modules/bad/health", Some(VIEWER), b"").await;
    assert_eq!(status, 503);
    let (status, _) = http(
        &s.admin,
        "GET",
        "/v1/modules/good/health",
        Some(VIEWER),
        b"",
    )
    .await;
    assert_eq!(status, 200);

    eventually("trap and failed events in the audit log", async || {
        let audit = viewer.get("/v1/audit?module=bad").await.unwrap();
        let kinds: Vec<String> = audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect();
        kinds.iter().filter(|k| *k == "trap").count() == 3 && kinds.contains(&"failed".into())
    })
    .await;
    let metrics = http(&s.admin, "GET", "/metrics", Some(VIEWER), b"").await.1;
    assert!(
        metrics.contains(
            "warden_invocations_total{module=\"bad\",trigger=\"http\",outcome=\"trap\"} 3"
        ),
        "{metrics}"
    );
    // Activating again takes it back into service.
    s.client(DEPLOYER)
        .post_json("/v1/modules/bad/activate", &json!({"version": "1.0.0"}))
        .await
        .unwrap();
    assert_eq!(get(&s.ingress, "/bad").await, (200, "bad".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_states_and_audit_survive_a_restart_without_recompiling() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    let faulty = guest("http-faulty");
    s.upload(&faulty, &faulty_manifest("a", "1.0.0", "a1", "/a"), true)
        .await
        .unwrap();
    s.upload(&faulty, &faulty_manifest("a", "1.1.0", "a2", "/a"), true)
        .await
        .unwrap();
    s.upload(&faulty, &faulty_manifest("b", "1.0.0", "b", "/b"), true)
        .await
        .unwrap();
    s.client(DEPLOYER)
        .post_json("/v1/modules/b/pause", &Value::Null)
        .await
        .unwrap();
    let before = s.client(VIEWER).get("/v1/modules").await.unwrap();
    let cache = tmp.path().join("data/compiled");
    let cached = cache_listing(&cache);
    assert!(!cached.is_empty());
    let dir = s.stop();

    let s = Server::start(&dir, "");
    assert_eq!(s.client(VIEWER).get("/v1/modules").await.unwrap(), before);
    assert_eq!(get(&s.ingress, "/a").await, (200, "a2".into()));
    assert_eq!(get(&s.ingress, "/b").await.0, 503, "still paused");
    // Stopped right after the last change: its audit event was stored too.
    let audit = s.client(VIEWER).get("/v1/audit").await.unwrap();
    let kinds: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "upload", "activate", "upload", "activate", "upload", "activate", "state"
        ]
    );
    assert_eq!(
        cache_listing(&cache),
        cached,
        "the compile cache was reused, not rewritten"
    );
}

fn cache_listing(dir: &Path) -> Vec<(String, std::time::SystemTime)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_schedules_call_the_task_export() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    s.upload(
        &guest("hello"),
        "[module]\nname = \"ticker\"\nversion = \"1.0.0\"\n[[cron]]\nschedule = \"* * * * * *\"\n[config]\ngreeting = \"tick\"\nname = \"cron\"\n",
        true,
    )
    .await
    .unwrap();
    eventually("two cron runs", async || {
        let metrics = http(&s.admin, "GET", "/metrics", Some(VIEWER), b"").await.1;
        metrics
            .lines()
            .find(|l| {
                l.starts_with(
                    "warden_invocations_total{module=\"ticker\",trigger=\"cron\",outcome=\"ok\"}",
                )
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .is_some_and(|n| n >= 2)
    })
    .await;
    assert!(
        s.stderr().contains("tick, cron"),
        "the guest's output is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_registry_serve_the_same_modules() {
    let pg = PgRegistry::create("two_nodes").await;
    let registry = pg.config();
    let tmp = tempfile::tempdir().unwrap();
    let a = Server::start(&tmp.path().join("a"), &registry);
    let b = Server::start(&tmp.path().join("b"), &registry);
    let faulty = guest("http-faulty");
    a.upload(
        &faulty,
        &faulty_manifest("shared", "1.0.0", "one", "/s"),
        true,
    )
    .await
    .unwrap();
    eventually("node b serves what node a activated", async || {
        get(&b.ingress, "/s").await == (200, "one".into())
    })
    .await;
    // An activation on b reaches a.
    b.upload(
        &faulty,
        &faulty_manifest("shared", "2.0.0", "two", "/s"),
        true,
    )
    .await
    .unwrap();
    eventually("node a swaps to what node b activated", async || {
        get(&a.ingress, "/s").await == (200, "two".into())
    })
    .await;
    b.client(DEPLOYER)
        .post_json("/v1/modules/shared/stop", &Value::Null)
        .await
        .unwrap();
    eventually("node a stops serving", async || {
        get(&a.ingress, "/s").await.0 == 404
    })
    .await;
    drop((a, b));
    pg.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_hooks_gate_activation_report_health_and_see_versions_out() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    let faulty = guest("http-faulty");
    s.upload(
        &faulty,
        &faulty_manifest("life", "1.0.0", "v1", "/life"),
        true,
    )
    .await
    .unwrap();
    let health = s
        .client(VIEWER)
        .get("/v1/modules/life/health")
        .await
        .unwrap();
    assert_eq!(health["check"], "ok");

    // init refuses: the activation fails, the running version keeps serving.
    let refusing =
        faulty_manifest("life", "2.0.0", "v2", "/life") + "fail-init = \"no database\"\n";
    let err = s.upload(&faulty, &refusing, true).await.unwrap_err();
    assert!(
        err.contains("lifecycle init failed") && err.contains("no database"),
        "{err}"
    );
    assert_eq!(get(&s.ingress, "/life").await, (200, "v1".into()));

    // health from the guest: 503 with its reason.
    let sick = faulty_manifest("life", "3.0.0", "v3", "/life") + "unhealthy = \"disk full\"\n";
    s.upload(&faulty, &sick, true).await.unwrap();
    let (status, body) = http(
        &s.admin,
        "GET",
        "/v1/modules/life/health",
        Some(VIEWER),
        b"",
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("disk full"), "{body}");

    // The replaced versions got their shutdown call.
    eventually("shutdown hooks in the log", async || {
        s.stderr().matches("shutting down").count() >= 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_answers_rate_with_429_and_timeout_with_504() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    let manifest = "[module]\nname = \"limited\"\nversion = \"1.0.0\"\n[limits]\ntimeout = \"300ms\"\nrate = \"3/s\"\n[http]\nroute = \"/l\"\n[config]\ngreeting = \"ok\"\n";
    s.upload(&guest("http-faulty"), manifest, true)
        .await
        .unwrap();
    let (status, body) = get(&s.ingress, "/l/slow?ms=3000").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("timeout"), "{body}");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get(&s.ingress, "/l").await.0);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let (_, body) = http(&s.admin, "GET", "/metrics", Some(VIEWER), b"").await;
    // Refused before it ran: counted apart from limits a guest breached.
    assert!(body.contains("outcome=\"refused:rate\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flow_only_between_granted_modules_with_retries_and_dead_letters() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    let probe = guest("event-probe");
    // Publisher: may publish orders.* only.
    s.deploy(&probe, "pub", "[grants.events]\npublish = [\"orders.*\"]\n")
        .await;
    // Subscriber of orders.created, with a dead-letter topic that a third module reads.
    s.deploy(&probe, "sub", "[grants.events]\npublish = []\n[[subscribe]]\nsource = \"events\"\ntopic = \"orders.created\"\nmax-retries = 2\ndead-letter = \"orders.dlq\"\n").await;
    s.deploy(&probe, "dlq", "[grants.events]\npublish = []\n[[subscribe]]\nsource = \"events\"\ntopic = \"orders.dlq\"\n").await;

    let (status, body) = http(&s.ingress, "POST", "/pub/orders.created", None, b"hello").await;
    assert_eq!((status, body.as_str()), (200, "published"));
    eventually("the subscriber handled it", async || {
        s.stderr()
            .contains("handled orders.created hello attempt 1 [warden-from=pub]")
    })
    .await;

    // Outside the grant: denied, audited, nobody receives it.
    let (status, body) = http(&s.ingress, "POST", "/pub/payments.created", None, b"x").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("grants.events.publish"), "{body}");
    // A module without [grants.events] cannot even be uploaded importing events …
    let err = s
        .upload(&probe, &probe_manifest("rogue", ""), false)
        .await
        .unwrap_err();
    assert!(err.contains("[grants.events]"), "{err}");

    // A failing handler: 1 + max-retries attempts, then the dead-letter topic with the error.
    let (status, _) = http(&s.ingress, "POST", "/pub/orders.created", None, b"fail").await;
    assert_eq!(status, 200);
    eventually("third attempt and the dead letter", async || {
        let log = s.stderr();
        log.contains("handled orders.created fail attempt 3")
            && log.contains("handled orders.dlq fail attempt 1")
            && log.contains("warden-error=failed: asked to fail")
            && log.contains("warden-original-topic=orders.created")
    })
    .await;
    assert!(!s.stderr().contains("handled orders.created fail attempt 4"));

    eventually(
        "the denial and the dead letter in the audit log",
        async || {
            let kinds = audit_kinds(&s, "").await;
            kinds.contains(&("pub".into(), "denied".into()))
                && kinds.contains(&("sub".into(), "dead-letter".into()))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_need_the_handler_export_and_a_known_source() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    let err = s
        .upload(
            &guest("http-faulty"),
            &probe_manifest(
                "nohandler",
                "[[subscribe]]\nsource = \"events\"\ntopic = \"t\"\n",
            ),
            false,
        )
        .await
        .unwrap_err();
    assert!(err.contains("warden:module/message-handler"), "{err}");
    let err = s
        .upload(
            &guest("event-probe"),
            &probe_manifest(
                "loop",
                "[grants.events]\npublish = [\"t\"]\n[[subscribe]]\nsource = \"events\"\ntopic = \"t\"\ndead-letter = \"t\"\n[[subscribe]]\nsource = \"kafka:x\"\ntopic = \"*\"\n",
            ),
            false,
        )
        .await
        .unwrap_err();
    for expected in [
        "subscribe[0].dead-letter",
        "subscribe[1].topic: \"*\" must be one topic name",
        "no [grants.kafka.<name>] on backend \"x\"",
    ] {
        assert!(err.contains(expected), "{expected} missing in {err}");
    }
}

fn warden_cli(s: &Server, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("module")
        .args(args)
        .args(["--server", &format!("http://{}", s.admin), "--token", token])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_module_cli_drives_the_api_and_fails_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-modules/target/wasm32-wasip2/release/http_faulty.wasm");
    let manifest = tmp.path().join("m.toml");
    std::fs::write(&manifest, faulty_manifest("cli", "1.0.0", "hi", "/cli")).unwrap();
    let out = warden_cli(
        &s,
        DEPLOYER,
        &[
            "upload",
            wasm.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--activate",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("cli 1.0.0: uploaded, active"));
    let out = warden_cli(&s, VIEWER, &["list"]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("cli") && list.contains("active") && list.contains("1.0.0"),
        "{list}"
    );
    assert_eq!(get(&s.ingress, "/cli").await, (200, "hi".into()));

    // Denied and unknown: non-zero, exactly one line naming the module.
    for (token, args, expect) in [
        (VIEWER, vec!["pause", "cli"], "403"),
        (DEPLOYER, vec!["activate", "cli", "9.9.9"], "no version"),
        ("nope", vec!["show", "cli"], "401"),
    ] {
        let out = warden_cli(&s, token, &args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("cli: ") && stderr.contains(expect),
            "{stderr}"
        );
    }

    // Pool status of the embedded sql.local backend.
    let backends = s.client(VIEWER).get("/v1/backends").await.unwrap();
    assert_eq!(backends["sql"][0]["id"], "local", "{backends}");
    assert_eq!(backends["sql"][0]["kind"], "sqlite", "{backends}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_refuses_conflicts_and_bad_requests_and_delete_removes_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    let faulty = guest("http-faulty");
    s.upload(
        &faulty,
        &faulty_manifest("first", "1.0.0", "first", "/same"),
        true,
    )
    .await
    .unwrap();
    // Another module on a route already served: 409, nothing changes.
    let err = s
        .upload(
            &faulty,
            &faulty_manifest("second", "1.0.0", "second", "/same/"),
            true,
        )
        .await
        .unwrap_err();
    assert!(err.contains("409") && err.contains("first"), "{err}");
    assert_eq!(get(&s.ingress, "/same").await, (200, "first".into()));

    let deployer = s.client(DEPLOYER);
    let err = deployer
        .post_json("/v1/modules/first/resume", &Value::Null)
        .await
        .unwrap_err();
    assert!(
        err.0.contains("409") && err.0.contains("active"),
        "{}",
        err.0
    );
    let err = deployer
        .post_json("/v1/modules/second/pause", &Value::Null)
        .await
        .unwrap_err();
    assert!(
        err.0.contains("409") && err.0.contains("uploaded"),
        "{}",
        err.0
    );
    let (status, _) = http(
        &s.admin,
        "POST",
        "/v1/modules/first/activate",
        Some(DEPLOYER),
        b"{\"ver",
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = http(
        &s.admin,
        "POST",
        "/v1/modules/first/explode",
        Some(DEPLOYER),
        b"",
    )
    .await;
    assert_eq!(status, 404);
    for query in ["since=yesterday", "limit=0", "limit=100000"] {
        let (status, body) = http(
            &s.admin,
            "GET",
            &format!("/v1/audit?{query}"),
            Some(VIEWER),
            b"",
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
    }

    // Delete is the admin's: gone from the API, the route and the registry.
    let err = deployer.delete("/v1/modules/first").await.unwrap_err();
    assert!(err.0.contains("403"), "{}", err.0);
    s.client(ADMIN).delete("/v1/modules/first").await.unwrap();
    assert_eq!(get(&s.ingress, "/same").await.0, 404);
    let err = s.client(VIEWER).get("/v1/modules/first").await.unwrap_err();
    assert!(err.0.contains("404"), "{}", err.0);
    // The route is free again.
    deployer
        .post_json("/v1/modules/second/activate", &json!({"version": "1.0.0"}))
        .await
        .unwrap();
    assert_eq!(get(&s.ingress, "/same").await, (200, "second".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_requests_and_events_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    s.deploy(
        &guest("event-probe"),
        "big",
        "[grants.events]\npublish = [\"big.*\"]\n",
    )
    .await;
    // Above the ingress body limit (16 MiB): 413 before the module runs.
    let huge = vec![b'x'; (16 << 20) + 1];
    let (status, _) = http(&s.ingress, "POST", "/big/big.t", None, &huge).await;
    assert_eq!(status, 413);
    // Above the event payload limit (1 MiB): the guest gets limit-exceeded.
    let payload = vec![b'x'; (1 << 20) + 1];
    let (status, body) = http(&s.ingress, "POST", "/big/big.t", None, &payload).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("payload"), "{body}");
    let (status, _) = http(&s.ingress, "POST", "/big/big.t", None, b"small").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_makes_publishers_see_its_full_backlog() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    let probe = guest("event-probe");
    s.deploy(&probe, "fast", "[grants.events]\npublish = [\"work\"]\n")
        .await;
    s.deploy(&probe, "slowpoke", "[limits]\nmax-instances = 1\ntimeout = \"10s\"\n[grants.events]\npublish = []\n[[subscribe]]\nsource = \"events\"\ntopic = \"work\"\n").await;
    // One handler at a time, 5 s each: the backlog (1,024) fills up and
    // publishing is refused instead of queueing without bound.
    let mut refused = None;
    for i in 0..1100 {
        let (status, body) = http(&s.ingress, "POST", "/fast/work", None, b"slow").await;
        if status != 200 {
            refused = Some((i, status, body));
            break;
        }
    }
    let (i, status, body) = refused.expect("publishing never refused");
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("slowpoke") && body.contains("undelivered"),
        "{body}"
    );
    assert!(i >= 1024, "refused after {i}");
}

/// Every capability of the one list (`capabilities.rs`) shows in a module's
/// detail and in `/v1/backends`, so that a capability can no longer be
/// wired into one and forgotten in the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_capability_shows_in_module_detail_and_backends() {
    // A host section and a grant per capability; a capability added to the
    // list without one here fails this test by name.
    let of = |kind: &str| -> (&str, &str) {
        match kind {
            "sql" => ("", "[grants.sql.db]\nbackend = \"local\"\n"),
            "kv" => (
                "[kv.cache]\nurl = \"redis://127.0.0.1:6379\"\n",
                "[grants.kv.c]\nbackend = \"cache\"\nprefix = \"every:\"\n",
            ),
            "kafka" => (
                "[kafka.k]\nbootstrap-servers = \"127.0.0.1:9092\"\n",
                "[grants.kafka.ev]\nbackend = \"k\"\nproduce = [\"every\"]\n",
            ),
            "amqp" => (
                "[amqp.mq]\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\n",
                "[grants.amqp.jobs]\nbackend = \"mq\"\npublish = [\"every/*\"]\n",
            ),
            "events" => ("", "[grants.events]\npublish = [\"every.*\"]\n"),
            other => panic!("no host section and grant for capability {other:?} in this test"),
        }
    };
    let kinds = warden_runtime::capabilities::KINDS;
    let host: String = kinds.iter().map(|k| of(k).0).collect();
    let grants: String = kinds.iter().map(|k| of(k).1).collect();
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), &host);
    s.deploy(&guest("http-faulty"), "every", &grants).await;

    let viewer = s.client(VIEWER);
    let detail = viewer.get("/v1/modules/every").await.unwrap();
    let backends = viewer.get("/v1/backends").await.unwrap();
    for kind in kinds {
        let granted = &detail["grants"][kind];
        assert!(
            granted.as_array().is_some_and(|g| !g.is_empty()),
            "module detail lacks {kind}: {detail}"
        );
        let status = &backends[kind];
        assert!(
            status.as_array().is_some_and(|b| !b.is_empty()),
            "/v1/backends lacks {kind}: {backends}"
        );
    }
    assert_eq!(backends["events"][0]["kind"], "in-process", "{backends}");
    assert_eq!(detail["grants"]["kafka"], json!(["ev"]), "{detail}");
}
