//! The guest-facing `warden:host/sql` interface: handles carry their grant,
//! every call is checked against it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warden_capability::{AuditEvent, AuditKind, AuditSink, CapabilityError};
use wasmtime::component::{Linker, Resource, ResourceTable};

use crate::conn::{Caps, Conn};
use crate::grant::{SqlAccess, SqlGrant};
use crate::lease::Lease;
use crate::pool::{SqlBackend, SqlBackends};
use crate::value::{RowSet, SqlValue};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "warden:host/sql-capability",
        imports: { default: async | trappable },
        with: {
            "warden:host/types": warden_capability::wit::types,
            "warden:host/sql.connection": super::Connection,
            "warden:host/sql.prepared": super::Prepared,
            "warden:host/sql.transaction": super::Transaction,
        },
    });
}

use bindings::warden::host::sql::{self as wit, Value};
use warden_capability::wit::types::Error as WitError;

/// A module's SQL grants, resolved once when the module is loaded. The
/// connection quota lives here, so it spans all invocations of the module.
pub struct SqlModule {
    module: String,
    grants: HashMap<String, Arc<ModuleGrant>>,
    audit: Arc<dyn AuditSink>,
}

struct ModuleGrant {
    name: String,
    backend: Arc<SqlBackend>,
    read_only: bool,
    timeout: Duration,
    max_rows: u32,
    max_connections: u32,
    quota: Arc<Semaphore>,
}

