//! Filesystem grants: only granted dirs exist, read-only means read-only,
//! and nothing escapes a granted dir.

use std::path::Path;

use warden_runtime::RunError;
use warden_tests::{hello_still_works, load, load_under_root, manifest_header};

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

/// The fs-probe doing `op` on `path` as `warden serve` loads it: grants
/// beneath the server's `files` root. `Err` holds a load refusal.
async fn probe_under_root(
    root: &Path,
    name: &str,
    grants: &str,
    config: &str,
) -> Result<Result<String, RunError>, String> {
    let manifest = format!(
        "[module]\nname = \"{name}\"\nversion = \"0.1.0\"\n[grants.fs]\n{grants}\n[config]\n{config}\n"
    );
    let (module, _) = load_under_root("fs-probe", &manifest, root).map_err(|e| e.to_string())?;
    Ok(module.run_task().await.map(|o| o.stdout))
}

#[tokio::test]
async fn a_tenants_symlink_never_carries_another_tenants_grant_out_of_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data/files");
    std::fs::create_dir_all(root.join("a-dir/real")).unwrap();
    // What the attacker wants: the server's own files beside the root.
    std::fs::write(tmp.path().join("data/registry.db"), "registry").unwrap();
    std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
    std::fs::write(tmp.path().join("etc/passwd"), "host secret").unwrap();

    // Tenant A, read-write on its own directory, plants a relative link
    // that climbs out of the root (wasmtime-wasi lets guests do that).
    let planted = probe_under_root(
        &root,
        "tenant-a",
        "\"/a\" = { host = \"a-dir\", access = \"read-write\" }",
        "op = \"symlink\"\npath = \"/a/link\"\ntarget = \"../../..\"",
    )
    .await
    .expect("tenant A loads");
    planted.expect("a relative link inside the grant may be made");
    assert!(
        std::fs::symlink_metadata(root.join("a-dir/link"))
            .unwrap()
            .is_symlink()
    );

    // Tenant B names grant paths through that link: refused at load, named.
    for (grants, what) in [
        (
            "\"/x\" = { host = \"a-dir/link/etc\", access = \"read-only\" }",
            "read",
        ),
        (
            "\"/x\" = { host = \"a-dir/link/etc\", access = \"read-write\" }",
            "write",
        ),
        (
            "\"/x\" = { host = \"a-dir/link/newdir\", access = \"read-write\" }",
            "create",
        ),
        (
            "\"/x\" = { host = \"a-dir/link\", access = \"read-only\" }",
            "the link",
        ),
    ] {
        let err = probe_under_root(&root, "tenant-b", grants, "op = \"list\"\npath = \"/x\"")
            .await
            .expect_err(what);
        assert!(
            err.contains("a-dir/link") && err.contains("symlink"),
            "{what}: {err}"
        );
    }
    // The effect: nothing was made or changed outside the root.
    assert!(!tmp.path().join("newdir").exists());
    assert!(!tmp.path().join("etc/newdir").exists());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("etc/passwd")).unwrap(),
        "host secret"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("data/registry.db")).unwrap(),
        "registry"
    );
    hello_still_works().await;
}

#[tokio::test]
async fn a_grant_directory_swapped_for_a_link_after_the_check_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("files");
    std::fs::create_dir_all(root.join("shared/b")).unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "outside").unwrap();
    let manifest = "[module]\nname = \"tenant-b\"\nversion = \"0.1.0\"\n[grants.fs]\n\"/b\" = { host = \"shared/b\", access = \"read-write\" }\n[config]\nop = \"write\"\npath = \"/b/secret.txt\"\n";
    let (module, audit) = load_under_root("fs-probe", manifest, &root).expect("loads");
    module.run_task().await.expect("writes inside its grant");
    assert!(root.join("shared/b/secret.txt").exists());

    // Another tenant (read-write on `shared`) swaps b for a link up and out.
    std::fs::remove_file(root.join("shared/b/secret.txt")).unwrap();
    std::fs::remove_dir(root.join("shared/b")).unwrap();
    std::os::unix::fs::symlink("../..", root.join("shared/b")).unwrap();

    let err = module
        .run_task()
        .await
        .expect_err("the swapped grant is refused");
    assert!(err.to_string().contains("symlink"), "{err}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("secret.txt")).unwrap(),
        "outside"
    );
    let denials = audit.events();
    assert!(
        denials
            .iter()
            .any(|e| e.rule == "fs" && e.detail.contains("symlink")),
        "fs denial audited: {denials:?}"
    );
}
