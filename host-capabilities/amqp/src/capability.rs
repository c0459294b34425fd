//! AMQP on the runtime's [`Capability`] seam.

use std::collections::BTreeMap;
use std::sync::Arc;

use warden_capability::{
    AuditSink, Capability, InvocationLimits, grant_names, named_backend_ids, named_check, url_host,
};
use wasmtime::component::{Linker, ResourceTable};

use crate::backend::{AmqpBackendConfig, AmqpBackendStatus, AmqpBackends};
use crate::grant::AmqpGrant;
use crate::host::{self, AmqpCtx, AmqpHost, AmqpModule};

/// `warden:host/amqp`: channels limited to `[grants.amqp.<name>]` exchanges and queues.
pub struct Amqp;

impl Capability for Amqp {
    const KIND: &'static str = "amqp";
    const INTERFACES: &'static [&'static str] = &["amqp"];
    const GRANT: &'static str = "[grants.amqp.<name>]";
    type Grants = BTreeMap<String, AmqpGrant>;
    type Config = BTreeMap<String, AmqpBackendConfig>;
    type Backends = AmqpBackends;
    type Module = AmqpModule;
    type Ctx = AmqpCtx;
    type Host<'a> = AmqpHost<'a>;
    type Status = AmqpBackendStatus;
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

    fn backends(config: &Self::Config) -> Result<AmqpBackends, String> {
        AmqpBackends::new(config)
    }

    fn status(backends: &AmqpBackends) -> Vec<AmqpBackendStatus> {
        backends.status()
    }

    fn backend_hosts(config: &Self::Config) -> Vec<String> {
        config.values().filter_map(|c| url_host(&c.url)).collect()
    }

    fn resolve(
        module: &str,
        grants: &Self::Grants,
        backends: &AmqpBackends,
        audit: Arc<dyn AuditSink>,
    ) -> Result<AmqpModule, String> {
        AmqpModule::new(module, grants, backends, audit)
    }

    fn ctx(module: &Arc<AmqpModule>, _: InvocationLimits) -> AmqpCtx {
        AmqpCtx::new(module.clone())
    }

    fn host<'a>(ctx: &'a mut AmqpCtx, table: &'a mut ResourceTable) -> AmqpHost<'a> {
        AmqpHost { ctx, table }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> AmqpHost<'_>,
    ) -> wasmtime::Result<()> {
        host::add_to_linker(linker, get)
    }
}
