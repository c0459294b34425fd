//! Kafka on the runtime's capability seam.

use std::collections::BTreeMap;
use std::sync::Arc;

use warden_capability::{AuditSink, BackendConfig, InvocationLimits, NamedCapability, unbracket};
use wasmtime::component::{Linker, ResourceTable};

use crate::backend::{KafkaBackend, KafkaBackends};
use crate::grant::KafkaGrant;
use crate::host::{self, KafkaCtx, KafkaHost, KafkaModule};

/// `warden:host/kafka`: producers limited to `[grants.kafka.<name>]` topics.
pub struct Kafka;

impl NamedCapability for Kafka {
    const KIND: &'static str = "kafka";
    const GRANT: &'static str = "[grants.kafka.<name>]";
    type Grant = KafkaGrant;
    type Backend = KafkaBackend;
    type Backends = KafkaBackends;
    type Module = KafkaModule;
    type Ctx = KafkaCtx;
    type Host<'a> = KafkaHost<'a>;

    fn backend_hosts(config: &BTreeMap<String, BackendConfig<Self>>) -> Vec<String> {
        let servers = config.values().flat_map(|c| c.bootstrap_servers.split(','));
        servers
            .filter_map(|b| {
                // `PLAINTEXT://host:port` is a spelling librdkafka accepts.
                let b = b.trim();
                let b = b.split_once("://").map_or(b, |(_, rest)| rest);
                let (host, _port) = b.rsplit_once(':')?;
                Some(unbracket(host))
            })
            .collect()
    }

    fn resolve(
        module: &str,
        grants: &BTreeMap<String, KafkaGrant>,
        backends: &KafkaBackends,
        audit: Arc<dyn AuditSink>,
    ) -> Result<KafkaModule, String> {
        KafkaModule::new(module, grants, backends, audit)
    }

    fn ctx(module: &Arc<KafkaModule>, _: InvocationLimits) -> KafkaCtx {
        KafkaCtx::new(module.clone())
    }

    fn host<'a>(ctx: &'a mut KafkaCtx, table: &'a mut ResourceTable) -> KafkaHost<'a> {
        KafkaHost { ctx, table }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> KafkaHost<'_>,
    ) -> wasmtime::Result<()> {
        host::add_to_linker(linker, get)
    }
}
