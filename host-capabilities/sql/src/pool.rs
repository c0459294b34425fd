//! One pool per `[sql.<id>]` backend, built once at start-up and shared by
//! every module granted it. Connections are made lazily, so a backend that is
//! down at start-up only fails the calls that need it, and the pool recovers
//! by itself when the database comes back. Connections are not pinged
//! before they are lent (a round trip on every call): the host's own BEGIN is
//! that check (`SqlBackend::acquire_begun`).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::Pool;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, Postgres};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use warden_capability::{Backend, BackendSet};

use crate::config::SqlBackendConfig;
use crate::privileges::{self, PrivilegeCheck};

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long start-up waits for each credential's first connection.
const START_CHECK: Duration = Duration::from_secs(3);
/// Connections of a credential's control pool (cancel, watch, terminate).
const CONTROL_CONNECTIONS: u32 = 2;
/// A PostgreSQL backend whose client went away (a connection the host had
/// to close) stops its statement within this, instead of running on.
const CLIENT_CHECK_INTERVAL_MS: &str = "1000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SqlKind {
    Postgres,
    MySql,
    Sqlite,
}

/// One database credential of a backend: the shared pool, and a small
/// control pool (on `control-url`, else on the same credential) that
/// cancels and watches statements of the shared pool's connections.
pub(crate) struct Credential<DB: sqlx::Database> {
    pub pool: Pool<DB>,
    pub control: Pool<DB>,
    /// Whether `control` is the host's own `control-url` credential.
    pub separate_control: bool,
    /// MySQL: what puts a reset session back as the host opened it. The
    /// server's session reset keeps the current database and role, so a
    /// guest's `USE` or `SET ROLE` would reach the next module.
    pub restore: Arc<str>,
    pub check: Arc<PrivilegeCheck>,
}

pub(crate) enum Pools {
    /// `ro` is the `read-only-url` credential, if one is set.
    Postgres {
        rw: Credential<Postgres>,
        ro: Option<Credential<Postgres>>,
    },
    MySql {
        rw: Credential<MySql>,
        ro: Option<Credential<MySql>>,
    },
    /// Read-only grants use connections opened read-only: SQLite itself
    /// refuses every write, whatever PRAGMA the guest sends.
    Sqlite { rw: SqlitePool, ro: SqlitePool },
}

pub struct SqlBackend {
    pub id: String,
    pub kind: SqlKind,
    pub(crate) pools: Pools,
    pub(crate) max_connections: u32,
    pub(crate) waits: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Whether the server is there; calls fail fast while it is not.
    pub(crate) health: warden_capability::Health,
    /// The same for `read-only-url` when it names another server.
    pub(crate) read_only_health: Option<warden_capability::Health>,
}

/// Pool health for `/v1/backends` and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    /// Server-wide privileges that a credential has and
    /// `allow-privileged = true` let serve modules anyway.
    pub privileged: Vec<String>,
    /// Why a credential is refused, if it is.
    pub refused: Option<String>,
}

/// All SQL backends of the host.
#[derive(Default, Clone)]
pub struct SqlBackends(BackendSet<SqlBackend>);

impl From<BackendSet<SqlBackend>> for SqlBackends {
    fn from(set: BackendSet<SqlBackend>) -> Self {
        Self(set)
    }
}

impl AsRef<BackendSet<SqlBackend>> for SqlBackends {
    fn as_ref(&self) -> &BackendSet<SqlBackend> {
        &self.0
    }
}

impl std::ops::Deref for SqlBackends {
    type Target = BackendSet<SqlBackend>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Backend for SqlBackend {
    type Config = SqlBackendConfig;
    type Status = SqlBackendStatus;

    fn new(id: &str, config: &SqlBackendConfig) -> Result<Self, String> {
        SqlBackend::open(id, config).map_err(|e| format!("sql.{id}: {e}"))
    }

    fn status(&self) -> SqlBackendStatus {
        SqlBackend::status(self)
    }
}

impl SqlBackends {
    pub fn new(configs: &BTreeMap<String, SqlBackendConfig>) -> Result<Self, String> {
        BackendSet::new(configs).map(Self)
    }

