//! AMQP on the runtime's capability seam.

use std::collections::BTreeMap;
use std::sync::Arc;

use warden_capability::{AuditSink, BackendConfig, InvocationLimits, NamedCapability, url_host};
use wasmtime::component::{Linker, ResourceTable};

use crate::backend::{AmqpBackend, AmqpBackends};
use crate::grant::AmqpGrant;
use crate::host::{self, AmqpCtx, AmqpHost, AmqpModule};

/// `warden:host/amqp`: channels limited to `[grants.amqp.<name>]` exchanges and queues.
pub struct Amqp;

impl NamedCapability for Amqp {
    const KIND: &'static str = "amqp";
    const GRANT: &'static str = "[grants.amqp.<name>]";
    type Grant = AmqpGrant;
    type Backend = AmqpBackend;
    type Backends = AmqpBackends;
    type Module = AmqpModule;
    type Ctx = AmqpCtx;
    type Host<'a> = AmqpHost<'a>;

    fn backend_hosts(config: &BTreeMap<String, BackendConfig<Self>>) -> Vec<String> {
        config.values().filter_map(|c| url_host(&c.url)).collect()
    }

    fn resolve(
        module: &str,
        grants: &BTreeMap<String, AmqpGrant>,
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