impl SqlModule {
    /// Checks every grant against the host's backends; errors name the grant.
    pub fn new(
        module: &str,
        grants: &std::collections::BTreeMap<String, SqlGrant>,
        backends: &SqlBackends,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, String> {
        let mut resolved = HashMap::new();
        for (name, g) in grants {
            let backend = backends.get(&g.backend).ok_or_else(|| {
                format!(
                    "grants.sql.{name}.backend: no [sql.{}] in the host config",
                    g.backend
                )
            })?;
            if g.max_connections == 0 {
                return Err(format!(
                    "grants.sql.{name}.max-connections: must be at least 1"
                ));
            }
            resolved.insert(
                name.clone(),
                Arc::new(ModuleGrant {
                    name: name.clone(),
                    backend,
                    read_only: g.access == SqlAccess::ReadOnly,
                    timeout: g.statement_timeout.0,
                    max_rows: g.max_rows,
                    max_connections: g.max_connections,
                    quota: Arc::new(Semaphore::new(g.max_connections as usize)),
                }),
            );
        }
        Ok(Self {
            module: module.to_string(),
            grants: resolved,
            audit,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    fn deny(&self, detail: String) -> CapabilityError {
        self.audit.deny(&self.module, "sql", detail)
    }

    /// A limit that stopped a statement (`statement-timeout`, `max-rows`, …).
    fn breach(&self, rule: &str, detail: String) {
        self.audit.record(AuditEvent {
            module: self.module.clone(),
            kind: AuditKind::LimitExceeded,
            rule: rule.to_string(),
            detail,
        });
    }
}

/// Per-invocation SQL state, kept in the store.
pub struct SqlCtx {
    module: Arc<SqlModule>,
    /// Result bytes the guest may still receive in this invocation.
    bytes_left: u64,
    /// The end of the invocation (the module's `timeout`): no statement
    /// runs past it, whatever its own timeout.
    ends: Instant,
    timeout: Duration,
}

impl SqlCtx {
    /// State for one invocation that may run for `timeout` from now.
    pub fn new(module: Arc<SqlModule>, max_output: u64, timeout: Duration) -> Self {
        Self {
            module,
            bytes_left: max_output,
            ends: Instant::now() + timeout,
            timeout,
        }
    }
}

pub struct Connection {
    grant: Arc<ModuleGrant>,
}

pub struct Prepared {
    grant: Arc<ModuleGrant>,
    statement: String,
}

/// Holds its connection and a quota slot until commit or rollback; dropped
/// unfinished (guest drop, trap, end of invocation) it rolls back.
/// (The lease's own drop does that.)
pub struct Transaction {
    grant: Arc<ModuleGrant>,
    lease: Option<Lease>,
}

/// What the `warden:host/sql` host functions run on.
pub struct SqlHost<'a> {
    pub ctx: &'a mut SqlCtx,
    pub table: &'a mut ResourceTable,
}

pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> SqlHost<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, warden_capability::HostOf<crate::Sql>>(linker, get)
}

impl SqlHost<'_> {
    fn caps(&self, grant: &ModuleGrant) -> Caps {
        let statement_ends = Instant::now() + grant.timeout;
        let (deadline, limit) = if statement_ends <= self.ctx.ends {
            (statement_ends, ("statement-timeout", grant.timeout))
        } else {
            (self.ctx.ends, ("timeout", self.ctx.timeout))
        };
        Caps {
            read_only: grant.read_only,
            timeout: grant.timeout,
            deadline,
            limit,
            max_rows: grant.max_rows,
            max_bytes: self.ctx.bytes_left,
        }
    }

    fn charge(&mut self, rows: &RowSet) {
        let used: u64 = rows.rows.iter().flatten().map(SqlValue::size).sum();
        self.ctx.bytes_left = self.ctx.bytes_left.saturating_sub(used);
    }

    /// Denials and limit breaches become audit events naming the grant.
    fn audited(&self, grant: &ModuleGrant, err: CapabilityError) -> CapabilityError {
        let module = &self.ctx.module;
        match &err {
            CapabilityError::Denied(detail) => {
                module.deny(format!("sql grant {:?}: {detail}", grant.name));
            }
            CapabilityError::Timeout(detail) | CapabilityError::LimitExceeded(detail) => {
                let rule = detail.split(':').next().unwrap_or("sql");
                module.breach(rule, format!("sql grant {:?}: {detail}", grant.name));
            }
            _ => {}
        }
        err
    }
}

async fn take_slot(
    grant: &ModuleGrant,
    caps: &Caps,
) -> Result<OwnedSemaphorePermit, CapabilityError> {
    match tokio::time::timeout_at(caps.deadline.into(), grant.quota.clone().acquire_owned()).await {
        Ok(Ok(slot)) => Ok(slot),
        // The slots are held by calls waiting on a server that is gone:
        // the outage is the cause, not the quota.
        _ if grant.backend.health(caps.read_only).is_down() => {
            Err(grant.backend.health(caps.read_only).down_error())
        }
        _ => Err(CapabilityError::LimitExceeded(format!(
            "max-connections: all {} connections of grant {:?} are in use by this module",
            grant.max_connections, grant.name
        ))),
    }
}

/// A connection inside the wrapping transaction, holding a quota slot.
async fn lease(grant: &ModuleGrant, caps: &Caps) -> Result<Lease, CapabilityError> {
    grant
        .backend
        .health(caps.read_only)
        .check_until(caps.deadline)
        .await?;
    let slot = take_slot(grant, caps).await?;
    grant.backend.acquire_begun(caps, slot).await
}

/// One guest call in its own wrapping transaction on a fresh connection.
async fn one_shot<R>(
    grant: &ModuleGrant,
    caps: Caps,
    op: impl AsyncFnOnce(&mut Conn) -> Result<R, CapabilityError>,
) -> Result<R, CapabilityError> {
    let mut lease = lease(grant, &caps).await?;
    let r = lease.run(caps.deadline, caps.limit, op).await;
    if !lease.is_open() {
        return r; // stopped by the host: `r` says why
    }
    let commit = r.is_ok() && !caps.read_only;
    let ended = lease.finish(commit, caps.deadline, caps.limit).await;
    let r = r?;
    ended.map(|()| r)
}

fn from_value(v: Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Boolean(b) => SqlValue::Boolean(b),
        Value::Int32(n) => SqlValue::Int32(n),
        Value::Int64(n) => SqlValue::Int64(n),
        Value::Float64(f) => SqlValue::Float64(f),
        Value::Text(s) => SqlValue::Text(s),
        Value::Bytes(b) => SqlValue::Bytes(b),
        Value::Timestamp(s) => SqlValue::Timestamp(s),
        Value::Json(s) => SqlValue::Json(s),
        Value::Uuid(s) => SqlValue::Uuid(s),
        Value::Decimal(s) => SqlValue::Decimal(s),
    }
}

fn to_value(v: SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Boolean(b) => Value::Boolean(b),
        SqlValue::Int32(n) => Value::Int32(n),
        SqlValue::Int64(n) => Value::Int64(n),
        SqlValue::Float64(f) => Value::Float64(f),
        SqlValue::Text(s) => Value::Text(s),
        SqlValue::Bytes(b) => Value::Bytes(b),
        SqlValue::Timestamp(s) => Value::Timestamp(s),
        SqlValue::Json(s) => Value::Json(s),
        SqlValue::Uuid(s) => Value::Uuid(s),
        SqlValue::Decimal(s) => Value::Decimal(s),
    }
}