    /// Connects once with every credential, as start-up does. A credential
    /// with server-wide privileges (and no `allow-privileged`) is an error
    /// naming them, one line per credential; one that cannot be reached
    /// now is only a warning: it is checked whenever it connects.
    pub async fn verify(&self) -> Result<(), String> {
        let mut refused = Vec::new();
        for (_, backend) in self.iter() {
            for (check, outcome) in backend.connect_each().await {
                match (outcome, check.refusal()) {
                    (_, Some(why)) => refused.push(why),
                    (Ok(()), None) => {}
                    (Err(e), None) => tracing::warn!(
                        "{}: not reachable at start-up ({e}); its privileges are checked when it connects",
                        check.label
                    ),
                }
            }
        }
        if !refused.is_empty() {
            return Err(refused.join("\n"));
        }
        for (id, _) in self.iter().filter(|(_, b)| b.shares_control()) {
            tracing::warn!(
                "sql.{id}: no control-url: the host stops guest statements through the \
                 modules' own credential, whose sessions a guest can end; set control-url \
                 to a role that can stop theirs and that they cannot signal"
            );
        }
        Ok(())
    }

    /// Notices for credentials that several modules share. Sessions of
    /// one database role can signal (`pg_terminate_backend`, `KILL`) and
    /// observe (`pg_stat_activity`, the process list) each other, so such
    /// modules are not isolated from each other by the database.
    /// `uses`: (module, backend id, read-only) for every SQL grant.
    pub fn shared_credentials(&self, uses: &[(String, String, bool)]) -> Vec<String> {
        let mut by_credential: BTreeMap<String, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for (module, id, read_only) in uses {
            let Some(backend) = self.get(id) else {
                continue;
            };
            if let Some(label) = backend.credential_label(*read_only) {
                by_credential.entry(label).or_default().insert(module);
            }
        }
        by_credential
            .into_iter()
            .filter(|(_, modules)| modules.len() > 1)
            .map(|(label, modules)| {
                format!(
                    "{label}: modules {} share one database credential, so each can see and \
                     end the others' sessions; give tenants their own credentials (url / \
                     read-only-url of separate [sql.<id>] backends)",
                    modules.into_iter().collect::<Vec<_>>().join(", ")
                )
            })
            .collect()
    }
}

impl SqlBackend {
    fn open(id: &str, config: &SqlBackendConfig) -> Result<Self, String> {
        let n = config.max_connections.max(1);
        let url = config.url.as_str();
        let allow = config.allow_privileged;
        let label = |which: &str| format!("sql.{id}{which}");
        let control = config.control_url.as_deref();
        let (kind, pools) = if is_postgres(url) {
            let ro = match config.read_only_url.as_deref() {
                Some(u) if is_postgres(u) => Some(pg_credential(
                    label(" (read-only-url)"),
                    (u, control),
                    n,
                    allow,
                )?),
                Some(_) => return Err("read-only-url must be a postgres:// URL like url".into()),
                None => None,
            };
            let rw = pg_credential(label(""), (url, control), n, allow)?;
            (SqlKind::Postgres, Pools::Postgres { rw, ro })
        } else if is_mysql(url) {
            let ro = match config.read_only_url.as_deref() {
                Some(u) if is_mysql(u) => Some(mysql_credential(
                    label(" (read-only-url)"),
                    (u, control),
                    n,
                    allow,
                )?),
                Some(_) => return Err("read-only-url must be a mysql:// URL like url".into()),
                None => None,
            };
            let rw = mysql_credential(label(""), (url, control), n, allow)?;
            (SqlKind::MySql, Pools::MySql { rw, ro })
        } else if url.starts_with("sqlite:") {
            if config.read_only_url.is_some() || control.is_some() {
                return Err(
                    "read-only-url and control-url are for PostgreSQL and MySQL: \
                            SQLite read-only grants already use connections opened read-only, \
                            and its statements are interrupted in-process"
                        .into(),
                );
            }
            sqlite_pools(url, n)?
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
            health: crate::health::gate(id, url),
            read_only_health: config
                .read_only_url
                .as_deref()
                .and_then(|ro| crate::health::replica_gate(id, url, ro)),
        })
    }

