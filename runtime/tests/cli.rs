//! The CLI contract: exit 0 on success; otherwise non-zero and exactly one
//! line on stderr naming the module, the rule and the limit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn guest(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-modules/target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "{} is missing: run `just build-guests`",
        path.display()
    );
    path
}

fn example_manifest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-modules/examples")
        .join(name)
        .join("warden.toml")
}

fn warden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .env(
            "WARDEN_CACHE_DIR",
            std::env::temp_dir().join("warden-cli-test-cache"),
        )
        .output()
        .expect("running warden")
}

fn manifest_file(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("warden.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// Asserts failure with one stderr line, and returns it.
fn one_error_line(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(
        stderr.lines().count(),
        1,
        "exactly one line on stderr: {stderr:?}"
    );
    stderr.trim_end().to_string()
}

#[test]
fn run_hello_prints_its_greeting() {
    let hello = guest("hello");
    let out = warden(&[
        "run",
        hello.to_str().unwrap(),
        "--manifest",
        example_manifest("hello").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello, Warden!\n");
}

#[test]
fn invoke_prints_the_result_as_json() {
    let hello = guest("hello");
    let m = example_manifest("hello");
    let out = warden(&[
        "run",
        hello.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
        "--invoke",
        "warden:module/task#run",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Hello, Warden!\n{\"ok\":null}\n"
    );
}

#[test]
fn a_limit_breach_names_module_and_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest_file(
        tmp.path(),
        "[module]\nname = \"spinner\"\nversion = \"0.1.0\"\n[limits]\ntimeout = \"100ms\"\n[config]\nattack = \"spin\"\n",
    );
    let limits = guest("limits");
    let line = one_error_line(&warden(&[
        "run",
        limits.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
    ]));
    assert_eq!(line, "spinner: limit exceeded: timeout (100ms)");
}

#[test]
fn a_denial_names_the_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest_file(
        tmp.path(),
        "[module]\nname = \"prober\"\nversion = \"0.1.0\"\n[grants.net]\nallow = [\"127.0.0.1:9\"]\n[config]\naddr = \"127.0.0.1:10\"\n",
    );
    let probe = guest("net-probe");
    let line = one_error_line(&warden(&[
        "run",
        probe.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
    ]));
    assert!(
        line.starts_with("prober: denied: net: TcpConnect 127.0.0.1:10 is not in grants.net.allow"),
        "{line}"
    );
}

#[test]
fn a_privileged_database_credential_is_refused_before_the_module_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest_file(
        tmp.path(),
        "[module]\nname = \"sql-probe\"\nversion = \"0.1.0\"\n[grants.sql.main]\nbackend = \"db\"\n\
         [config]\ngrant = \"main\"\nop = \"query\"\nsql = \"SELECT 1 AS one\"\n",
    );
    let host = |extra: &str| {
        let path = tmp.path().join("host.toml");
        std::fs::write(
            &path,
            format!("[sql.db]\nurl = \"postgres://postgres@127.0.0.1:5432/test\"\n{extra}"),
        )
        .unwrap();
        path
    };
    let probe = guest("sql-probe");
    let run = |config: &Path| {
        warden(&[
            "run",
            probe.to_str().unwrap(),
            "--manifest",
            m.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
    };
    let line = one_error_line(&run(&host("")));
    assert!(
        line.starts_with("sql-probe: invalid host config: sql.db: the credential has ")
            && line.contains("SUPERUSER")
            && line.contains("allow-privileged = true"),
        "{line}"
    );
    // Opted in: it runs, with a warning that names what the credential may do.
    let out = run(&host("allow-privileged = true\n"));
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PRIVILEGED credential (") && stderr.contains("SUPERUSER"),
        "{stderr}"
    );
}

#[test]
fn check_rejects_imports_the_manifest_does_not_grant() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest_file(
        tmp.path(),
        "[module]\nname = \"sneaky\"\nversion = \"0.1.0\"\n",
    );
    let probe = guest("net-probe");
    let line = one_error_line(&warden(&[
        "check",
        probe.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
    ]));
    assert!(line.starts_with("sneaky: denied: imports "), "{line}");
    assert!(line.contains("wasi:sockets/tcp-create-socket"), "{line}");
    assert!(line.contains("wasi:http/outgoing-handler"), "{line}");
}

#[test]
fn check_accepts_a_matching_component() {
    let hello = guest("hello");
    let out = warden(&[
        "check",
        hello.to_str().unwrap(),
        "--manifest",
        example_manifest("hello").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hello: ok: version 0.1.0, sha256 "));
}

#[test]
fn bad_inputs_get_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest_file(
        tmp.path(),
        "[module]\nname = \"bad\"\nversion = \"0.1.0\"\n",
    );
    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, b"junk").unwrap();
    let line = one_error_line(&warden(&[
        "check",
        junk.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
    ]));
    assert_eq!(
        line,
        "bad: invalid component: not a WebAssembly file (bad magic bytes)"
    );

    let missing = tmp.path().join("missing.wasm");
    let line = one_error_line(&warden(&[
        "run",
        missing.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
    ]));
    assert!(
        line.starts_with("bad: invalid component: cannot read"),
        "{line}"
    );

    let m2 = manifest_file(
        tmp.path(),
        "[module]\nname = \"bad\"\nversion = \"0.1.0\"\nsurprise = 1\n",
    );
    let hello = guest("hello");
    let line = one_error_line(&warden(&[
        "check",
        hello.to_str().unwrap(),
        "--manifest",
        m2.to_str().unwrap(),
    ]));
    assert!(
        line.starts_with("hello: invalid manifest: module.surprise: unknown field `surprise`"),
        "{line}"
    );
}

#[test]
fn http_request_reaches_the_handler() {
    let guest = guest("http-hello");
    let m = example_manifest("http-hello");
    let out = warden(&[
        "run",
        guest.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
        "--http",
        "POST",
        "/hello/x?y=1",
        "--body",
        "ping",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "HTTP 200\ncontent-type: text/plain\n\nHello from POST /hello/x?y=1\nping"
    );
}

/// `warden check` and `warden run` apply the server's compile limits: the
/// structure check, and a compile in a bounded child process.
#[test]
fn check_and_run_refuse_compile_bombs_with_the_server_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = manifest_file(
        tmp.path(),
        "[module]\nname = \"bomb\"\nversion = \"0.1.0\"\n",
    );
    // 40 components, each nested in the one before.
    let bomb = tmp.path().join("bomb.wasm");
    let wat = format!("{}{}", "(component ".repeat(40), ")".repeat(40));
    std::fs::write(&bomb, wat::parse_str(&wat).unwrap()).unwrap();
    let out = warden(&[
        "check",
        bomb.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    let line = one_error_line(&out);
    assert!(
        line.starts_with("bomb: invalid component: too large to compile: nesting depth"),
        "{line}"
    );

    // A compile that needs more than compile-memory fails in the child.
    let host = tmp.path().join("host.toml");
    std::fs::write(
        &host,
        "[server]\ndata-dir = \"data\"\ncompile-memory = \"8 MiB\"\n",
    )
    .unwrap();
    let out = warden(&[
        "run",
        guest("hello").to_str().unwrap(),
        "--manifest",
        example_manifest("hello").to_str().unwrap(),
        "--config",
        host.to_str().unwrap(),
    ]);
    let line = one_error_line(&out);
    assert!(
        line.contains("needed more than the limit of 8 MiB of memory"),
        "{line}"
    );
}
