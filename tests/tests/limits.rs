//! Every sandbox limit stops a hostile guest with an error naming the limit,
//! and the same process then runs a well-behaved module fine.

use warden_runtime::RunError;
use warden_tests::{hello_still_works, load, manifest_header};

async fn attack(attack: &str, limits: &str, extra_config: &str) -> RunError {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}[limits]\n{limits}\n[config]\nattack = \"{attack}\"\n{extra_config}",
        manifest_header("limits")
    );
    let (module, audit) = load("limits", &manifest, tmp.path()).expect("load");
    let err = module
        .run_task()
        .await
        .expect_err("the attack must not succeed");
    let events = audit.events();
    assert_eq!(events.len(), 1, "one audit event per breach: {events:?}");
    assert_eq!(events[0].module, "limits");
    err
}

fn assert_limit(err: &RunError, name: &str) {
    match err.limit() {
        Some(l) => assert_eq!(l.limit, name, "{err}"),
        None => panic!("expected the {name} limit, got {err}"),
    }
    assert!(
        err.to_string().contains(name),
        "message names the limit: {err}"
    );
}

#[tokio::test]
async fn infinite_loop_stops_at_timeout() {
    let err = attack("spin", "timeout = \"200ms\"", "").await;
    assert_limit(&err, "timeout");
    assert!(err.to_string().contains("200ms"), "{err}");
    hello_still_works().await;
}

#[tokio::test]
async fn unbounded_memory_grow_stops_at_memory() {
    let err = attack("grow", "memory = \"16 MiB\"", "").await;
    assert_limit(&err, "memory");
    assert!(err.to_string().contains("16 MiB"), "{err}");
    hello_still_works().await;
}

#[tokio::test]
async fn fuel_exhaustion_stops_the_guest() {
    let err = attack("spin", "fuel = 5000000\ntimeout = \"30s\"", "").await;
    assert_limit(&err, "fuel");
    assert!(err.to_string().contains("5000000"), "{err}");
    hello_still_works().await;
}

#[tokio::test]
async fn deep_recursion_is_a_trap_not_a_crash() {
    let err = attack("recurse", "", "").await;
    assert_limit(&err, "stack");
    hello_still_works().await;
}

#[tokio::test]
async fn resource_handle_flood_hits_the_cap() {
    let err = attack("handles", "max-handles = 500", "").await;
    assert_limit(&err, "max-handles");
    assert!(err.to_string().contains("500"), "{err}");
    hello_still_works().await;
}

#[tokio::test]
async fn huge_returned_string_hits_the_output_cap() {
    let err = attack(
        "huge-output",
        "max-output = \"1 MiB\"\nmemory = \"64 MiB\"",
        "mib = \"8\"\n",
    )
    .await;
    assert_limit(&err, "max-output");
    hello_still_works().await;
}

#[tokio::test]
async fn a_guest_panic_is_a_trap() {
    let err = attack("trap", "", "").await;
    assert!(matches!(err, RunError::Trap(_)), "{err}");
    hello_still_works().await;
}

#[tokio::test]
async fn shadow_stack_overflow_is_a_trap_not_a_crash() {
    let err = attack("recurse-shadow", "", "").await;
    assert!(matches!(err, RunError::Trap(_)), "{err}");
    assert!(err.to_string().contains("out of bounds"), "{err}");
    hello_still_works().await;
}

#[tokio::test]
async fn rate_limit_rejects_the_invocation_over_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}[limits]\nrate = \"2/h\"\n[config]\nname = \"r\"\n",
        manifest_header("hello")
    );
    let (module, audit) = load("hello", &manifest, tmp.path()).unwrap();
    module.run_task().await.unwrap();
    module.run_task().await.unwrap();
    let err = module.run_task().await.unwrap_err();
    assert_limit(&err, "rate");
    assert!(
        matches!(err, RunError::Refused(_)),
        "refused before it ran: {err:?}"
    );
    assert_eq!(audit.events().len(), 1);
}

// Multi-threaded so the test can watch while a guest spins on another thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn max_instances_queues_instead_of_running_more() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}[limits]\nmax-instances = 1\ntimeout = \"300ms\"\n[config]\nattack = \"spin\"\n",
        manifest_header("limits")
    );
    let (module, _) = load("limits", &manifest, tmp.path()).unwrap();
    let module = std::sync::Arc::new(module);
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let m = module.clone();
            tokio::spawn(async move { m.run_task().await })
        })
        .collect();
    let mut peak = 0;
    while runs.iter().any(|r| !r.is_finished()) {
        peak = peak.max(module.in_flight());
        tokio::task::yield_now().await;
    }
    assert_eq!(peak, 1, "never more than max-instances at once");
    for r in runs {
        // Each one ran (and hit its own timeout) rather than being refused.
        assert_limit(&r.await.unwrap().unwrap_err(), "timeout");
    }
}
