//! A connection lent to one guest call, with the module's quota slot.
//!
//! The host, not the database session, owns the deadline: a guest can lift
//! `statement_timeout` or `max_statement_time` from inside its own SQL, but
//! not the host's timer. When the deadline passes, or the guest's call is
//! abandoned mid-statement, the statement is cancelled on the server from a
//! control connection of the same credential, escalated to ending the
//! session if the guest's SQL ignores the cancel, and the connection and the
//! quota slot are given back only once the server shows the session idle.

use std::time::{Duration, Instant};

use sqlx::mysql::MySqlPool;
use sqlx::postgres::PgPool;
use tokio::sync::OwnedSemaphorePermit;
use warden_capability::CapabilityError;

use crate::conn::Conn;

/// How long a cancelled statement may take to stop before its session is
/// ended (a PL/pgSQL handler or a MySQL procedure can catch a cancel).
const CANCEL_GRACE: Duration = Duration::from_secs(1);
/// How long an ended session may take to disappear from the server.
const TERMINATE_WAIT: Duration = Duration::from_secs(5);
/// The whole stop, control connection included: a server that does not
/// answer at all does not keep the quota slot forever.
const STOP_LIMIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(10);

/// Where a statement on this connection can be stopped from.
#[derive(Clone)]
pub(crate) enum Control {
    Postgres(PgPool),
    MySql(MySqlPool),
    /// The connection's progress handler interrupts it at the deadline.
    Sqlite,
}

pub(crate) struct Lease {
    conn: Option<Conn>,
    /// The server's id of the session: PostgreSQL pid, MySQL connection id.
    session: i64,
    control: Control,
    read_only: bool,
    /// The grant's statement timeout: how long SQLite may need to reach its
    /// interrupt.
    timeout: Duration,
    /// A statement was sent and not answered: on drop it is stopped first.
    busy: bool,
    slot: Option<OwnedSemaphorePermit>,
}

/// What a statement stopped by the host tells the guest.
pub(crate) fn deadline_passed(limit: &str, after: Duration) -> CapabilityError {
    CapabilityError::Timeout(format!(
        "{limit}: the statement ran past {after:?}; the host cancelled it on the server"
    ))
}

impl Lease {
    pub fn new(
        conn: Conn,
        session: i64,
        control: Control,
        read_only: bool,
        timeout: Duration,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            conn: Some(conn),
            session,
            control,
            read_only,
            timeout,
            busy: false,
            slot: Some(slot),
        }
    }

    pub fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    /// Runs `op` on the connection until `deadline`. Past it, the statement
    /// is stopped on the server before this returns `timeout`, and the
    /// lease is over (connection and slot given back).
    pub async fn run<R>(
        &mut self,
        deadline: Instant,
        limit: (&str, Duration),
        op: impl AsyncFnOnce(&mut Conn) -> Result<R, CapabilityError>,
    ) -> Result<R, CapabilityError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(CapabilityError::Invalid(
                "the transaction is already finished".into(),
            ));
        };
        self.busy = true;
        let outcome = tokio::time::timeout_at(deadline.into(), async {
            conn.arm(deadline).await?;
            op(conn).await
        })
        .await;
        match outcome {
            Ok(Err(e @ (CapabilityError::LimitExceeded(_) | CapabilityError::Invalid(_)))) => {
                // A result abandoned half-read (over a cap, or a value that
                // cannot be decoded): cancelled on the server, not drained
                // through the host.
                self.stop().await;
                Err(e)
            }
            Ok(r) => {
                self.busy = false;
                r
            }
            Err(_elapsed) => {
                self.stop().await;
                Err(deadline_passed(limit.0, limit.1))
            }
        }
    }

    /// Ends the wrapping transaction under `deadline` and gives the
    /// connection back to the pool (closed instead if it could not be
    /// cleaned).
    pub async fn finish(
        &mut self,
        commit: bool,
        deadline: Instant,
        limit: (&str, Duration),
    ) -> Result<(), CapabilityError> {
        let read_only = self.read_only;
        let r = self
            .run(deadline, limit, async |c| c.end(commit, read_only).await)
            .await;
        self.conn.take();
        self.slot.take();
        r
    }

    /// Ends the lease with the connection closed, never reused.
    pub fn discard(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.discard();
        }
        self.slot.take();
    }

    /// Stops whatever runs on the connection and ends the lease. It runs
    /// as its own task, so a caller that is dropped meanwhile (the module's
    /// wall timeout) cannot hand a busy connection back half-way.
    /// The guest's call waits for the stop at most `STOP_LIMIT`; past it the
    /// task goes on trying, holding the quota slot.
    pub async fn stop(&mut self) {
        let owned = self.take();
        let _ = tokio::time::timeout(STOP_LIMIT, tokio::spawn(owned.run())).await;
    }

    fn take(&mut self) -> Stopping {
        Stopping {
            conn: self.conn.take(),
            session: self.session,
            control: self.control.clone(),
            read_only: self.read_only,
            timeout: self.timeout,
            busy: std::mem::take(&mut self.busy),
            _slot: self.slot.take(),
        }
    }
}

