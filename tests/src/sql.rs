//! The SQL test harness: a backend on the least-privilege roles of
//! `tests/services.sh` (or a fresh SQLite file), a fresh table name, and
//! the sql-probe guest run under a grant the test writes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use warden_runtime::RunError;
use warden_sql::{SqlBackendConfig, SqlBackends};

use crate::{guest_bytes, load_with_sql, manifest_header};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    Postgres,
    MariaDb,
    Sqlite,
}

pub const ALL: [Backend; 3] = [Backend::Postgres, Backend::MariaDb, Backend::Sqlite];

pub struct Fixture {
    pub db: Backend,
    pub dir: tempfile::TempDir,
    pub backends: SqlBackends,
    pub table: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The URL of a least-privilege role that `tests/services.sh` creates.
pub fn least_privilege(db: Backend, role: &str, query: &str) -> String {
    match db {
        Backend::Postgres => format!("postgres://{role}@127.0.0.1:5432/test{query}"),
        Backend::MariaDb => format!("mysql://{role}@127.0.0.1:3306/test{query}"),
        Backend::Sqlite => unreachable!("SQLite has no roles"),
    }
}

/// The host's control-url role of `tests/services.sh` (on MariaDB it has no
/// database of its own: it only watches and ends sessions).
pub fn control_url(db: Backend) -> String {
    match db {
        Backend::MariaDb => "mysql://warden_ctl@127.0.0.1:3306".into(),
        _ => least_privilege(db, "warden_ctl", ""),
    }
}

impl Fixture {
    /// A backend `db` and a fresh table name for this test.
    pub fn new(db: Backend) -> Fixture {
        Fixture::with_pool(db, 8)
    }

    pub fn with_pool(db: Backend, pool_size: u32) -> Fixture {
        Fixture::with_url_query(db, pool_size, "")
    }

    /// `query` is appended to the backend URL (`?application_name=…`).
    pub fn with_url_query(db: Backend, pool_size: u32, query: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let config = match db {
            Backend::Postgres | Backend::MariaDb => SqlBackendConfig {
                read_only_url: Some(least_privilege(db, "warden_ro", query)),
                control_url: Some(control_url(db)),
                max_connections: pool_size,
                ..SqlBackendConfig::new(least_privilege(db, "warden_rw", query))
            },
            Backend::Sqlite => SqlBackendConfig {
                max_connections: pool_size,
                ..SqlBackendConfig::new(format!("sqlite://{}/test.db{query}", dir.path().display()))
            },
        };
        Fixture::with_config(db, dir, config)
    }

    /// Read-only and read-write grants on one credential (no
    /// `read-only-url`), so they share the pool: what one module leaves on a
    /// connection could reach the next.
    pub fn one_credential(db: Backend, pool_size: u32) -> Fixture {
        Fixture::with_config(
            db,
            tempfile::tempdir().unwrap(),
            SqlBackendConfig {
                control_url: Some(control_url(db)),
                max_connections: pool_size,
                ..SqlBackendConfig::new(least_privilege(db, "warden_rw", ""))
            },
        )
    }

    /// A fixture on backend `db` configured as `config` (files in `dir`).
    pub fn with_config(db: Backend, dir: tempfile::TempDir, config: SqlBackendConfig) -> Fixture {
        let configs = BTreeMap::from([("db".to_string(), config)]);
        let table = format!(
            "warden_t{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        Fixture {
            db,
            backends: SqlBackends::new(&configs).unwrap(),
            dir,
            table,
        }
    }

    /// Runs sql-probe with grant `main` = `grant` (TOML inline table fields)
    /// and `config` lines; returns what it printed or the error.
    pub async fn probe(&self, grant: &str, config: &str) -> Result<String, RunError> {
        self.probe_audited(grant, config).await.0
    }

    pub async fn probe_audited(
        &self,
        grant: &str,
        config: &str,
    ) -> (Result<String, RunError>, Vec<warden_capability::AuditEvent>) {
        self.probe_limited("timeout = \"10s\"", grant, config).await
    }

    /// Like [`Fixture::probe_audited`], with `[limits]` lines of its own.
    pub async fn probe_limited(
        &self,
        limits: &str,
        grant: &str,
        config: &str,
    ) -> (Result<String, RunError>, Vec<warden_capability::AuditEvent>) {
        let (module, audit) = self.load_probe(limits, grant, config);
        let result = module.run_task().await.map(|o| o.stdout);
        (result, audit.events())
    }

    /// sql-probe loaded once (its quota spans all of its invocations) with
    /// `[limits]`, grant `main` and `[config]` lines of the test's own.
    pub fn load_probe(
        &self,
        limits: &str,
        grant: &str,
        config: &str,
    ) -> (warden_runtime::LoadedModule, warden_capability::MemoryAudit) {
        let manifest = format!(
            "{}[limits]\n{limits}\n[grants.sql.main]\nbackend = \"db\"\n{grant}\n[config]\ngrant = \"main\"\n{config}\n",
            manifest_header("sql-probe")
        );
        load_with_sql(
            &guest_bytes("sql-probe"),
            &manifest,
            self.dir.path(),
            &self.backends,
        )
        .expect("load")
    }

    pub async fn rw(&self, op: &str, sql: &str, params: &str) -> Result<String, RunError> {
        self.probe(
            "access = \"read-write\"",
            &format!("op = \"{op}\"\nsql = '''{sql}'''\nparams = '''{params}'''"),
        )
        .await
    }

    pub async fn create(&self, columns: &str) {
        self.execute(&format!("CREATE TABLE {} ({columns})", self.table))
            .await;
    }

    /// A read-write statement without parameters that must succeed.
    pub async fn execute(&self, sql: &str) {
        self.rw("execute", sql, "[]")
            .await
            .unwrap_or_else(|e| panic!("{:?}: {sql}: {e}", self.db));
    }

    /// `$1, $2` on PostgreSQL, `?, ?` elsewhere.
    pub fn placeholders(&self, n: usize) -> String {
        let one = |i: usize| {
            if self.db == Backend::Postgres {
                format!("${i}")
            } else {
                "?".into()
            }
        };
        (1..=n).map(one).collect::<Vec<_>>().join(", ")
    }

    pub async fn count(&self) -> String {
        let out = self
            .rw(
                "query",
                &format!("SELECT COUNT(*) AS n FROM {}", self.table),
                "[]",
            )
            .await
            .unwrap();
        out.lines().nth(1).unwrap().to_string()
    }
}

impl Fixture {
    /// Drops the test's table (a failed test leaves it behind, uniquely named).
    pub async fn finish(self) {
        let _ = self
            .rw(
                "execute",
                &format!("DROP TABLE IF EXISTS {}", self.table),
                "[]",
            )
            .await;
    }
}

pub fn failed(result: Result<String, RunError>, what: &str) -> String {
    match result {
        Err(RunError::Failed(msg)) => msg,
        other => panic!("{what}: expected the guest to get an error, got {other:?}"),
    }
}
