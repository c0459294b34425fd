//! Kafka on the runtime's [`Capability`] seam.

use std::collections::BTreeMap;
use std::sync::Arc;

use warden_capability::{
    AuditSink, Capability, InvocationLimits, grant_names, named_backend_ids, named_check, unbracket,
};
use wasmtime::component::{Linker, ResourceTable};

use crate::backend::{KafkaBackendConfig, KafkaBackendStatus, KafkaBackends};
use crate::grant::KafkaGrant;
use crate::host::{self, KafkaCtx, KafkaHost, KafkaModule};

/// `warden:host/kafka`: producers limited to `[grants.kafka.<name>]` topics.
pub struct Kafka;

impl Capability for Kafka {
    const KIND: &'static str = "kafka";
    const INTERFACES: &'static [&'static str] = &["kafka"];
    const GRANT: &'static str = "[grants.kafka.<name>]";
    type Grants = BTreeMap<String, KafkaGrant>;
    type Config = BTreeMap<String, KafkaBackendConfig>;
    type Backends = KafkaBackends;
    type Module = KafkaModule;
    type Ctx = KafkaCtx;
    type Host<'a> = KafkaHost<'a>;
    type Status = KafkaBackendStatus;
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

    fn backends(config: &Self::Config) -> Result<KafkaBackends, String> {
        KafkaBackends::new(config)
    }

    fn status(backends: &KafkaBackends) -> Vec<KafkaBackendStatus> {
        backends.status()
    }

    fn backend_hosts(config: &Self::Config) -> Vec<String> {
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
        grants: &Self::Grants,
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
