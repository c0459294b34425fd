//! One pool per `[sql.<id>]` backend, built once at start-up and shared by
//! every module granted it. Connections are made lazily, so a backend that is
//! down at start-up only fails the calls that need it, and the pool recovers
//! by itself when the database comes back. Connections are not pinged
//! before they are lent (a round trip on every call): the host's own BEGIN is
//! that check (`SqlBackend::acquire_begun`).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::config::SqlBackendConfig;

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlKind {
    Postgres,
    MySql,
    Sqlite,
}

pub(crate) enum Pools {
    Postgres(PgPool),
    MySql(MySqlPool),
    /// Read-only grants use connections opened read-only: SQLite itself
    /// refuses every write, whatever PRAGMA the guest sends.
    Sqlite {
        rw: SqlitePool,
        ro: SqlitePool,
    },
}

pub struct SqlBackend {
    pub id: String,
    pub kind: SqlKind,
    pub(crate) pools: Pools,
    pub(crate) max_connections: u32,
    pub(crate) waits: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// Pool health for `/v1/backends` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlBackendStatus {
    pub id: String,
    pub kind: SqlKind,
    pub size: u32,
    pub idle: u32,
    pub in_use: u32,
    /// Acquisitions that had to wait for a connection.
    pub waits: u64,
    /// Failed acquisitions and backend errors.
    pub errors: u64,
}

/// All SQL backends of the host.
#[derive(Default, Clone)]
pub struct SqlBackends {
    backends: HashMap<String, Arc<SqlBackend>>,
}

impl SqlBackends {
    pub fn new(configs: &BTreeMap<String, SqlBackendConfig>) -> Result<Self, String> {
        let mut backends = HashMap::new();
        for (id, config) in configs {
            let backend = SqlBackend::new(id, config).map_err(|e| format!("sql.{id}: {e}"))?;
            backends.insert(id.clone(), Arc::new(backend));
        }
        Ok(Self { backends })
    }

    pub fn get(&self, id: &str) -> Option<Arc<SqlBackend>> {
        self.backends.get(id).cloned()
    }

    pub fn status(&self) -> Vec<SqlBackendStatus> {
        let mut all: Vec<_> = self.backends.values().map(|b| b.status()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

impl SqlBackend {
    fn new(id: &str, config: &SqlBackendConfig) -> Result<Self, String> {
        let n = config.max_connections.max(1);
        let url = config.url.as_str();
        let (kind, pools) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(n)
                .test_before_acquire(false)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy(url)
                .map_err(|e| format!("invalid url: {e}"))?;
            (SqlKind::Postgres, Pools::Postgres(pool))
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let pool = MySqlPoolOptions::new()
                .max_connections(n)
                .test_before_acquire(false)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy(&url)
                .map_err(|e| format!("invalid url: {e}"))?;
            (SqlKind::MySql, Pools::MySql(pool))
        } else if url.starts_with("sqlite:") {
            let rw_opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| format!("invalid url: {e}"))?
                .create_if_missing(true);
            let ro_opts = rw_opts.clone().read_only(true);
            // Read-only connections cannot create the file: make an empty
            // database now so read-only grants work before the first write.
            let file = rw_opts.get_filename();
            if file != std::path::Path::new(":memory:") && !file.exists() {
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                    .map_err(|e| format!("cannot create {}: {e}", file.display()))?;
            }
            let pool = |opts: SqliteConnectOptions| {
                SqlitePoolOptions::new()
                    .max_connections(n)
                    .test_before_acquire(false)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .after_connect(|conn, _| {
                        Box::pin(async move { crate::sqlite::harden(conn).await })
                    })
                    .connect_lazy_with(opts)
            };
            (
                SqlKind::Sqlite,
                Pools::Sqlite {
                    rw: pool(rw_opts),
                    ro: pool(ro_opts),
                },
            )
        } else {
            return Err(format!(
                "unsupported url {url:?}: use postgres://, mysql:// or sqlite:"
            ));
        };
        Ok(Self {
            id: id.to_string(),
            kind,
            pools,
            max_connections: n,
            waits: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    pub fn status(&self) -> SqlBackendStatus {
        let (size, idle) = match &self.pools {
            Pools::Postgres(p) => (p.size(), p.num_idle() as u32),
            Pools::MySql(p) => (p.size(), p.num_idle() as u32),
            Pools::Sqlite { rw, ro } => (
                rw.size() + ro.size(),
                (rw.num_idle() + ro.num_idle()) as u32,
            ),
        };
        SqlBackendStatus {
            id: self.id.clone(),
            kind: self.kind,
            size,
            idle,
            in_use: size.saturating_sub(idle),
            waits: self.waits.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}