fn params(p: Vec<Value>) -> Vec<SqlValue> {
    p.into_iter().map(from_value).collect()
}

fn to_row_set(r: RowSet) -> wit::RowSet {
    wit::RowSet {
        columns: r.columns,
        rows: r
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(to_value).collect())
            .collect(),
    }
}

type WitResult<T> = wasmtime::Result<Result<T, WitError>>;

impl wit::Host for SqlHost<'_> {}

impl wit::HostConnection for SqlHost<'_> {
    async fn open(&mut self, name: String) -> WitResult<Resource<Connection>> {
        let Some(grant) = self.ctx.module.grants.get(&name).cloned() else {
            let err = self
                .ctx
                .module
                .deny(format!("sql grant {name:?} not in manifest"));
            return Ok(Err(WitError::from(err)));
        };
        Ok(Ok(self.table.push(Connection { grant })?))
    }

    async fn query(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        p: Vec<Value>,
    ) -> WitResult<wit::RowSet> {
        let grant = self.table.get(&this)?.grant.clone();
        self.query_once(grant, &statement, p).await
    }

    async fn execute(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        p: Vec<Value>,
    ) -> WitResult<u64> {
        let grant = self.table.get(&this)?.grant.clone();
        self.execute_once(grant, &statement, vec![params(p)]).await
    }

    async fn execute_batch(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        rows: Vec<Vec<Value>>,
    ) -> WitResult<u64> {
        let grant = self.table.get(&this)?.grant.clone();
        self.execute_once(grant, &statement, rows.into_iter().map(params).collect())
            .await
    }

    async fn prepare(
        &mut self,
        this: Resource<Connection>,
        statement: String,
    ) -> WitResult<Resource<Prepared>> {
        let grant = self.table.get(&this)?.grant.clone();
        let caps = self.caps(&grant);
        match one_shot(&grant, caps, async |c| c.check(&statement).await).await {
            Ok(()) => Ok(Ok(self.table.push(Prepared { grant, statement })?)),
            Err(e) => Ok(Err(WitError::from(self.audited(&grant, e)))),
        }
    }

    async fn begin(&mut self, this: Resource<Connection>) -> WitResult<Resource<Transaction>> {
        let grant = self.table.get(&this)?.grant.clone();
        let caps = self.caps(&grant);
        match lease(&grant, &caps).await {
            Ok(lease) => Ok(Ok(self.table.push(Transaction {
                grant,
                lease: Some(lease),
            })?)),
            Err(e) => Ok(Err(WitError::from(self.audited(&grant, e)))),
        }
    }

    async fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl wit::HostPrepared for SqlHost<'_> {
    async fn query(&mut self, this: Resource<Prepared>, p: Vec<Value>) -> WitResult<wit::RowSet> {
        let (grant, statement) = self.prepared(&this)?;
        self.query_once(grant, &statement, p).await
    }

    async fn execute(&mut self, this: Resource<Prepared>, p: Vec<Value>) -> WitResult<u64> {
        let (grant, statement) = self.prepared(&this)?;
        self.execute_once(grant, &statement, vec![params(p)]).await
    }

    async fn drop(&mut self, this: Resource<Prepared>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl SqlHost<'_> {
    /// A query in its own wrapping transaction; the rows count against the output cap.
    async fn query_once(
        &mut self,
        grant: Arc<ModuleGrant>,
        statement: &str,
        p: Vec<Value>,
    ) -> WitResult<wit::RowSet> {
        let caps = self.caps(&grant);
        let p = params(p);
        let r = one_shot(&grant, caps, async |c| c.query(statement, &p, &caps).await).await;
        Ok(self.rows_reply(&grant, r))
    }

    /// One statement for each parameter row, all in one wrapping transaction.
    async fn execute_once(
        &mut self,
        grant: Arc<ModuleGrant>,
        statement: &str,
        rows: Vec<Vec<SqlValue>>,
    ) -> WitResult<u64> {
        let caps = self.caps(&grant);
        let r = one_shot(&grant, caps, async |c| {
            c.execute_all(statement, &rows).await
        })
        .await;
        Ok(r.map_err(|e| WitError::from(self.audited(&grant, e))))
    }

    fn rows_reply(
        &mut self,
        grant: &ModuleGrant,
        r: Result<RowSet, CapabilityError>,
    ) -> Result<wit::RowSet, WitError> {
        match r {
            Ok(rows) => {
                self.charge(&rows);
                Ok(to_row_set(rows))
            }
            Err(e) => Err(WitError::from(self.audited(grant, e))),
        }
    }

    fn prepared(&self, this: &Resource<Prepared>) -> wasmtime::Result<(Arc<ModuleGrant>, String)> {
        let s = self.table.get(this)?;
        Ok((s.grant.clone(), s.statement.clone()))
    }
}

