//! A query of large rows must not be materialized in host memory before
//! the output cap applies: the peak RSS of `warden run` stays within the
//! cap plus a fixed bound over the same run with a small result.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The default `max-output` of a module that sets none.
const CAP_MIB: u64 = 16;
const SLACK_MIB: u64 = 64;

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

/// Runs sql-probe once with `sql`; returns (peak RSS in MiB, stderr).
fn peak_rss_mib(dir: &Path, sql: &str) -> (u64, String) {
    let host = dir.join("host.toml");
    std::fs::write(
        &host,
        "[sql.db]\nurl = \"postgres://warden_rw@127.0.0.1:5432/test\"\n\
         read-only-url = \"postgres://warden_ro@127.0.0.1:5432/test\"\n\
         control-url = \"postgres://warden_ctl@127.0.0.1:5432/test\"\n",
    )
    .unwrap();
    let manifest = dir.join("warden.toml");
    std::fs::write(
        &manifest,
        format!(
            "[module]\nname = \"sql-probe\"\nversion = \"0.1.0\"\n[limits]\ntimeout = \"60s\"\n\
             [grants.sql.main]\nbackend = \"db\"\nstatement-timeout = \"60s\"\n\
             [config]\ngrant = \"main\"\nop = \"query\"\nsql = '''{sql}'''\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("run")
        .arg(guest("sql-probe"))
        .arg("--manifest")
        .arg(&manifest)
        .arg("--config")
        .arg(&host)
        .env(
            "WARDEN_CACHE_DIR",
            std::env::temp_dir().join("warden-cli-test-cache"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running warden");
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    while child.try_wait().unwrap().is_none() {
        // VmHWM: the highest resident set so far.
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    (
        peak_kib / 1024,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_query_of_large_rows_stays_within_the_output_cap_in_host_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (small, err) = peak_rss_mib(dir.path(), "SELECT 1 AS one");
    assert!(err.is_empty(), "{err}");
    for (what, sql) in [
        // 1.2 GB in rows of 4 MB.
        (
            "many large rows",
            "SELECT repeat('x', 4000000) AS wide FROM generate_series(1, 300)",
        ),
        // 300 MB in rows of ten values of 1 MB.
        (
            "wide rows",
            "SELECT r.* FROM generate_series(1, 30) g, LATERAL (SELECT \
             repeat('a', 1000000) a1, repeat('a', 1000000) a2, repeat('a', 1000000) a3, \
             repeat('a', 1000000) a4, repeat('a', 1000000) a5, repeat('a', 1000000) a6, \
             repeat('a', 1000000) a7, repeat('a', 1000000) a8, repeat('a', 1000000) a9, \
             repeat('a', 1000000) a10) r",
        ),
        // One 300 MB value: refused from the message header, never buffered.
        ("one large value", "SELECT repeat('x', 300000000) AS big"),
    ] {
        let (large, err) = peak_rss_mib(dir.path(), sql);
        assert!(err.contains("max-output"), "{what}: {err}");
        println!("{what}: peak RSS {large} MiB (a small result: {small} MiB)");
        assert!(
            large <= small + CAP_MIB + SLACK_MIB,
            "{what}: peak RSS {large} MiB, over {small} MiB + the {CAP_MIB} MiB cap + {SLACK_MIB} MiB"
        );
    }
}
