//! The guest-facing `warden:host/kv` interface.

use std::collections::HashMap;
use std::sync::Arc;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::Deserialize;
use warden_capability::{AuditSink, CapabilityError};
use wasmtime::component::{Linker, Resource, ResourceTable};

use crate::backend::{KvBackend, KvBackends};
use crate::key::Confined;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "warden:host/kv-capability",
        imports: { default: async | trappable },
        with: {
            "warden:host/types": warden_capability::wit::types,
            "warden:host/kv.store": super::Store,
        },
    });
}

use bindings::warden::host::kv::{self as wit, Op, Reply};
use warden_capability::wit::types::Error as WitError;

/// `[grants.kv.<name>]` of a module manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvGrant {
    /// The `[kv.<id>]` backend of the host config.
    pub backend: String,
    /// Every key and channel of the module is placed under this prefix.
    pub prefix: String,
}

/// A module's KV grants, resolved when it is loaded.
pub struct KvModule {
    module: String,
    grants: HashMap<String, Arc<ModuleGrant>>,
    audit: Arc<dyn AuditSink>,
}

struct ModuleGrant {
    backend: Arc<KvBackend>,
    confined: Confined,
}

impl KvModule {
    pub fn new(
        module: &str,
        grants: &std::collections::BTreeMap<String, KvGrant>,
        backends: &KvBackends,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, String> {
        let mut resolved = HashMap::new();
        for (name, g) in grants {
            let backend = backends.get(&g.backend).ok_or_else(|| {
                format!(
                    "grants.kv.{name}.backend: no [kv.{}] in the host config",
                    g.backend
                )
            })?;
            let confined =
                Confined::new(&g.prefix).map_err(|e| format!("grants.kv.{name}.prefix: {e}"))?;
            resolved.insert(name.clone(), Arc::new(ModuleGrant { backend, confined }));
        }
        Ok(Self {
            module: module.to_string(),
            grants: resolved,
            audit,
        })
    }
}

/// Per-invocation KV state, kept in the store.
pub struct KvCtx {
    module: Arc<KvModule>,
    bytes_left: u64,
}

impl KvCtx {
    pub fn new(module: Arc<KvModule>, max_output: u64) -> Self {
        Self {
            module,
            bytes_left: max_output,
        }
    }
}

pub struct Store {
    grant: Arc<ModuleGrant>,
}

/// What the `warden:host/kv` host functions run on.
pub struct KvHost<'a> {
    pub ctx: &'a mut KvCtx,
    pub table: &'a mut ResourceTable,
}

pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> KvHost<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, warden_capability::HostOf<crate::Kv>>(linker, get)
}

type WitResult<T> = wasmtime::Result<Result<T, WitError>>;

fn from_redis(backend: &KvBackend, e: redis::RedisError) -> CapabilityError {
    backend.record_error();
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
    {
        CapabilityError::Unavailable(format!("kv backend {}: {e}", backend.id))
    } else {
        CapabilityError::Backend(e.to_string())
    }
}

/// Bytes a reply costs against the invocation's output cap.
trait Size {
    fn size(&self) -> u64;
}

impl Size for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }
}
impl Size for String {
    fn size(&self) -> u64 {
        self.len() as u64
    }
}
impl<T: Size> Size for Option<T> {
    fn size(&self) -> u64 {
        self.as_ref().map_or(0, Size::size)
    }
}
impl<T: Size> Size for Vec<T> {
    fn size(&self) -> u64 {
        self.iter().map(Size::size).sum::<u64>() + self.len() as u64
    }
}
impl<A: Size, B: Size> Size for (A, B) {
    fn size(&self) -> u64 {
        self.0.size() + self.1.size()
    }
}
macro_rules! fixed_size {
    ($($t:ty),*) => { $(impl Size for $t { fn size(&self) -> u64 { 8 } })* };
}
fixed_size!((), bool, i64, u64, f64);

