//! Test harness: loads the real guest components (built by
//! `guest-modules/build.sh`) into one shared engine, with manifests written
//! by each test.

pub mod sql;

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use warden_capability::MemoryAudit;
use warden_fs::HostPaths;
use warden_kv::KvBackends;
use warden_runtime::linker::{Linker, build_linker};
use warden_runtime::module::{LoadContext, LoadedModule, Stdio};
use warden_runtime::state::ModuleState;
use warden_runtime::{EngineOptions, Limits, LoadError, Manifest, WardenEngine};
use warden_sql::SqlBackends;

/// Path of a guest component by crate name (`hello`, `fs-probe`, ...).
pub fn guest(name: &str) -> PathBuf {
    let file = format!("{}.wasm", name.replace('-', "_"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-modules/target/wasm32-wasip2/release")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: build the guests first (`just build-guests`)",
        path.display()
    );
    path
}

pub fn guest_bytes(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).expect("reading guest component")
}

struct Shared {
    engine: WardenEngine,
    linker: Linker<ModuleState>,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("warden-tests-cache-{}", std::process::id()));
    let engine = WardenEngine::new(EngineOptions {
        max_instances: 64,
        cache_dir: Some(dir),
        ..EngineOptions::default()
    })
    .expect("engine");
    let linker = build_linker(&engine).expect("linker");
    Shared { engine, linker }
});

pub fn engine() -> &'static WardenEngine {
    &SHARED.engine
}

/// A minimal manifest header for module `name`.
pub fn manifest_header(name: &str) -> String {
    format!("[module]\nname = \"{name}\"\nversion = \"0.1.0\"\n")
}

/// Loads `guest` under `manifest` (TOML), host paths relative to `base`,
/// with captured stdio.
pub fn load(
    guest_name: &str,
    manifest: &str,
    base: &Path,
) -> Result<(LoadedModule, MemoryAudit), LoadError> {
    load_bytes(&guest_bytes(guest_name), manifest, base)
}

pub fn load_bytes(
    bytes: &[u8],
    manifest: &str,
    base: &Path,
) -> Result<(LoadedModule, MemoryAudit), LoadError> {
    load_with_sql(bytes, manifest, base, &SqlBackends::default())
}

/// Like [`load_bytes`], with the host's SQL backends.
pub fn load_with_sql(
    bytes: &[u8],
    manifest: &str,
    base: &Path,
    sql: &SqlBackends,
) -> Result<(LoadedModule, MemoryAudit), LoadError> {
    load_with_backends(bytes, manifest, base, sql, &KvBackends::default())
}

/// Like [`load_bytes`], with the host's backends.
pub fn load_with_backends(
    bytes: &[u8],
    manifest: &str,
    base: &Path,
    sql: &SqlBackends,
    kv: &KvBackends,
) -> Result<(LoadedModule, MemoryAudit), LoadError> {
    let backends = warden_runtime::Backends {
        sql: sql.clone(),
        kv: kv.clone(),
        ..Default::default()
    };
    load_in(
        bytes,
        manifest,
        HostPaths::RelativeTo(base.to_path_buf()),
        &backends,
        None,
    )
}

/// Loads as `warden serve` loads a scoped token's module: its network
/// grants reach no internal address and none of `backend_addrs`.
pub fn load_confined(
    guest_name: &str,
    manifest: &str,
    base: &Path,
    backend_addrs: Vec<std::net::IpAddr>,
) -> Result<(LoadedModule, MemoryAudit), LoadError> {
    load_in(
        &guest_bytes(guest_name),
        manifest,
        HostPaths::RelativeTo(base.to_path_buf()),
        &Default::default(),
        Some(backend_addrs.into()),
    )
}

/// Loads as `warden serve` does: `[grants.fs]` host paths beneath `root`
/// (the server's `files` root), opened by handle.
pub fn load_under_root(
    guest_name: &str,
    manifest: &str,
    root: &Path,
) -> Result<(LoadedModule, MemoryAudit), LoadError> {
    let roots = [(warden_fs::DEFAULT_ROOT.to_string(), root.to_path_buf())].into();
    load_in(
        &guest_bytes(guest_name),
        manifest,
        HostPaths::Roots(roots),
        &Default::default(),
        None,
    )
}

fn load_in(
    bytes: &[u8],
    manifest: &str,
    host_paths: HostPaths,
    backends: &warden_runtime::Backends,
    outside_only: Option<Arc<[std::net::IpAddr]>>,
) -> Result<(LoadedModule, MemoryAudit), LoadError> {
    let manifest = Manifest::parse(manifest)
        .map_err(|errs| LoadError::Manifest(errs.iter().map(|e| e.to_string()).collect()))?;
    let audit = MemoryAudit::default();
    let cx = LoadContext {
        engine: &SHARED.engine,
        linker: &SHARED.linker,
        host_paths,
        defaults: &Limits::default(),
        audit: Arc::new(audit.clone()),
        backends,
        outside_only,
    };
    let mut module = LoadedModule::load(&cx, bytes, manifest)?;
    module.set_stdio(Stdio::Capture(1 << 20));
    Ok((module, audit))
}

/// Runs the well-behaved `hello` module: proves the host is still healthy.
pub async fn hello_still_works() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = format!("{}[config]\nname = \"again\"\n", manifest_header("hello"));
    let (module, _) = load("hello", &manifest, tmp.path()).expect("load hello");
    let out = module.run_task().await.expect("hello runs");
    assert_eq!(out.stdout, "Hello, again!\n");
}

/// The operator's PostgreSQL superuser, for checking what a test's guests
/// did (never handed to a module).
pub async fn admin_postgres() -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/test")
        .await
        .expect("admin connection to PostgreSQL")
}

/// The operator's MariaDB root, for checking what a test's guests did.
pub async fn admin_mysql() -> sqlx::MySqlConnection {
    use sqlx::Connection;
    sqlx::MySqlConnection::connect("mysql://root@127.0.0.1:3306/test")
        .await
        .expect("admin connection to MariaDB")
}

/// Resident memory of this (test) process, in KiB.
pub fn own_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
