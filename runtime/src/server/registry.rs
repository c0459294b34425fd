//! The registry: module versions (content-addressed components, stored
//! once), their manifests, each module's state and active version, and the
//! audit log. SQLite by default, PostgreSQL for many nodes; the same queries
//! run on both through sqlx's `Any` driver.

use std::borrow::Cow;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row, SqlSafeStr};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// A per-token storage quota would be exceeded.
    #[error("{0}")]
    Quota(String),
}

/// The token storing a version, and its storage quota in bytes.
pub struct Uploader<'a> {
    pub token: &'a str,
    pub quota: Option<u64>,
}

impl From<sqlx::Error> for RegistryError {
    fn from(e: sqlx::Error) -> Self {
        RegistryError::Unavailable(e.to_string())
    }
}

type Result<T> = std::result::Result<T, RegistryError>;

/// Where a module is in its life (README, "Serving modules").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleState {
    Uploaded,
    Active,
    Paused,
    Stopped,
    Failed,
}

impl ModuleState {
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleState::Uploaded => "uploaded",
            ModuleState::Active => "active",
            ModuleState::Paused => "paused",
            ModuleState::Stopped => "stopped",
            ModuleState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "uploaded" => ModuleState::Uploaded,
            "active" => ModuleState::Active,
            "paused" => ModuleState::Paused,
            "stopped" => ModuleState::Stopped,
            "failed" => ModuleState::Failed,
            other => {
                return Err(RegistryError::Unavailable(format!(
                    "registry holds an unknown module state {other:?}"
                )));
            }
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModuleRecord {
    pub name: String,
    pub state: ModuleState,
    pub active_version: Option<String>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionRecord {
    pub module: String,
    pub version: String,
    pub sha256: String,
    #[serde(skip)]
    pub manifest: String,
    pub uploaded_at: i64,
    /// The token that uploaded it, if one did.
    #[serde(skip)]
    pub uploaded_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub module: String,
    pub version: Option<String>,
    pub kind: String,
    pub rule: String,
    pub detail: String,
}

/// What a new audit row says.
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub module: String,
    pub version: Option<String>,
    pub kind: String,
    pub rule: String,
    pub detail: String,
}

#[derive(Clone)]
pub struct Registry {
    pool: AnyPool,
    /// Set for a PostgreSQL registry: nodes hear about changes through NOTIFY.
    postgres_url: Option<String>,
}

/// The channel nodes LISTEN on; the payload is the module name.
pub const CHANGES_CHANNEL: &str = "warden_registry";

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn migrator(postgres: bool) -> Migrator {
    let steps: [(&str, &str); 2] = if postgres {
        [
            (
                "registry",
                include_str!("../../migrations/postgres/0001_registry.sql"),
            ),
            (
                "routes and owners",
                include_str!("../../migrations/postgres/0002_routes_and_owners.sql"),
            ),
        ]
    } else {
        [
            (
                "registry",
                include_str!("../../migrations/sqlite/0001_registry.sql"),
            ),
            (
                "routes and owners",
                include_str!("../../migrations/sqlite/0002_routes_and_owners.sql"),
            ),
        ]
    };
    Migrator::with_migrations(
        steps
            .into_iter()
            .zip(1..)
            .map(|((name, sql), version)| {
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

impl Registry {
    /// `registry` is `"sqlite"` (a file in the data dir) or a `postgres://` URL.
    pub async fn open(registry: &str, data_dir: &Path) -> Result<Self> {
        install_default_drivers();
        let (url, postgres) = if registry == "sqlite" {
            let file = data_dir.join("registry.db");
            (format!("sqlite://{}?mode=rwc", file.display()), false)
        } else if registry.starts_with("postgres://") || registry.starts_with("postgresql://") {
            (registry.to_string(), true)
        } else {
            return Err(RegistryError::Unavailable(format!(
                "server.registry must be \"sqlite\" or a postgres:// URL, not {registry:?}"
            )));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if postgres { 8 } else { 1 })
            .connect(&url)
            .await
            .map_err(|e| RegistryError::Unavailable(format!("cannot open {url}: {e}")))?;
        migrator(postgres)
            .run(&pool)
            .await
            .map_err(|e| RegistryError::Unavailable(format!("migrating the registry: {e}")))?;
        Ok(Self {
            pool,
            postgres_url: postgres.then_some(url),
        })
    }

    pub fn postgres_url(&self) -> Option<&str> {
        self.postgres_url.as_deref()
    }

    /// Tells the other nodes (PostgreSQL only) that `module` changed.
    async fn notify(&self, module: &str) -> Result<()> {
        if self.postgres_url.is_some() {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGES_CHANNEL)
                .bind(module)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Stores a version (and its component, once per sha256). The same
    /// version uploaded again with the same bytes and manifest is a no-op;
    /// with different ones it is a conflict: versions are immutable.
    pub async fn put_version(
        &self,
        module: &str,
        version: &str,
        sha256: &str,
        manifest: &str,
        bytes: &[u8],
        uploader: Option<&Uploader<'_>>,
    ) -> Result<bool> {
        // A version costs its component and its manifest.
        let size = (bytes.len() + manifest.len()) as u64;
        let mut tx = self.pool.begin().await?;
        if let Some(row) =
            sqlx::query("SELECT sha256, manifest FROM versions WHERE module = $1 AND version = $2")
                .bind(module)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?
        {
            let (old_sha, old_manifest): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            if old_sha == sha256 && old_manifest == manifest {
                return Ok(false);
            }
            return Err(RegistryError::Conflict(format!(
                "{module} {version} is already stored with a different component or manifest; versions are immutable, bump [module] version"
            )));
        }
        if let Some(u) = uploader
            && let Some(quota) = u.quota
        {
            // Two uploads of one token at once must not both fit under the
            // quota: PostgreSQL's READ COMMITTED would let each see the sum
            // without the other (SQLite's one connection serializes them).
            if self.postgres_url.is_some() {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(format!("warden-quota:{}", u.token))
                    .execute(&mut *tx)
                    .await?;
            }
            let used = stored_by(&mut *tx, u.token).await?;
            if used + size > quota {
                return Err(RegistryError::Quota(quota_message(
                    u.token, used, quota, size,
                )));
            }
        }
        let now = now_ms();
        sqlx::query(
            "INSERT INTO blobs (sha256, bytes) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(sha256)
        .bind(bytes)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO modules (name, state, active_version, updated_at) VALUES ($1, 'uploaded', NULL, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(module)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO versions (module, version, sha256, manifest, uploaded_at, uploaded_by, size) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(module)
        .bind(version)
        .bind(sha256)
        .bind(manifest)
        .bind(now)
        .bind(uploader.map(|u| u.token))
        .bind(size as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn modules(&self) -> Result<Vec<ModuleRecord>> {
        let rows = sqlx::query(
            "SELECT name, state, active_version, updated_at FROM modules ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(module_record).collect()
    }

    pub async fn module(&self, name: &str) -> Result<ModuleRecord> {
        let row = sqlx::query(
            "SELECT name, state, active_version, updated_at FROM modules WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| RegistryError::NotFound(format!("no module named {name:?}")))?;
        module_record(&row)
    }

    pub async fn versions(&self, name: &str) -> Result<Vec<VersionRecord>> {
        let rows = sqlx::query(
            "SELECT module, version, sha256, manifest, uploaded_at, uploaded_by FROM versions WHERE module = $1 ORDER BY uploaded_at, version",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_record).collect()
    }

    pub async fn version(&self, name: &str, version: &str) -> Result<VersionRecord> {
        let row = sqlx::query(
            "SELECT module, version, sha256, manifest, uploaded_at, uploaded_by FROM versions WHERE module = $1 AND version = $2",
        )
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| RegistryError::NotFound(format!("{name} has no version {version:?}")))?;
        version_record(&row)
    }

    pub async fn blob(&self, sha256: &str) -> Result<Vec<u8>> {
        let row = sqlx::query("SELECT bytes FROM blobs WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("no component {sha256}")))?;
        Ok(row.try_get(0)?)
    }

    /// Sets state and, when given, the active version.
    pub async fn set_state(
        &self,
        name: &str,
        state: ModuleState,
        active_version: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done = match active_version {
            Some(v) => sqlx::query(
                "UPDATE modules SET state = $1, active_version = $2, updated_at = $3 WHERE name = $4",
            )
            .bind(state.as_str())
            .bind(v)
            .bind(now_ms())
            .bind(name),
            None => sqlx::query("UPDATE modules SET state = $1, updated_at = $2 WHERE name = $3")
                .bind(state.as_str())
                .bind(now_ms())
                .bind(name),
        }
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(RegistryError::NotFound(format!("no module named {name:?}")));
        }
        // A stopped module gives its route up in the same transaction.
        if state == ModuleState::Stopped {
            sqlx::query("DELETE FROM routes WHERE module = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.notify(name).await
    }

    /// Makes `version` active and claims `route` for `name` in one
    /// transaction, so concurrent activations (on any node) cannot both own
    /// a route. A route nested under another module's (or holding another
    /// module's under it) is refused unless `allow_nested`.
    pub async fn activate(
        &self,
        name: &str,
        version: &str,
        route: Option<&str>,
        allow_nested: bool,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if self.postgres_url.is_some() {
            // Nesting is a check across rows: one claimer at a time.
            sqlx::query("LOCK TABLE routes IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM routes WHERE module = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if let Some(route) = route {
            let others = sqlx::query("SELECT route, module FROM routes")
                .fetch_all(&mut *tx)
                .await?;
            for row in &others {
                let (theirs, owner): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                if let Some(problem) = route_clash(route, &theirs, &owner, allow_nested) {
                    return Err(RegistryError::Conflict(problem));
                }
            }
            sqlx::query("INSERT INTO routes (route, module) VALUES ($1, $2)")
                .bind(route)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(d) if d.is_unique_violation() => RegistryError::Conflict(
                        format!("route {route} was just claimed by another module"),
                    ),
                    _ => e.into(),
                })?;
        }
        let done = sqlx::query(
            "UPDATE modules SET state = 'active', active_version = $1, updated_at = $2 WHERE name = $3",
        )
        .bind(version)
        .bind(now_ms())
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(RegistryError::NotFound(format!("no module named {name:?}")));
        }
        tx.commit().await?;
        self.notify(name).await
    }

    /// Records the route of a module that was active before routes were
    /// claimed in the registry; an existing claim is left alone.
    pub async fn adopt_route(&self, name: &str, route: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO routes (route, module) VALUES ($1, $2) ON CONFLICT (route) DO NOTHING",
        )
        .bind(route)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The module owning each claimed route.
    pub async fn routes(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT route, module FROM routes ORDER BY route")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Storage used by the versions a token uploaded, in bytes.
    pub async fn stored_by(&self, token: &str) -> Result<u64> {
        stored_by(&self.pool, token).await
    }

    /// Removes a module and its versions; components no other version uses go too.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM routes WHERE module = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM versions WHERE module = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM modules WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(RegistryError::NotFound(format!("no module named {name:?}")));
        }
        sqlx::query("DELETE FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM versions)")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.notify(name).await
    }

    pub async fn record_audit(&self, e: &NewAudit) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit (at, module, version, kind, rule, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(now_ms())
        .bind(&e.module)
        .bind(e.version.as_deref())
        .bind(&e.kind)
        .bind(&e.rule)
        .bind(&e.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Newest last; at most `limit` rows.
    pub async fn audit(
        &self,
        module: Option<&str>,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT id, at, module, version, kind, rule, detail FROM audit
             WHERE ($1 IS NULL OR module = $1) AND at >= $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(module)
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(AuditRecord {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    module: r.try_get(2)?,
                    version: r.try_get(3)?,
                    kind: r.try_get(4)?,
                    rule: r.try_get(5)?,
                    detail: r.try_get(6)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        out.reverse();
        Ok(out)
    }
}

fn module_record(row: &sqlx::any::AnyRow) -> Result<ModuleRecord> {
    let state: String = row.try_get(1)?;
    Ok(ModuleRecord {
        name: row.try_get(0)?,
        state: ModuleState::parse(&state)?,
        active_version: row.try_get(2)?,
        updated_at: row.try_get(3)?,
    })
}

fn version_record(row: &sqlx::any::AnyRow) -> Result<VersionRecord> {
    Ok(VersionRecord {
        module: row.try_get(0)?,
        version: row.try_get(1)?,
        sha256: row.try_get(2)?,
        manifest: row.try_get(3)?,
        uploaded_at: row.try_get(4)?,
        uploaded_by: row.try_get(5)?,
    })
}

/// The refusal of an upload that would take `token` over its quota.
pub fn quota_message(token: &str, used: u64, quota: u64, needed: u64) -> String {
    use warden_capability::ByteSize;
    format!(
        "token {token:?} has stored {} of its {} storage quota; this version needs {} more (delete old versions or modules)",
        ByteSize(used),
        ByteSize(quota),
        ByteSize(needed)
    )
}

/// Bytes of the versions `token` uploaded, read through `db` (the pool or
/// the upload's own transaction).
async fn stored_by<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    token: &str,
) -> Result<u64> {
    let used: i64 = sqlx::query(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM versions WHERE uploaded_by = $1",
    )
    .bind(token)
    .fetch_one(db)
    .await?
    .try_get(0)?;
    Ok(used.max(0) as u64)
}

/// Why `route` cannot be claimed beside `theirs` (owned by `owner`), if it cannot.
fn route_clash(route: &str, theirs: &str, owner: &str, allow_nested: bool) -> Option<String> {
    if route == theirs {
        return Some(format!("route {route} is already served by module {owner}"));
    }
    if allow_nested {
        return None;
    }
    let under = |inner: &str, outer: &str| {
        outer == "/"
            || (inner.starts_with(outer) && inner.as_bytes().get(outer.len()) == Some(&b'/'))
    };
    if under(route, theirs) {
        Some(format!(
            "route {route} is nested under {theirs} of module {owner}; the server does not allow nested routes (server.allow-nested-routes)"
        ))
    } else if under(theirs, route) {
        Some(format!(
            "route {route} would take in {theirs} of module {owner}; the server does not allow nested routes (server.allow-nested-routes)"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::route_clash;

    #[test]
    fn routes_clash_when_equal_and_nested_unless_allowed() {
        assert!(route_clash("/a", "/a", "m", true).is_some());
        assert!(
            route_clash("/hello/admin", "/hello", "m", false)
                .unwrap()
                .contains("nested under")
        );
        assert!(
            route_clash("/hello", "/hello/admin", "m", false)
                .unwrap()
                .contains("take in")
        );
        assert!(route_clash("/x", "/", "m", false).is_some());
        assert!(route_clash("/hello/admin", "/hello", "m", true).is_none());
        assert!(route_clash("/helloworld", "/hello", "m", false).is_none());
        assert!(route_clash("/b", "/a", "m", false).is_none());
    }
}
