//! One pooled connection running guest statements inside host-controlled
//! transactions. Every guest call is wrapped: read-only grants in a
//! read-only transaction the database enforces, all grants under the
//! statement timeout the database enforces.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::{Column, Executor, MySql, Postgres, Row, Sqlite, Statement};
use warden_capability::CapabilityError;

use tokio::sync::OwnedSemaphorePermit;

use crate::error::from_sqlx;
use crate::health::SLOW_ACQUIRE;
use crate::lease::{Control, Lease};
use crate::pool::{Credential, Pools, SqlBackend};
use crate::value::{RowSet, SqlValue};

/// Bytes a PostgreSQL message may have beyond the guest's remaining output:
/// the row framing (4 bytes a column, at most 1,664 columns) and room for a
/// server error.
const MESSAGE_SLACK: u64 = 64 * 1024;

/// What one grant allows a statement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub read_only: bool,
    /// The grant's `statement-timeout`.
    pub timeout: Duration,
    /// When this call must be done: the statement timeout from now, or the
    /// end of the module's own `timeout`, whichever comes first.
    pub deadline: Instant,
    /// Which of the two `deadline` is.
    pub limit: (&'static str, Duration),
    pub max_rows: u32,
    /// Result bytes still allowed in this invocation.
    pub max_bytes: u64,
}

impl Caps {
    /// The database's own timeout for a statement: the time left, at least 1 ms.
    fn millis_left(&self) -> u128 {
        self.deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .max(1)
    }
}

pub(crate) enum Conn {
    Postgres(PoolConnection<Postgres>),
    /// With the statements that put a reset session back as the host
    /// opened it (see `Credential::restore`).
    MySql(PoolConnection<MySql>, Arc<str>),
    Sqlite(PoolConnection<Sqlite>),
}

impl SqlBackend {
    /// A connection of the credential for this access, and where its
    /// statements can be cancelled from.
    async fn acquire(&self, read_only: bool) -> Result<(Conn, Control), CapabilityError> {
        let (size, idle) = self.pool_sizes();
        if idle == 0 && size > 0 {
            self.waits.fetch_add(1, Ordering::Relaxed);
        }
        fn pick<'a, DB: sqlx::Database>(
            rw: &'a Credential<DB>,
            ro: &'a Option<Credential<DB>>,
            read_only: bool,
        ) -> &'a Credential<DB> {
            match ro {
                Some(ro) if read_only => ro,
                _ => rw,
            }
        }
        let (conn, check) = match &self.pools {
            Pools::Postgres { rw, ro } => {
                let c = pick(rw, ro, read_only);
                if let Some(m) = c.check.recent_refusal() {
                    return Err(self.refused(m));
                }
                let control = Control::Postgres(c.control.clone());
                (
                    c.pool.acquire().await.map(|x| (Conn::Postgres(x), control)),
                    Some(c.check.clone()),
                )
            }
            Pools::MySql { rw, ro } => {
                let c = pick(rw, ro, read_only);
                if let Some(m) = c.check.recent_refusal() {
                    return Err(self.refused(m));
                }
                let control = Control::MySql(c.control.clone());
                (
                    c.pool
                        .acquire()
                        .await
                        .map(|x| (Conn::MySql(x, c.restore.clone()), control)),
                    Some(c.check.clone()),
                )
            }
            Pools::Sqlite { rw, ro } => (
                if read_only { ro } else { rw }
                    .acquire()
                    .await
                    .map(|x| (Conn::Sqlite(x), Control::Sqlite)),
                None,
            ),
        };
        conn.map_err(|e| {
            self.record_error();
            if let Some(m) = check.and_then(|c| c.recent_refusal()) {
                return self.refused(m);
            }
            match from_sqlx(e) {
                CapabilityError::Backend(m) => {
                    CapabilityError::Unavailable(format!("sql backend {}: {m}", self.id))
                }
                other => other,
            }
        })
    }

    fn refused(&self, msg: String) -> CapabilityError {
        self.record_error();
        CapabilityError::Unavailable(format!("the host refuses this credential: {msg}"))
    }
}

