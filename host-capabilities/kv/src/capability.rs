//! KV (Redis) on the runtime's [`Capability`] seam.

use std::collections::BTreeMap;
use std::sync::Arc;

use warden_capability::{
    AuditSink, Capability, InvocationLimits, grant_names, named_backend_ids, named_check, url_host,
};
use wasmtime::component::{Linker, ResourceTable};

use crate::backend::{KvBackendConfig, KvBackendStatus, KvBackends};
use crate::host::KvGrant;
use crate::host::{self, KvCtx, KvHost, KvModule};

/// `warden:host/kv`: stores confined to a `[grants.kv.<name>]` key prefix.
pub struct Kv;

impl Capability for Kv {
    const KIND: &'static str = "kv";
    const INTERFACES: &'static [&'static str] = &["kv"];
    const GRANT: &'static str = "[grants.kv.<name>]";
    type Grants = BTreeMap<String, KvGrant>;
    type Config = BTreeMap<String, KvBackendConfig>;
    type Backends = KvBackends;
    type Module = KvModule;
    type Ctx = KvCtx;
    type Host<'a> = KvHost<'a>;
    type Status = KvBackendStatus;
    type Summary = Vec<String>;

    fn is_granted(grants: &Self::Grants) -> bool {
        !grants.is_empty()
    }

    fn check(grants: &Self::Grants) -> Vec<(String, String)> {
        named_check(grants)
    }

    fn summary(grants: &Self::Grants) -> Vec<String> {
        grant_names(grants)
    }

    fn backend_ids(grants: &Self::Grants) -> Vec<(String, String)> {
        named_backend_ids(grants)
    }

    fn backends(config: &Self::Config) -> Result<KvBackends, String> {
        KvBackends::new(config)
    }

    fn status(backends: &KvBackends) -> Vec<KvBackendStatus> {
        backends.status()
    }

    fn backend_hosts(config: &Self::Config) -> Vec<String> {
        config.values().filter_map(|c| url_host(&c.url)).collect()
    }

    fn resolve(
        module: &str,
        grants: &Self::Grants,
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