impl KvHost<'_> {
    /// Runs `op` for the store `this` on key `key` (confined), charging the reply.
    async fn on_key<R: Size>(
        &mut self,
        this: &Resource<Store>,
        key: &str,
        op: impl AsyncFnOnce(ConnectionManager, String) -> redis::RedisResult<R>,
    ) -> WitResult<R> {
        let grant = self.table.get(this)?.grant.clone();
        let key = match grant.confined.key(key) {
            Ok(k) => k,
            Err(e) => return Ok(Err(WitError::Invalid(e))),
        };
        self.call(&grant, async |conn| op(conn, key).await).await
    }

    async fn call<R: Size>(
        &mut self,
        grant: &ModuleGrant,
        op: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<R>,
    ) -> WitResult<R> {
        let backend = &grant.backend;
        // While Redis is known to be down, fail now instead of once per
        // call through the connection manager's reconnect.
        if let Err(e) = backend.health.check().await {
            backend.record_error();
            return Ok(Err(WitError::from(e)));
        }
        let result = match backend.connection().await {
            Ok(conn) => op(conn).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(reply) => {
                backend.health.recovered();
                let size = reply.size();
                if size > self.ctx.bytes_left {
                    return Ok(Err(WitError::LimitExceeded(format!(
                        "max-output: the reply is {size} bytes, {} left in this invocation",
                        self.ctx.bytes_left
                    ))));
                }
                self.ctx.bytes_left -= size;
                Ok(Ok(reply))
            }
            Err(e) => {
                if is_outage(&e)
                    && let Some(down) = backend.health.after_trouble().await
                {
                    backend.record_error();
                    return Ok(Err(WitError::from(down)));
                }
                if e.code().is_some() {
                    // Redis itself answered (with an error): it is up.
                    backend.health.recovered();
                }
                Ok(Err(WitError::from(from_redis(backend, e))))
            }
        }
    }
}