impl SqlBackend {
    /// A connection already inside the wrapping transaction, holding `slot`.
    /// A connection the server closed while it sat idle in the pool fails at
    /// BEGIN, before any guest SQL, so it is dropped and another one taken:
    /// at most one per pooled connection, then a fresh one.
    pub(crate) async fn acquire_begun(
        &self,
        caps: &Caps,
        slot: OwnedSemaphorePermit,
    ) -> Result<Lease, CapabilityError> {
        let mut attempts = self.max_connections + 1;
        let deadline = caps.deadline.into();
        loop {
            let (mut conn, control) = self.acquire_watched(caps).await?;
            match tokio::time::timeout_at(deadline, conn.begin(caps)).await {
                Ok(Ok(session)) => {
                    return Ok(Lease::new(
                        conn,
                        session,
                        control,
                        caps.read_only,
                        caps.timeout,
                        slot,
                    ));
                }
                Ok(Err(e)) => {
                    conn.discard();
                    attempts -= 1;
                    if attempts == 0 {
                        self.record_error();
                        return Err(e);
                    }
                    tracing::debug!(backend = %self.id, "replacing a pooled connection: {e}");
                }
                Err(_elapsed) => {
                    conn.discard();
                    self.record_error();
                    return Err(CapabilityError::Timeout(format!(
                        "{}: no answer from database {} to BEGIN within {:?}",
                        caps.limit.0, self.id, caps.limit.1
                    )));
                }
            }
        }
    }
}

impl SqlBackend {
    /// [`SqlBackend::acquire`] under the call's deadline. One that fails, or
    /// takes longer than [`SLOW_ACQUIRE`], checks whether the server is
    /// there at all: if its port is closed, the call (and the next ones,
    /// see `warden_capability::Health`) fails now with `unavailable` instead of
    /// waiting out sqlx's reconnect loop.
    async fn acquire_watched(&self, caps: &Caps) -> Result<(Conn, Control), CapabilityError> {
        let deadline = caps.deadline.into();
        let acquire = tokio::time::timeout_at(deadline, self.acquire(caps.read_only));
        tokio::pin!(acquire);
        let acquired = tokio::select! {
            r = &mut acquire => r,
            () = tokio::time::sleep(SLOW_ACQUIRE) => {
                if let Some(down) = self.health(caps.read_only).after_trouble_until(caps.deadline).await {
                    self.record_error();
                    return Err(down);
                }
                acquire.await
            }
        };
        match acquired {
            Ok(Ok(got)) => {
                self.health(caps.read_only).recovered();
                Ok(got)
            }
            Ok(Err(e)) => match self
                .health(caps.read_only)
                .after_trouble_until(caps.deadline)
                .await
            {
                Some(down) => Err(down),
                None => Err(e),
            },
            Err(_) => {
                self.record_error();
                if let Some(down) = self
                    .health(caps.read_only)
                    .after_trouble_until(caps.deadline)
                    .await
                {
                    return Err(down);
                }
                Err(CapabilityError::Unavailable(format!(
                    "sql backend {}: no connection within {:?} (its {}): its pool is exhausted",
                    self.id, caps.limit.1, caps.limit.0
                )))
            }
        }
    }
}

