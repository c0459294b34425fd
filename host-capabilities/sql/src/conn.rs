//! One pooled connection running guest statements inside host-controlled
//! transactions. Every guest call is wrapped: read-only grants in a
//! read-only transaction the database enforces, all grants under the
//! statement timeout the database enforces.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::{Column, Executor, MySql, Postgres, Row, Sqlite, Statement};
use warden_capability::CapabilityError;

use crate::error::from_sqlx;
use crate::pool::{Pools, SqlBackend};
use crate::value::{RowSet, SqlValue};

/// Time allowed beyond `statement-timeout` before the host gives up on the
/// database and discards the connection.
pub(crate) const HOST_TIMEOUT_SLACK: Duration = Duration::from_secs(1);

/// What one grant allows a statement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub read_only: bool,
    pub timeout: Duration,
    pub max_rows: u32,
    /// Result bytes still allowed in this invocation.
    pub max_bytes: u64,
}

pub(crate) enum Conn {
    Postgres(PoolConnection<Postgres>),
    MySql(PoolConnection<MySql>),
    Sqlite(PoolConnection<Sqlite>),
}

impl SqlBackend {
    async fn acquire(&self, read_only: bool) -> Result<Conn, CapabilityError> {
        let (size, idle) = {
            let s = self.status();
            (s.size, s.idle)
        };
        if idle == 0 && size > 0 {
            self.waits.fetch_add(1, Ordering::Relaxed);
        }
        let conn = match &self.pools {
            Pools::Postgres(p) => p.acquire().await.map(Conn::Postgres),
            Pools::MySql(p) => p.acquire().await.map(Conn::MySql),
            Pools::Sqlite { rw, ro } => if read_only { ro } else { rw }
                .acquire()
                .await
                .map(Conn::Sqlite),
        };
        conn.map_err(|e| {
            self.record_error();
            match from_sqlx(e) {
                CapabilityError::Backend(m) => {
                    CapabilityError::Unavailable(format!("sql backend {}: {m}", self.id))
                }
                other => other,
            }
        })
    }
}

impl SqlBackend {
    /// A connection already inside the wrapping transaction. A connection the
    /// server closed while it sat idle in the pool fails at BEGIN, before
    /// any guest SQL, so it is dropped and another one taken: at most one
    /// per pooled connection, then a fresh one.
    pub(crate) async fn acquire_begun(&self, caps: &Caps) -> Result<Conn, CapabilityError> {
        let mut attempts = self.max_connections + 1;
        loop {
            let mut conn = self.acquire(caps.read_only).await?;
            match tokio::time::timeout(caps.timeout + HOST_TIMEOUT_SLACK, conn.begin(caps)).await {
                Ok(Ok(())) => return Ok(conn),
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
                        "no answer from database {} to BEGIN within {:?}",
                        self.id, caps.timeout
                    )));
                }
            }
        }
    }
}

impl Conn {
    /// Starts the wrapping transaction.
    async fn begin(&mut self, caps: &Caps) -> Result<(), CapabilityError> {
        let ms = caps.timeout.as_millis().max(1);
        match self {
            Conn::Postgres(c) => {
                // The SELECT takes the snapshot: after it, `SET TRANSACTION
                // READ WRITE` is refused by PostgreSQL itself.
                let sql = if caps.read_only {
                    format!("BEGIN READ ONLY; SET LOCAL statement_timeout = {ms}; SELECT 1")
                } else {
                    format!("BEGIN; SET LOCAL statement_timeout = {ms}")
                };
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut **c)
                    .await
                    .map_err(from_sqlx)?;
            }
            Conn::MySql(c) => {
                let secs = caps.timeout.as_secs_f64().max(0.001);
                let mariadb = format!("SET SESSION max_statement_time = {secs:.3}");
                if sqlx::raw_sql(sqlx::AssertSqlSafe(mariadb))
                    .execute(&mut **c)
                    .await
                    .is_err()
                {
                    // MySQL: the same limit under its own name (SELECT only).
                    let mysql = format!("SET SESSION max_execution_time = {ms}");
                    sqlx::raw_sql(sqlx::AssertSqlSafe(mysql))
                        .execute(&mut **c)
                        .await
                        .map_err(from_sqlx)?;
                }
                if caps.read_only {
                    // The session flag too: DDL implicitly commits, and the
                    // statement then runs in a new transaction that must still
                    // be read-only.
                    sqlx::raw_sql("SET SESSION TRANSACTION READ ONLY")
                        .execute(&mut **c)
                        .await
                        .map_err(from_sqlx)?;
                    sqlx::raw_sql("START TRANSACTION READ ONLY")
                        .execute(&mut **c)
                        .await
                        .map_err(from_sqlx)?;
                } else {
                    sqlx::raw_sql("START TRANSACTION")
                        .execute(&mut **c)
                        .await
                        .map_err(from_sqlx)?;
                }
            }
            Conn::Sqlite(c) => {
                crate::sqlite::set_deadline(c, Some(Instant::now() + caps.timeout))
                    .await
                    .map_err(from_sqlx)?;
                sqlx::raw_sql("BEGIN")
                    .execute(&mut **c)
                    .await
                    .map_err(from_sqlx)?;
            }
        }
        Ok(())
    }

    /// Ends the wrapping transaction so the pooled connection is clean for
    /// the next module: PostgreSQL rolls back read-only transactions (which
    /// reverts their SETs) and releases session advisory locks; read-write
    /// ones also reset settings, role, temp tables, cursors and listens.
    /// MariaDB has no reset a client can send through sqlx (no
    /// COM_RESET_CONNECTION), and guests can leave session and user variables
    /// behind even in read-only transactions, so its connections are closed
    /// after use. A connection that could not be cleaned is closed too.
    pub(crate) async fn end(
        &mut self,
        commit: bool,
        read_only: bool,
    ) -> Result<(), CapabilityError> {
        let sql = if commit { "COMMIT" } else { "ROLLBACK" };
        let result = match self {
            Conn::Postgres(c) => crate::postgres::end(c, commit, read_only).await,
            Conn::MySql(c) => {
                c.close_on_drop();
                let r = sqlx::raw_sql(sql).execute(&mut **c).await.map(|_| ());
                if read_only {
                    sqlx::raw_sql("SET SESSION TRANSACTION READ WRITE")
                        .execute(&mut **c)
                        .await
                        .map_err(from_sqlx)?;
                }
                r
            }
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
            Conn::MySql(c) => {
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
            Conn::MySql(c) => c.close_on_drop(),
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
                            let v = crate::$db::decode(&row, i).map_err(from_sqlx)?;
                            bytes += v.size();
                            values.push(v);
                        }
                        if bytes > caps.max_bytes {
                            return Err(CapabilityError::LimitExceeded(format!(
                                "max-output: the result is larger than the {} bytes left",
                                caps.max_bytes
                            )));
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
            Conn::MySql(c) => run!(c, mysql),
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
            Conn::MySql(c) => run!(c, mysql),
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
            Conn::MySql(c) => (&mut **c)
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