/// A lease being ended in a task of its own. If that task never runs (the
/// runtime is shutting down), its drop closes the connection.
struct Stopping {
    conn: Option<Conn>,
    session: i64,
    control: Control,
    read_only: bool,
    timeout: Duration,
    busy: bool,
    /// Released when the stop is over, not before.
    _slot: Option<OwnedSemaphorePermit>,
}

impl Drop for Stopping {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.discard();
        }
    }
}

impl Stopping {
    async fn run(mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if !self.busy {
            // Idle inside the wrapping transaction: a rollback cleans it.
            let ended = tokio::time::timeout(CANCEL_GRACE, conn.end(false, self.read_only)).await;
            if !matches!(ended, Ok(Ok(()))) {
                conn.discard();
            }
            return;
        }
        match &self.control {
            Control::Sqlite => {
                // The next command waits for the interrupted statement.
                let wait = self.timeout + CANCEL_GRACE;
                let ended = tokio::time::timeout(wait, conn.end(false, self.read_only)).await;
                if !matches!(ended, Ok(Ok(()))) {
                    tracing::warn!("a SQLite statement did not stop after its deadline");
                    conn.discard();
                }
            }
            control => {
                // Until the server confirms the statement is gone, the slot
                // stays taken: it still counts against the module's quota.
                let mut pause = Duration::from_millis(100);
                loop {
                    match tokio::time::timeout(STOP_LIMIT, stop_session(control, self.session))
                        .await
                    {
                        Ok(Ok(())) => break,
                        Ok(Err(e)) => tracing::warn!(
                            session = self.session,
                            "stopping a guest statement: {e}; trying again"
                        ),
                        Err(_) => tracing::warn!(
                            session = self.session,
                            "no answer to the host's cancel within {STOP_LIMIT:?}; trying again"
                        ),
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
                // Its protocol state is unknown after a cancel: never reused.
                conn.discard();
            }
        }
        // The slot goes with `self`, only now.
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.conn.is_none() {
            return;
        }
        let owned = self.take();
        // Without a runtime, `owned` is dropped here: the connection closes.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(owned.run());
        }
    }
}

/// Cancels the statement of `session`, waits until the server shows it
/// idle, and ends the session if the cancel is ignored.
async fn stop_session(control: &Control, session: i64) -> Result<(), String> {
    let statements = match control {
        Control::Postgres(_) => Signals {
            cancel: format!("SELECT pg_cancel_backend({session})::text"),
            terminate: format!("SELECT pg_terminate_backend({session})::text"),
            state: format!(
                "SELECT CASE WHEN COALESCE(state, '') LIKE 'idle%' THEN 'idle' ELSE 'busy' END \
                 FROM pg_stat_activity WHERE pid = {session}"
            ),
        },
        Control::MySql(_) => Signals {
            cancel: format!("KILL QUERY {session}"),
            terminate: format!("KILL CONNECTION {session}"),
            state: format!(
                "SELECT CASE WHEN COMMAND = 'Sleep' THEN 'idle' ELSE 'busy' END \
                 FROM information_schema.PROCESSLIST WHERE ID = {session}"
            ),
        },
        Control::Sqlite => return Ok(()),
    };
    signal(control, &statements.cancel).await?;
    if wait_for(control, &statements.state, CANCEL_GRACE, |s| {
        s != Some("busy")
    })
    .await?
    {
        return Ok(());
    }
    tracing::warn!(
        session,
        "a guest statement ignored its cancel; ending its session"
    );
    signal(control, &statements.terminate).await?;
    if wait_for(control, &statements.state, TERMINATE_WAIT, |s| s.is_none()).await? {
        Ok(())
    } else {
        Err(format!(
            "session {session} still there {TERMINATE_WAIT:?} after it was ended"
        ))
    }
}

struct Signals {
    cancel: String,
    terminate: String,
    state: String,
}

async fn signal(control: &Control, sql: &str) -> Result<(), String> {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    let r = match control {
        Control::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(drop),
        Control::MySql(p) => sqlx::raw_sql(sql).execute(p).await.map(drop),
        Control::Sqlite => Ok(()),
    };
    match r {
        Ok(()) => Ok(()),
        // MySQL: the session ended by itself meanwhile.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("HY000") => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Polls the session's state until `done` holds (`None`: no such session).
async fn wait_for(
    control: &Control,
    state: &str,
    within: Duration,
    done: impl Fn(Option<&str>) -> bool,
) -> Result<bool, String> {
    let until = Instant::now() + within;
    loop {
        let sql = sqlx::AssertSqlSafe(state.to_string());
        let now: Option<String> = match control {
            Control::Postgres(p) => sqlx::query_scalar(sql).fetch_optional(p).await,
            Control::MySql(p) => sqlx::query_scalar(sql).fetch_optional(p).await,
            Control::Sqlite => return Ok(true),
        }
        .map_err(|e| e.to_string())?;
        if done(now.as_deref()) {
            return Ok(true);
        }
        if Instant::now() >= until {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}