    /// The health gate of the server that grants of this access reach.
    pub(crate) fn health(&self, read_only: bool) -> &warden_capability::Health {
        match &self.read_only_health {
            Some(h) if read_only => h,
            _ => &self.health,
        }
    }

    /// The credential that grants of this access connect with (none for
    /// SQLite, which has no sessions to signal).
    fn credential_label(&self, read_only: bool) -> Option<String> {
        let ro_set = match &self.pools {
            Pools::Postgres { ro, .. } => ro.is_some(),
            Pools::MySql { ro, .. } => ro.is_some(),
            Pools::Sqlite { .. } => return None,
        };
        Some(if read_only && ro_set {
            format!("sql.{} (read-only-url)", self.id)
        } else {
            format!("sql.{}", self.id)
        })
    }

    /// Takes one connection per credential (which checks its privileges),
    /// and one of its control pool, within a few seconds.
    async fn connect_each(&self) -> Vec<(&PrivilegeCheck, Result<(), String>)> {
        async fn one<DB: sqlx::Database>(
            c: &Credential<DB>,
        ) -> (&PrivilegeCheck, Result<(), String>) {
            let r = match tokio::time::timeout(START_CHECK, c.pool.acquire()).await {
                Ok(Ok(_conn)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no connection within {START_CHECK:?}")),
            };
            if r.is_ok() && c.separate_control {
                match tokio::time::timeout(START_CHECK, c.control.acquire()).await {
                    Ok(Ok(_conn)) => {}
                    Ok(Err(e)) => tracing::warn!("{}: control-url: {e}", c.check.label),
                    Err(_) => tracing::warn!("{}: control-url: no connection", c.check.label),
                }
            }
            (c.check.as_ref(), r)
        }
        let mut out = Vec::new();
        match &self.pools {
            Pools::Postgres { rw, ro } => {
                out.push(one(rw).await);
                if let Some(ro) = ro {
                    out.push(one(ro).await);
                }
            }
            Pools::MySql { rw, ro } => {
                out.push(one(rw).await);
                if let Some(ro) = ro {
                    out.push(one(ro).await);
                }
            }
            Pools::Sqlite { .. } => {}
        }
        out
    }

    /// Whether its statements are stopped through a module credential.
    fn shares_control(&self) -> bool {
        match &self.pools {
            Pools::Postgres { rw, ro } => {
                !rw.separate_control || ro.as_ref().is_some_and(|c| !c.separate_control)
            }
            Pools::MySql { rw, ro } => {
                !rw.separate_control || ro.as_ref().is_some_and(|c| !c.separate_control)
            }
            Pools::Sqlite { .. } => false,
        }
    }

    /// The privilege checks of this backend's credentials.
    pub(crate) fn checks(&self) -> Vec<&PrivilegeCheck> {
        match &self.pools {
            Pools::Postgres { rw, ro } => std::iter::once(rw.check.as_ref())
                .chain(ro.iter().map(|c| c.check.as_ref()))
                .collect(),
            Pools::MySql { rw, ro } => std::iter::once(rw.check.as_ref())
                .chain(ro.iter().map(|c| c.check.as_ref()))
                .collect(),
            Pools::Sqlite { .. } => vec![],
        }
    }

    pub fn status(&self) -> SqlBackendStatus {
        let (size, idle) = self.pool_sizes();
        let checks = self.checks();
        SqlBackendStatus {
            id: self.id.clone(),
            kind: self.kind,
            size,
            idle,
            in_use: size.saturating_sub(idle),
            waits: self.waits.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            privileged: checks.iter().flat_map(|c| c.privileged()).collect(),
            refused: checks.iter().find_map(|c| c.refusal()),
        }
    }

    /// Connections open and idle in the shared pools (not the control
    /// pools): cheap, called on every acquisition.
    pub(crate) fn pool_sizes(&self) -> (u32, u32) {
        fn add<DB: sqlx::Database>((size, idle): (u32, u32), p: &Pool<DB>) -> (u32, u32) {
            (size + p.size(), idle + p.num_idle() as u32)
        }
        match &self.pools {
            Pools::Postgres { rw, ro } => ro
                .iter()
                .fold(add((0, 0), &rw.pool), |n, c| add(n, &c.pool)),
            Pools::MySql { rw, ro } => ro
                .iter()
                .fold(add((0, 0), &rw.pool), |n, c| add(n, &c.pool)),
            Pools::Sqlite { rw, ro } => add(add((0, 0), rw), ro),
        }
    }

    pub(crate) fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn is_mysql(url: &str) -> bool {
    url.starts_with("mysql://") || url.starts_with("mariadb://")
}

fn pg_credential(
    label: String,
    (url, control_url): (&str, Option<&str>),
    n: u32,
    allow: bool,
) -> Result<Credential<Postgres>, String> {
    let parse = |url: &str| {
        PgConnectOptions::from_str(url)
            .map(|o| o.options([("client_connection_check_interval", CLIENT_CHECK_INTERVAL_MS)]))
            .map_err(|e| format!("invalid url: {e}"))
    };
    let options = parse(url)?;
    let check = Arc::new(PrivilegeCheck::new(label, allow));
    let pool = |size: u32| {
        let check = check.clone();
        PgPoolOptions::new()
            .max_connections(size)
            .test_before_acquire(false)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                let check = check.clone();
                Box::pin(async move {
                    match privileges::postgres(conn).await {
                        Ok(found) => check.admit(found),
                        Err(e @ sqlx::Error::Database(_)) => check.unreadable(e),
                        Err(e) => Err(e),
                    }
                })
            })
            .connect_lazy_with(options.clone())
    };
    let control = match control_url {
        // The host's own role: checked by what it can stop, not for privileges.
        Some(u) => control_pool::<Postgres>().connect_lazy_with(parse(u)?),
        None => pool(CONTROL_CONNECTIONS),
    };
    Ok(Credential {
        pool: pool(n),
        control,
        separate_control: control_url.is_some(),
        restore: Arc::from(""),
        check,
    })
}