impl SqlHost<'_> {
    /// Runs `op` on the transaction's connection under the host's deadline.
    async fn in_tx<R>(
        &mut self,
        this: &Resource<Transaction>,
        op: impl AsyncFnOnce(&mut Conn, &Caps) -> Result<R, CapabilityError>,
    ) -> wasmtime::Result<Result<R, CapabilityError>> {
        let caps = {
            let grant = self.table.get(this)?.grant.clone();
            self.caps(&grant)
        };
        let tx = self.table.get_mut(this)?;
        let Some(lease) = tx.lease.as_mut() else {
            return Ok(Err(CapabilityError::Invalid(
                "the transaction is already finished".into(),
            )));
        };
        let mut escaped = false;
        let r = lease
            .run(caps.deadline, caps.limit, async |conn| {
                let r = op(conn, &caps).await;
                // A guest statement that left the read-only transaction:
                // nothing more may run on this connection.
                escaped = caps.read_only && !conn.still_read_only().await.unwrap_or(false);
                r
            })
            .await;
        if escaped {
            lease.discard();
            tx.lease = None;
            return Ok(Err(CapabilityError::Denied(
                "read-only grant: the statement ended the read-only transaction; the transaction was closed".into(),
            )));
        }
        if !lease.is_open() {
            tx.lease = None;
        }
        Ok(r)
    }

    /// Our own COMMIT or ROLLBACK under the host's deadline; finished
    /// either way, so the connection and the quota slot go back.
    async fn finish(&mut self, this: &Resource<Transaction>, commit: bool) -> WitResult<()> {
        let grant = self.tx_grant(this)?;
        let caps = self.caps(&grant);
        let tx = self.table.get_mut(this)?;
        let Some(mut lease) = tx.lease.take() else {
            return Ok(Err(WitError::from(CapabilityError::Invalid(
                "the transaction is already finished".into(),
            ))));
        };
        let r = lease.finish(commit, caps.deadline, caps.limit).await;
        Ok(r.map_err(|e| WitError::from(self.audited(&grant, e))))
    }

    async fn execute_in_tx(
        &mut self,
        this: Resource<Transaction>,
        statement: &str,
        rows: Vec<Vec<SqlValue>>,
    ) -> WitResult<u64> {
        let grant = self.tx_grant(&this)?;
        let r = self
            .in_tx(&this, async |c, _| c.execute_all(statement, &rows).await)
            .await?;
        Ok(r.map_err(|e| WitError::from(self.audited(&grant, e))))
    }

    fn tx_grant(&self, this: &Resource<Transaction>) -> wasmtime::Result<Arc<ModuleGrant>> {
        Ok(self.table.get(this)?.grant.clone())
    }
}

impl wit::HostTransaction for SqlHost<'_> {
    async fn query(
        &mut self,
        this: Resource<Transaction>,
        statement: String,
        p: Vec<Value>,
    ) -> WitResult<wit::RowSet> {
        let grant = self.tx_grant(&this)?;
        let p = params(p);
        let r = self
            .in_tx(&this, async |c, caps| c.query(&statement, &p, caps).await)
            .await?;
        Ok(self.rows_reply(&grant, r))
    }

    async fn execute(
        &mut self,
        this: Resource<Transaction>,
        statement: String,
        p: Vec<Value>,
    ) -> WitResult<u64> {
        self.execute_in_tx(this, &statement, vec![params(p)]).await
    }

    async fn execute_batch(
        &mut self,
        this: Resource<Transaction>,
        statement: String,
        rows: Vec<Vec<Value>>,
    ) -> WitResult<u64> {
        self.execute_in_tx(this, &statement, rows.into_iter().map(params).collect())
            .await
    }

    async fn commit(&mut self, this: Resource<Transaction>) -> WitResult<()> {
        // A read-only grant's transaction is rolled back either way.
        let commit = !self.tx_grant(&this)?.read_only;
        self.finish(&this, commit).await
    }

    async fn rollback(&mut self, this: Resource<Transaction>) -> WitResult<()> {
        self.finish(&this, false).await
    }

    async fn drop(&mut self, this: Resource<Transaction>) -> wasmtime::Result<()> {
        // Drop of an unfinished transaction rolls back (the lease's drop).
        self.table.delete(this)?;
        Ok(())
    }
}