/// Errors that may mean Redis is gone (then its port is probed).
fn is_outage(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

fn ttl_arg(ms: u64) -> redis::RedisResult<u64> {
    if ms == 0 {
        return Err((redis::ErrorKind::Client, "ttl must be greater than zero").into());
    }
    Ok(ms)
}

impl wit::Host for KvHost<'_> {}

impl wit::HostStore for KvHost<'_> {
    async fn open(&mut self, name: String) -> WitResult<Resource<Store>> {
        let Some(grant) = self.ctx.module.grants.get(&name).cloned() else {
            let m = &self.ctx.module;
            let err = m.audit.deny(
                &m.module,
                "kv",
                format!("kv grant {name:?} not in manifest"),
            );
            return Ok(Err(err.into()));
        };
        Ok(Ok(self.table.push(Store { grant })?))
    }

    async fn get(&mut self, this: Resource<Store>, key: String) -> WitResult<Option<Vec<u8>>> {
        self.on_key(&this, &key, async |mut c, k| c.get(k).await)
            .await
    }

    async fn set(
        &mut self,
        this: Resource<Store>,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> WitResult<()> {
        self.on_key(&this, &key, async |mut c, k| match ttl_ms {
            Some(ms) => c.pset_ex(k, value, ttl_arg(ms)?).await,
            None => c.set(k, value).await,
        })
        .await
    }

    async fn delete(&mut self, this: Resource<Store>, key: String) -> WitResult<bool> {
        self.on_key(&this, &key, async |mut c, k| {
            c.del::<_, u64>(k).await.map(|n| n > 0)
        })
        .await
    }

    async fn exists(&mut self, this: Resource<Store>, key: String) -> WitResult<bool> {
        self.on_key(&this, &key, async |mut c, k| c.exists(k).await)
            .await
    }

    async fn expire(&mut self, this: Resource<Store>, key: String, ttl_ms: u64) -> WitResult<bool> {
        self.on_key(&this, &key, async |mut c, k| {
            c.pexpire(k, ttl_arg(ttl_ms)? as i64).await
        })
        .await
    }

    async fn ttl(&mut self, this: Resource<Store>, key: String) -> WitResult<Option<u64>> {
        self.on_key(&this, &key, async |mut c, k| {
            let ms: i64 = c.pttl(k).await?;
            Ok(u64::try_from(ms).ok())
        })
        .await
    }

    async fn incr(&mut self, this: Resource<Store>, key: String, by: i64) -> WitResult<i64> {
        self.on_key(&this, &key, async |mut c, k| c.incr(k, by).await)
            .await
    }

    async fn hset(
        &mut self,
        this: Resource<Store>,
        key: String,
        field: String,
        value: Vec<u8>,
    ) -> WitResult<()> {
        self.on_key(&this, &key, async |mut c, k| {
            c.hset::<_, _, _, u64>(k, field, value).await.map(drop)
        })
        .await
    }

    async fn hget(
        &mut self,
        this: Resource<Store>,
        key: String,
        field: String,
    ) -> WitResult<Option<Vec<u8>>> {
        self.on_key(&this, &key, async |mut c, k| c.hget(k, field).await)
            .await
    }

    async fn hdel(&mut self, this: Resource<Store>, key: String, field: String) -> WitResult<bool> {
        self.on_key(&this, &key, async |mut c, k| {
            c.hdel::<_, _, u64>(k, field).await.map(|n| n > 0)
        })
        .await
    }

    async fn hgetall(
        &mut self,
        this: Resource<Store>,
        key: String,
    ) -> WitResult<Vec<(String, Vec<u8>)>> {
        self.on_key(&this, &key, async |mut c, k| c.hgetall(k).await)
            .await
    }

    async fn lpush(
        &mut self,
        this: Resource<Store>,
        key: String,
        value: Vec<u8>,
    ) -> WitResult<u64> {
        self.on_key(&this, &key, async |mut c, k| c.lpush(k, value).await)
            .await
    }

    async fn rpush(
        &mut self,
        this: Resource<Store>,
        key: String,
        value: Vec<u8>,
    ) -> WitResult<u64> {
        self.on_key(&this, &key, async |mut c, k| c.rpush(k, value).await)
            .await
    }

    async fn lpop(&mut self, this: Resource<Store>, key: String) -> WitResult<Option<Vec<u8>>> {
        self.on_key(&this, &key, async |mut c, k| c.lpop(k, None).await)
            .await
    }

    async fn rpop(&mut self, this: Resource<Store>, key: String) -> WitResult<Option<Vec<u8>>> {
        self.on_key(&this, &key, async |mut c, k| c.rpop(k, None).await)
            .await
    }

    async fn lrange(
        &mut self,
        this: Resource<Store>,
        key: String,
        start: i64,
        stop: i64,
    ) -> WitResult<Vec<Vec<u8>>> {
        self.on_key(&this, &key, async |mut c, k| {
            c.lrange(k, start as isize, stop as isize).await
        })
        .await
    }

    async fn sadd(
        &mut self,
        this: Resource<Store>,
        key: String,
        member: String,
    ) -> WitResult<bool> {
        self.on_key(&this, &key, async |mut c, k| {
            c.sadd::<_, _, u64>(k, member).await.map(|n| n > 0)
        })
        .await
    }

    async fn srem(
        &mut self,
        this: Resource<Store>,
        key: String,
        member: String,
    ) -> WitResult<bool> {
        self.on_key(&this, &key, async |mut c, k| {
            c.srem::<_, _, u64>(k, member).await.map(|n| n > 0)
        })
        .await
    }

    async fn smembers(&mut self, this: Resource<Store>, key: String) -> WitResult<Vec<String>> {
        self.on_key(&this, &key, async |mut c, k| c.smembers(k).await)
            .await
    }

    async fn sismember(
        &mut self,
        this: Resource<Store>,
        key: String,
        member: String,
    ) -> WitResult<bool> {
        self.on_key(&this, &key, async |mut c, k| c.sismember(k, member).await)
            .await
    }

    async fn zadd(
        &mut self,
        this: Resource<Store>,
        key: String,
        member: String,
        score: f64,
    ) -> WitResult<bool> {
        self.on_key(&this, &key, async |mut c, k| {
            c.zadd::<_, _, _, u64>(k, member, score)
                .await
                .map(|n| n > 0)
        })
        .await
    }

    async fn zrem(
        &mut self,
        this: Resource<Store>,
        key: String,
        member: String,
    ) -> WitResult<bool> {
        self.on_key(&this, &key, async |mut c, k| {
            c.zrem::<_, _, u64>(k, member).await.map(|n| n > 0)
        })
        .await
    }

    async fn zscore(
        &mut self,
        this: Resource<Store>,
        key: String,
        member: String,
    ) -> WitResult<Option<f64>> {
        self.on_key(&this, &key, async |mut c, k| c.zscore(k, member).await)
            .await
    }

    async fn zrange_by_score(
        &mut self,
        this: Resource<Store>,
        key: String,
        min: f64,
        max: f64,
        limit: u32,
    ) -> WitResult<Vec<(String, f64)>> {
        self.on_key(&this, &key, async |mut c, k| {
            c.zrangebyscore_limit_withscores(k, min, max, 0, limit as isize)
                .await
        })
        .await
    }

    async fn publish(
        &mut self,
        this: Resource<Store>,
        channel: String,
        message: Vec<u8>,
    ) -> WitResult<u64> {
        self.on_key(&this, &channel, async |mut c, ch| {
            c.publish(ch, message).await
        })
        .await
    }

    async fn keys(
        &mut self,
        this: Resource<Store>,
        prefix: String,
        limit: u32,
    ) -> WitResult<Vec<String>> {
        let grant = self.table.get(&this)?.grant.clone();
        let pattern = match grant.confined.scan_pattern(&prefix) {
            Ok(p) => p,
            Err(e) => return Ok(Err(WitError::Invalid(e))),
        };
        let confined = grant.confined.clone();
        self.call(&grant, async |mut c| {
            // SCAN, never KEYS: bounded work per round trip.
            let mut cursor: u64 = 0;
            let mut found = Vec::new();
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut c)
                    .await?;
                found.extend(
                    batch
                        .iter()
                        .filter_map(|k| confined.guest_key(k))
                        .map(str::to_string),
                );
                cursor = next;
                if cursor == 0 || found.len() >= limit as usize {
                    break;
                }
            }
            found.truncate(limit as usize);
            found.sort();
            Ok(found)
        })
        .await
    }

    async fn batch(&mut self, this: Resource<Store>, ops: Vec<Op>) -> WitResult<Vec<Reply>> {
        const MAX_OPS: usize = 1000;
        if ops.len() > MAX_OPS {
            return Ok(Err(WitError::LimitExceeded(format!(
                "batch of {} commands; the limit is {MAX_OPS}",
                ops.len()
            ))));
        }
        let grant = self.table.get(&this)?.grant.clone();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for op in &ops {
            if let Err(e) = add_op(&mut pipe, &grant.confined, op) {
                return Ok(Err(WitError::Invalid(e)));
            }
        }
        self.call(&grant, async |mut c| {
            let values: Vec<redis::Value> = pipe.query_async(&mut c).await?;
            Ok(values.into_iter().map(to_reply).collect::<Vec<_>>())
        })
        .await
    }

    async fn drop(&mut self, this: Resource<Store>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

/// Adds one batch command with its key confined.
fn add_op(pipe: &mut redis::Pipeline, confined: &Confined, op: &Op) -> Result<(), String> {
    let positive = |ms: u64| {
        if ms == 0 {
            Err("ttl must be greater than zero".to_string())
        } else {
            Ok(ms)
        }
    };
    match op {
        Op::Get(k) => {
            pipe.get(confined.key(k)?);
        }
        Op::Set((k, v, None)) => {
            pipe.set(confined.key(k)?, v);
        }
        Op::Set((k, v, Some(ms))) => {
            pipe.pset_ex(confined.key(k)?, v, positive(*ms)?);
        }
        Op::Delete(k) => {
            pipe.del(confined.key(k)?);
        }
        Op::Incr((k, by)) => {
            pipe.incr(confined.key(k)?, *by);
        }
        Op::Hset((k, f, v)) => {
            pipe.hset(confined.key(k)?, f, v);
        }
        Op::Hget((k, f)) => {
            pipe.hget(confined.key(k)?, f);
        }
        Op::Expire((k, ms)) => {
            pipe.pexpire(confined.key(k)?, positive(*ms)? as i64);
        }
    }
    Ok(())
}

fn to_reply(v: redis::Value) -> Reply {
    match v {
        redis::Value::Nil => Reply::Nil,
        redis::Value::Int(n) => Reply::Number(n),
        redis::Value::BulkString(b) => Reply::Bytes(b),
        redis::Value::SimpleString(s) => Reply::Bytes(s.into_bytes()),
        redis::Value::Boolean(b) => Reply::Number(i64::from(b)),
        _ => Reply::Ok,
    }
}

impl Size for Reply {
    fn size(&self) -> u64 {
        match self {
            Reply::Bytes(b) => b.len() as u64,
            _ => 8,
        }
    }
}

impl warden_capability::NamedGrant for KvGrant {
    fn backend(&self) -> &str {
        &self.backend
    }
}