/// A control pool: small, and it checks each connection before use (a
/// control session must be alive when a statement has to be stopped).
fn control_pool<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(CONTROL_CONNECTIONS)
        .test_before_acquire(true)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

fn mysql_credential(
    label: String,
    (url, control_url): (&str, Option<&str>),
    n: u32,
    allow: bool,
) -> Result<Credential<MySql>, String> {
    let parse = |url: &str| {
        MySqlConnectOptions::from_str(&url.replacen("mariadb://", "mysql://", 1))
            .map_err(|e| format!("invalid url: {e}"))
    };
    let options = parse(url)?;
    let check = Arc::new(PrivilegeCheck::new(label, allow));
    let pool = |size: u32| {
        let check = check.clone();
        MySqlPoolOptions::new()
            .max_connections(size)
            .test_before_acquire(false)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                let check = check.clone();
                Box::pin(async move {
                    match privileges::mysql(conn).await {
                        Ok(found) => check.admit(found),
                        Err(e @ sqlx::Error::Database(_)) => check.unreadable(e),
                        Err(e) => Err(e),
                    }
                })
            })
            .connect_lazy_with(options.clone())
    };
    let control = match control_url {
        Some(u) => control_pool::<MySql>().connect_lazy_with(parse(u)?),
        None => pool(CONTROL_CONNECTIONS),
    };
    let database = options
        .get_database()
        .map(|d| format!("USE `{}`; ", d.replace('`', "``")))
        .unwrap_or_default();
    let restore = format!("SET ROLE NONE; {database}{}", crate::mysql::SESSION);
    Ok(Credential {
        pool: pool(n),
        control,
        separate_control: control_url.is_some(),
        restore: Arc::from(restore),
        check,
    })
}

fn sqlite_pools(url: &str, n: u32) -> Result<(SqlKind, Pools), String> {
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
            .after_connect(|conn, _| Box::pin(async move { crate::sqlite::harden(conn).await }))
            .connect_lazy_with(opts)
    };
    Ok((
        SqlKind::Sqlite,
        Pools::Sqlite {
            rw: pool(rw_opts),
            ro: pool(ro_opts),
        },
    ))
}
