//! Filesystem grants: only granted dirs exist, read-only means read-only,
//! and nothing escapes a granted dir.

use std::path::Path;

use warden_runtime::RunError;
use warden_tests::{load, manifest_header};

/// Runs fs-probe doing `op` on `path` with `grants` (TOML lines under [grants.fs]).
async fn probe(base: &Path, grants: &str, op: &str, path: &str) -> Result<String, RunError> {
    let grants = if grants.is_empty() {
        String::new()
    } else {
        format!("[grants.fs]\n{grants}\n")
    };
    let manifest = format!(
        "{}{grants}[config]\nop = \"{op}\"\npath = \"{path}\"\n",
        manifest_header("fs-probe")
    );
    let (module, _) = load("fs-probe", &manifest, base).expect("load");
    module.run_task().await.map(|o| o.stdout)
}

fn fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("data/sub")).unwrap();
    std::fs::write(tmp.path().join("data/hello.txt"), "inside").unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "outside").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), tmp.path().join("data/link"))
        .unwrap();
    std::os::unix::fs::symlink("../secret.txt", tmp.path().join("data/rel-link")).unwrap();
    tmp
}

const RO: &str = "\"/data\" = { host = \"data\", access = \"read-only\" }";
const RW: &str = "\"/data\" = { host = \"data\", access = \"read-write\" }";

fn assert_denied(result: Result<String, RunError>, what: &str) {
    match result {
        Err(RunError::Failed(msg)) => assert!(!msg.contains("outside"), "{what}: leaked: {msg}"),
        Err(other) => panic!("{what}: expected a clean failure, got {other}"),
        Ok(out) => panic!("{what}: escaped the grant, printed {out:?}"),
    }
}

#[tokio::test]
async fn granted_file_is_readable() {
    let tmp = fixture();
    assert_eq!(
        probe(tmp.path(), RO, "read", "/data/hello.txt")
            .await
            .unwrap(),
        "inside\n"
    );
}

#[tokio::test]
async fn dot_dot_traversal_is_denied() {
    let tmp = fixture();
    assert_denied(
        probe(tmp.path(), RO, "read", "/data/../secret.txt").await,
        "..",
    );
    assert_denied(
        probe(tmp.path(), RO, "read", "/data/sub/../../secret.txt").await,
        "sub/../..",
    );
}

#[tokio::test]
async fn absolute_paths_outside_grants_are_denied() {
    let tmp = fixture();
    let secret = tmp.path().join("secret.txt");
    assert_denied(
        probe(tmp.path(), RO, "read", secret.to_str().unwrap()).await,
        "host path",
    );
    assert_denied(
        probe(tmp.path(), RO, "read", "/etc/passwd").await,
        "/etc/passwd",
    );
    assert_denied(probe(tmp.path(), RO, "list", "/").await, "list /");
}

#[tokio::test]
async fn symlinks_leaving_the_grant_are_denied() {
    let tmp = fixture();
    assert_denied(
        probe(tmp.path(), RO, "read", "/data/link").await,
        "absolute symlink",
    );
    assert_denied(
        probe(tmp.path(), RO, "read", "/data/rel-link").await,
        "relative symlink",
    );
    assert_denied(
        probe(tmp.path(), RW, "write", "/data/link").await,
        "write through symlink",
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("secret.txt")).unwrap(),
        "outside"
    );
}

#[tokio::test]
async fn read_only_grants_refuse_every_write() {
    let tmp = fixture();
    assert_denied(
        probe(tmp.path(), RO, "write", "/data/new.txt").await,
        "create file",
    );
    assert_denied(
        probe(tmp.path(), RO, "write", "/data/hello.txt").await,
        "overwrite",
    );
    assert_denied(
        probe(tmp.path(), RO, "create-dir", "/data/newdir").await,
        "mkdir",
    );
    assert_denied(
        probe(tmp.path(), RO, "remove", "/data/hello.txt").await,
        "remove",
    );
    assert!(!tmp.path().join("data/new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("data/hello.txt")).unwrap(),
        "inside"
    );
}

#[tokio::test]
async fn read_write_grants_allow_writes_inside() {
    let tmp = fixture();
    probe(tmp.path(), RW, "write", "/data/new.txt")
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("data/new.txt")).unwrap(),
        "written by fs-probe"
    );
}

#[tokio::test]
async fn without_a_grant_no_path_opens() {
    let tmp = fixture();
    for path in ["/data/hello.txt", "hello.txt", ".", "/"] {
        assert_denied(probe(tmp.path(), "", "read", path).await, path);
    }
    assert_denied(probe(tmp.path(), "", "write", "/tmp/x").await, "write");
}

#[tokio::test]
async fn fs_report_example_summarises_its_input() {
    let tmp = fixture();
    let manifest = format!(
        "{}[grants.fs]\n\"/input\" = {{ host = \"data\" }}\n\"/output\" = {{ host = \"out\", access = \"read-write\" }}\n",
        manifest_header("fs-report")
    );
    let (module, _) = load("fs-report", &manifest, tmp.path()).expect("load");
    let out = module.run_task().await.expect("fs-report runs");
    let report = std::fs::read_to_string(tmp.path().join("out/report.txt")).unwrap();
    assert_eq!(out.stdout, report);
    assert!(report.contains("hello.txt\t6 bytes\t0 lines"), "{report}");
    assert!(report.ends_with("total\t1 files\t6 bytes\n"), "{report}");
}
