//! KV (Redis) on the runtime's capability seam.

use std::collections::BTreeMap;
use std::sync::Arc;

use warden_capability::{AuditSink, BackendConfig, InvocationLimits, NamedCapability, url_host};
use wasmtime::component::{Linker, ResourceTable};

use crate::backend::{KvBackend, KvBackends};
use crate::host::KvGrant;
use crate::host::{self, KvCtx, KvHost, KvModule};

/// `warden:host/kv`: stores confined to a `[grants.kv.<name>]` key prefix.
pub struct Kv;

impl NamedCapability for Kv {
    const KIND: &'static str = "kv";
    const GRANT: &'static str = "[grants.kv.<name>]";
    type Grant = KvGrant;
    type Backend = KvBackend;
    type Backends = KvBackends;
    type Module = KvModule;
    type Ctx = KvCtx;
    type Host<'a> = KvHost<'a>;

    fn backend_hosts(config: &BTreeMap<String, BackendConfig<Self>>) -> Vec<String> {
        config.values().filter_map(|c| url_host(&c.url)).collect()
    }

    fn resolve(
        module: &str,
        grants: &BTreeMap<String, KvGrant>,
        backends: &KvBackends,
        audit: Arc<dyn AuditSink>,
    ) -> Result<KvModule, String> {
        KvModule::new(module, grants, backends, audit)
    }

    fn ctx(module: &Arc<KvModule>, limits: InvocationLimits) -> KvCtx {
        KvCtx::new(module.clone(), limits.max_output)
    }

    fn host<'a>(ctx: &'a mut KvCtx, table: &'a mut ResourceTable) -> KvHost<'a> {
        KvHost { ctx, table }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> KvHost<'_>,
    ) -> wasmtime::Result<()> {
        host::add_to_linker(linker, get)
    }
}
