//! Malformed components and manifests get a clear error, never a panic.

use warden_runtime::{LoadError, RunError};
use warden_tests::{guest_bytes, load, load_bytes, manifest_header};

fn load_err(bytes: &[u8]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    match load_bytes(bytes, &manifest_header("bad"), tmp.path()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("loaded a bad component"),
    }
}

#[test]
fn garbage_bytes_are_rejected() {
    let msg = load_err(b"definitely not wasm");
    assert!(
        msg.starts_with("invalid component: not a WebAssembly file"),
        "{msg}"
    );
    assert!(load_err(b"").starts_with("invalid component"));
}

#[test]
fn core_module_is_not_a_component() {
    let core = wat::parse_str("(module (func (export \"run\")))").unwrap();
    let msg = load_err(&core);
    assert!(
        msg.contains("core WebAssembly module, not a component"),
        "{msg}"
    );
}

#[test]
fn truncated_component_is_rejected() {
    let bytes = guest_bytes("hello");
    let msg = load_err(&bytes[..bytes.len() / 2]);
    assert!(msg.starts_with("invalid component"), "{msg}");
}

#[test]
fn component_without_known_exports_is_rejected() {
    let empty = wat::parse_str("(component)").unwrap();
    let msg = load_err(&empty);
    assert!(msg.contains("exports no interface"), "{msg}");
}

#[test]
fn component_importing_unknown_interfaces_is_rejected() {
    let wat = r#"(component
        (import "evil:host/escape@1.0.0" (instance))
        (core module $m (func (export "run") (result i32) i32.const 0))
        (core instance $i (instantiate $m))
        (func $run (result (result)) (canon lift (core func $i "run")))
        (instance $task (export "run" (func $run)))
        (export "warden:module/task@0.1.0" (instance $task)))"#;
    let bytes = wat::parse_str(wat).unwrap();
    let msg = load_err(&bytes);
    assert!(
        msg.contains("imports evil:host/escape@1.0.0, which this warden does not provide"),
        "{msg}"
    );
}

#[test]
fn unknown_manifest_key_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}[limits]\nmemory = \"1 MiB\"\ncpu = 2\n",
        manifest_header("hello")
    );
    match load("hello", &manifest, tmp.path()) {
        Err(LoadError::Manifest(errs)) => {
            assert_eq!(errs.len(), 1);
            assert!(
                errs[0].starts_with("limits.cpu: unknown field `cpu`"),
                "{errs:?}"
            );
        }
        other => panic!("expected a manifest error, got {:?}", other.err()),
    }
}

#[test]
fn memory_above_the_host_maximum_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}[limits]\nmemory = \"64 GiB\"\n",
        manifest_header("hello")
    );
    let msg = load("hello", &manifest, tmp.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("limits.memory 64 GiB is above this host's maximum"),
        "{msg}"
    );
}

#[test]
fn capability_imports_need_their_grants() {
    let tmp = tempfile::tempdir().unwrap();
    for (guest, import, grant) in [
        ("sql-probe", "warden:host/sql@0.1.0", "[grants.sql.<name>]"),
        ("kv-probe", "warden:host/kv@0.1.0", "[grants.kv.<name>]"),
    ] {
        let msg = load(guest, &manifest_header(guest), tmp.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            msg.contains(&format!("imports {import} but the manifest has no {grant}")),
            "{msg}"
        );
    }
}

/// A task whose post-return overwrites the error string it just returned:
/// the host must report what the guest returned, not what post-return left.
#[tokio::test]
async fn a_guest_error_is_read_before_post_return_can_scribble_over_it() {
    let wat = r#"(component
        (core module $m
          (memory (export "memory") 1)
          (data (i32.const 64) "quota reached, try later")
          (func (export "run") (result i32)
            (i32.store (i32.const 0) (i32.const 1))
            (i32.store (i32.const 4) (i32.const 64))
            (i32.store (i32.const 8) (i32.const 24))
            (i32.const 0))
          (func (export "post-run") (param i32)
            (memory.fill (i32.const 64) (i32.const 0xff) (i32.const 24))))
        (core instance $i (instantiate $m))
        (func $run (result (result (error string)))
          (canon lift (core func $i "run") (memory (core memory $i "memory"))
            (post-return (core func $i "post-run"))))
        (instance $task (export "run" (func $run)))
        (export "warden:module/task@0.1.0" (instance $task)))"#;
    let bytes = wat::parse_str(wat).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (module, _) = load_bytes(&bytes, &manifest_header("scribbler"), tmp.path()).unwrap();
    for _ in 0..3 {
        match module.run_task().await {
            Err(RunError::Failed(msg)) => assert_eq!(msg, "quota reached, try later"),
            other => panic!("expected the guest's own error, got {other:?}"),
        }
    }
}