impl Conn {
    /// Starts the wrapping transaction in one round trip and returns the
    /// server's id of the session (0 for SQLite), for cancelling it later.
    /// The database's own statement timeout is set too, but only as a first
    /// line: a guest can lift it, so the host's deadline is what holds.
    async fn begin(&mut self, caps: &Caps) -> Result<i64, CapabilityError> {
        let ms = caps.millis_left();
        match self {
            Conn::Postgres(c) => {
                // No message from the server may be larger than what the guest
                // may still receive (plus the row framing): refused before the
                // driver buffers it.
                let max = caps.max_bytes.saturating_add(MESSAGE_SLACK);
                c.set_max_message_len(Some(usize::try_from(max).unwrap_or(usize::MAX)));
                // The SELECT takes the snapshot: after it, `SET TRANSACTION
                // READ WRITE` is refused by PostgreSQL itself.
                let begin = if caps.read_only {
                    "BEGIN READ ONLY"
                } else {
                    "BEGIN"
                };
                let sql = format!(
                    "{begin}; SET LOCAL statement_timeout = {ms}; SELECT pg_backend_pid()::int8"
                );
                last_id(
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&mut **c)
                        .await,
                )
            }
            Conn::MySql(c, restore) => {
                // The session read-only flag too: DDL implicitly commits, and
                // the statement then runs in a new transaction that must still
                // be read-only.
                let start = if caps.read_only {
                    "SET SESSION TRANSACTION READ ONLY; START TRANSACTION READ ONLY"
                } else {
                    "START TRANSACTION"
                };
                let secs = Duration::from_millis(ms as u64).as_secs_f64();
                let session = &**restore;
                let mariadb = format!(
                    "{session}; SET SESSION max_statement_time = {secs:.3}; {start}; \
                     SELECT CAST(CONNECTION_ID() AS SIGNED)"
                );
                match sqlx::raw_sql(sqlx::AssertSqlSafe(mariadb))
                    .fetch_all(&mut **c)
                    .await
                {
                    Ok(rows) => last_id(Ok(rows)),
                    // MySQL: the same limit under its own name (SELECT only).
                    Err(_) => {
                        let mysql = format!(
                            "{session}; SET SESSION max_execution_time = {ms}; {start}; \
                             SELECT CAST(CONNECTION_ID() AS SIGNED)"
                        );
                        last_id(
                            sqlx::raw_sql(sqlx::AssertSqlSafe(mysql))
                                .fetch_all(&mut **c)
                                .await,
                        )
                    }
                }
            }
            Conn::Sqlite(c) => {
                crate::sqlite::set_deadline(c, Some(caps.deadline))
                    .await
                    .map_err(from_sqlx)?;
                sqlx::raw_sql("BEGIN")
                    .execute(&mut **c)
                    .await
                    .map_err(from_sqlx)?;
                Ok(0)
            }
        }
    }

    /// Before each statement: SQLite interrupts itself at `deadline` (the
    /// other databases are cancelled by the host from outside).
    pub(crate) async fn arm(&mut self, deadline: Instant) -> Result<(), CapabilityError> {
        match self {
            Conn::Sqlite(c) => crate::sqlite::set_deadline(c, Some(deadline))
                .await
                .map_err(from_sqlx),
            _ => Ok(()),
        }
    }

    /// Ends the wrapping transaction so the pooled connection is clean for
    /// the next module: PostgreSQL rolls back read-only transactions (which
    /// reverts their SETs) and releases session advisory locks; read-write
    /// ones also reset settings, role, temp tables, cursors and listens.
    /// MySQL/MariaDB sessions are reset by the server (`COM_RESET_CONNECTION`:
    /// variables, temporary tables, locks, prepared statements). A
    /// connection that could not be cleaned is closed.
    pub(crate) async fn end(
        &mut self,
        commit: bool,
        read_only: bool,
    ) -> Result<(), CapabilityError> {
        let sql = if commit { "COMMIT" } else { "ROLLBACK" };
        let result = match self {
            Conn::Postgres(c) => crate::postgres::end(c, commit, read_only).await,
            Conn::MySql(c, _) => crate::mysql::end(c, commit).await,
            Conn::Sqlite(c) => {
                let r = sqlx::raw_sql(sql).execute(&mut **c).await.map(|_| ());
                let _ = crate::sqlite::set_deadline(c, None).await;
                r
            }
        };
        if result.is_err() {
            self.close_on_drop();
        }
        result.map_err(from_sqlx)
    }

    /// After a guest statement inside a read-only transaction: is the
    /// connection still in it? A guest `COMMIT` would leave the rest of its
    /// statements outside the read-only transaction, so the caller stops there.
    pub(crate) async fn still_read_only(&mut self) -> Result<bool, CapabilityError> {
        match self {
            Conn::Postgres(c) => {
                let (v,): (String,) =
                    sqlx::query_as("SELECT current_setting('transaction_read_only')")
                        .fetch_one(&mut **c)
                        .await
                        .map_err(from_sqlx)?;
                Ok(v == "on")
            }
            Conn::MySql(c, _) => {
                // Still in our transaction, and the session still read-only
                // (a guest could flip it for the transactions after the next
                // implicit commit).
                let mariadb = sqlx::query_as::<_, (i64, i64)>(
                    "SELECT CAST(@@in_transaction AS SIGNED), CAST(@@tx_read_only AS SIGNED)",
                )
                .fetch_one(&mut **c)
                .await;
                match mariadb {
                    Ok((in_tx, ro)) => Ok(in_tx == 1 && ro == 1),
                    // MySQL 8: no @@in_transaction; the session flag is what it reports.
                    Err(_) => sqlx::query_scalar::<_, i64>(
                        "SELECT CAST(@@transaction_read_only AS SIGNED)",
                    )
                    .fetch_one(&mut **c)
                    .await
                    .map(|v| v == 1)
                    .map_err(from_sqlx),
                }
            }
            // Read-only grants use connections SQLite opened read-only.
            Conn::Sqlite(_) => Ok(true),
        }
    }

    /// Makes sure this connection is closed rather than reused (after a
    /// host-side timeout left it in an unknown state).
    pub(crate) fn discard(mut self) {
        self.close_on_drop();
    }

    fn close_on_drop(&mut self) {
        match self {
            Conn::Postgres(c) => c.close_on_drop(),
            Conn::MySql(c, _) => c.close_on_drop(),
            Conn::Sqlite(c) => c.close_on_drop(),
        }
    }

    pub(crate) async fn query(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        caps: &Caps,
    ) -> Result<RowSet, CapabilityError> {
        macro_rules! run {
            ($c:expr, $db:ident) => {{
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for p in params {
                    q = crate::$db::bind(q, p).map_err(CapabilityError::Invalid)?;
                }
                let mut out = RowSet::default();
                let mut bytes = 0u64;
                {
                    let mut rows = q.fetch(&mut **$c);
                    while let Some(row) = rows.try_next().await.map_err(from_sqlx)? {
                        if out.rows.len() as u64 >= u64::from(caps.max_rows) {
                            return Err(CapabilityError::LimitExceeded(format!(
                                "max-rows: the query returned more than {} rows",
                                caps.max_rows
                            )));
                        }
                        if out.columns.is_empty() {
                            out.columns =
                                row.columns().iter().map(|c| c.name().to_string()).collect();
                        }
                        let mut values = Vec::with_capacity(row.len());
                        for i in 0..row.len() {
                            // Measured as received, before it is copied, where
                            // the driver lets us: a value over the cap is
                            // refused, not decoded.
                            let raw = crate::$db::raw_size(&row, i);
                            bytes += raw.unwrap_or(0);
                            let v = (bytes <= caps.max_bytes)
                                .then(|| crate::$db::decode(&row, i).map_err(from_sqlx))
                                .transpose()?;
                            if let (Some(v), None) = (&v, raw) {
                                bytes += v.size();
                            }
                            match v {
                                Some(v) if bytes <= caps.max_bytes => values.push(v),
                                _ => {
                                    return Err(CapabilityError::LimitExceeded(format!(
                                        "max-output: the result is larger than the {} bytes left",
                                        caps.max_bytes
                                    )));
                                }
                            }
                        }
                        out.rows.push(values);
                    }
                }
                if out.rows.is_empty() {
                    let stmt = (&mut **$c)
                        .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql)))
                        .await
                        .map_err(from_sqlx)?;
                    out.columns = stmt
                        .columns()
                        .iter()
                        .map(|c| c.name().to_string())
                        .collect();
                }
                Ok(out)
            }};
        }
        match self {
            Conn::Postgres(c) => run!(c, postgres),
            Conn::MySql(c, _) => run!(c, mysql),
            Conn::Sqlite(c) => run!(c, sqlite),
        }
    }

    pub(crate) async fn execute(
        &mut self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<u64, CapabilityError> {
        macro_rules! run {
            ($c:expr, $db:ident) => {{
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for p in params {
                    q = crate::$db::bind(q, p).map_err(CapabilityError::Invalid)?;
                }
                q.execute(&mut **$c)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(from_sqlx)
            }};
        }
        match self {
            Conn::Postgres(c) => run!(c, postgres),
            Conn::MySql(c, _) => run!(c, mysql),
            Conn::Sqlite(c) => run!(c, sqlite),
        }
    }

    /// Runs `sql` once per parameter row; the first failure stops the rest.
    pub(crate) async fn execute_all(
        &mut self,
        sql: &str,
        rows: &[Vec<SqlValue>],
    ) -> Result<u64, CapabilityError> {
        let mut total = 0;
        for params in rows {
            total += self.execute(sql, params).await?;
        }
        Ok(total)
    }

    /// Asks the database to parse and plan `sql` without running it.
    pub(crate) async fn check(&mut self, sql: &str) -> Result<(), CapabilityError> {
        match self {
            Conn::Postgres(c) => (&mut **c)
                .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql)))
                .await
                .map(drop),
            Conn::MySql(c, _) => (&mut **c)
                .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql)))
                .await
                .map(drop),
            Conn::Sqlite(c) => (&mut **c)
                .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql)))
                .await
                .map(drop),
        }
        .map_err(from_sqlx)
    }
}

/// The single integer of the last row of a multi-statement batch.
fn last_id<R: Row>(rows: Result<Vec<R>, sqlx::Error>) -> Result<i64, CapabilityError>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let rows = rows.map_err(from_sqlx)?;
    let row = rows
        .last()
        .ok_or_else(|| CapabilityError::Backend("BEGIN returned no session id".into()))?;
    row.try_get::<i64, _>(0usize).map_err(from_sqlx)
}
