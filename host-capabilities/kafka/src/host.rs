//! The guest-facing `warden:host/kafka` interface.

use std::collections::BTreeMap;
use std::sync::Arc;

use warden_capability::{AuditSink, CapabilityError, Granted, HostOf, ModuleGrants};
use wasmtime::component::{Linker, Resource, ResourceTable};

use crate::Kafka;
use crate::backend::{KafkaBackend, KafkaBackends};
use crate::grant::KafkaGrant;
use crate::limits::{Outgoing, check_batch, check_topic};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "warden:host/kafka-capability",
        imports: { default: async | trappable },
        with: {
            "warden:host/types": warden_capability::wit::types,
            "warden:host/kafka.producer": super::Producer,
        },
    });
}

use bindings::warden::host::kafka::{self as wit, Outgoing as WitOutgoing, Receipt};
use warden_capability::wit::types::Error as WitError;

/// A module's Kafka grants, resolved when it is loaded.
pub struct KafkaModule {
    grants: ModuleGrants<KafkaGrant, KafkaBackend>,
}

type ModuleGrant = Granted<KafkaGrant, KafkaBackend>;

impl KafkaModule {
    pub fn new(
        module: &str,
        grants: &BTreeMap<String, KafkaGrant>,
        backends: &KafkaBackends,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, String> {
        let grants = ModuleGrants::new(
            module,
            "kafka",
            grants,
            |g| g.backend.as_str(),
            |id| backends.get(id),
            audit,
        )?;
        Ok(Self { grants })
    }

    fn deny(&self, detail: String) -> CapabilityError {
        self.grants.deny(detail)
    }

    /// Checks a send against the grant and the caps, then sends.
    async fn send(
        &self,
        grant: &ModuleGrant,
        topic: &str,
        records: &[Outgoing],
    ) -> Result<Vec<(i32, i64)>, CapabilityError> {
        check_topic(topic)?;
        if !grant.grant.may_produce(topic) {
            return Err(self.deny(format!(
                "topic {topic:?} is not in grants.kafka.{}.produce",
                grant.name
            )));
        }
        check_batch(records)?;
        grant.backend.send(topic, records).await
    }
}

/// Per-invocation Kafka state, kept in the store.
pub struct KafkaCtx {
    module: Arc<KafkaModule>,
}

impl KafkaCtx {
    pub fn new(module: Arc<KafkaModule>) -> Self {
        Self { module }
    }
}

/// The guest's `producer` handle.
pub struct Producer {
    grant: Arc<ModuleGrant>,
}

/// What the `warden:host/kafka` host functions run on.
pub struct KafkaHost<'a> {
    pub ctx: &'a mut KafkaCtx,
    pub table: &'a mut ResourceTable,
}

pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> KafkaHost<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HostOf<Kafka>>(linker, get)
}

fn outgoing(r: WitOutgoing) -> Outgoing {
    Outgoing {
        key: r.key,
        payload: r.payload,
        headers: r.headers,
    }
}

fn receipt((partition, offset): (i32, i64)) -> Receipt {
    Receipt { partition, offset }
}

impl wit::Host for KafkaHost<'_> {
    async fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Producer>, WitError>> {
        match self.ctx.module.grants.open(&name) {
            Ok(grant) => Ok(Ok(self.table.push(Producer { grant })?)),
            Err(e) => Ok(Err(e.into())),
        }
    }
}

impl wit::HostProducer for KafkaHost<'_> {
    async fn send(
        &mut self,
        this: Resource<Producer>,
        topic: String,
        message: WitOutgoing,
    ) -> wasmtime::Result<Result<Receipt, WitError>> {
        let grant = self.table.get(&this)?.grant.clone();
        let records = [outgoing(message)];
        Ok(self
            .ctx
            .module
            .send(&grant, &topic, &records)
            .await
            .map(|r| receipt(r[0]))
            .map_err(Into::into))
    }

    async fn send_batch(
        &mut self,
        this: Resource<Producer>,
        topic: String,
        records: Vec<WitOutgoing>,
    ) -> wasmtime::Result<Result<Vec<Receipt>, WitError>> {
        let grant = self.table.get(&this)?.grant.clone();
        let records: Vec<_> = records.into_iter().map(outgoing).collect();
        Ok(self
            .ctx
            .module
            .send(&grant, &topic, &records)
            .await
            .map(|r| r.into_iter().map(receipt).collect())
            .map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<Producer>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
