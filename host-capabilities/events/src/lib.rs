//! Events capability: `publish` through the bus the runtime provides
//! (in-process under `warden serve`), restricted to the topic globs of
//! `[grants.events] publish`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use warden_capability::{
    AuditSink, Capability, CapabilityError, HostOf, InvocationLimits, NoConfig, check_globs,
    glob_matches,
};
use wasmtime::component::{Linker, ResourceTable};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "warden:host/events-capability",
        imports: { default: async | trappable },
        with: {
            "warden:host/types": warden_capability::wit::types,
        },
    });
}

use bindings::warden::host::events as wit;
use warden_capability::wit::types::Error as WitError;

/// Largest payload one event may carry.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// `[grants.events]` of a module manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsGrant {
    /// Topic globs this module may publish to.
    pub publish: Vec<String>,
}

/// Where published events go. The server's bus delivers them to
/// subscribers; without a server there is no bus.
pub trait EventBus: Send + Sync {
    /// What `/v1/backends` calls it (`in-process`, `none`).
    fn kind(&self) -> &'static str;
    fn publish(&self, from: &str, topic: &str, payload: Vec<u8>) -> Result<(), CapabilityError>;
}

/// The bus of `warden run`: nothing subscribes, so publishing is refused.
pub struct NoBus;

impl EventBus for NoBus {
    fn kind(&self) -> &'static str {
        "none"
    }

    fn publish(&self, _: &str, _: &str, _: Vec<u8>) -> Result<(), CapabilityError> {
        Err(CapabilityError::Unavailable(
            "events need `warden serve` (no event bus here)".into(),
        ))
    }
}

/// A module's events grant with the bus it publishes to.
pub struct EventsModule {
    module: String,
    grant: Option<EventsGrant>,
    bus: Arc<dyn EventBus>,
    audit: Arc<dyn AuditSink>,
}

impl EventsModule {
    pub fn new(
        module: &str,
        grant: Option<EventsGrant>,
        bus: Arc<dyn EventBus>,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        Self {
            module: module.to_string(),
            grant,
            bus,
            audit,
        }
    }

    pub fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), CapabilityError> {
        let allowed = self
            .grant
            .as_ref()
            .is_some_and(|g| g.publish.iter().any(|p| glob_matches(p, topic)));
        if !allowed {
            return Err(self.audit.deny(
                &self.module,
                "events",
                format!("publish to topic {topic:?} is not in grants.events.publish"),
            ));
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(CapabilityError::LimitExceeded(format!(
                "event payload of {} bytes is above {MAX_PAYLOAD}",
                payload.len()
            )));
        }
        self.bus.publish(&self.module, topic, payload)
    }
}

/// The bus modules publish to: the host's shared "backend" of events.
#[derive(Clone)]
pub struct EventsBackend {
    bus: Arc<dyn EventBus>,
}

impl EventsBackend {
    pub fn new(bus: Arc<dyn EventBus>) -> Self {
        Self { bus }
    }
}

impl Default for EventsBackend {
    fn default() -> Self {
        Self::new(Arc::new(NoBus))
    }
}

/// The events entry of `/v1/backends`.
#[derive(Debug, Clone, Serialize)]
pub struct EventsStatus {
    pub id: &'static str,
    pub kind: &'static str,
}

/// `warden:host/events`: publishing to `[grants.events] publish` topics.
pub struct Events;

impl Capability for Events {
    const KIND: &'static str = "events";
    const INTERFACES: &'static [&'static str] = &["events"];
    const GRANT: &'static str = "[grants.events]";
    type Grants = Option<EventsGrant>;
    type Config = NoConfig;
    type Backends = EventsBackend;
    type Module = EventsModule;
    type Ctx = Arc<EventsModule>;
    type Host<'a> = &'a EventsModule;
    type Status = EventsStatus;
    type Summary = Option<Vec<String>>;

    fn is_granted(grants: &Self::Grants) -> bool {
        grants.is_some()
    }

    fn check(grants: &Self::Grants) -> Vec<(String, String)> {
        let problem = grants.as_ref().and_then(|g| check_globs(&g.publish).err());
        problem
            .map(|e| ("publish".to_string(), e))
            .into_iter()
            .collect()
    }

    fn summary(grants: &Self::Grants) -> Option<Vec<String>> {
        grants.as_ref().map(|g| g.publish.clone())
    }

    fn backend_ids(_: &Self::Grants) -> Vec<(String, String)> {
        Vec::new()
    }

    fn backends(_: &NoConfig) -> Result<EventsBackend, String> {
        Ok(EventsBackend::default())
    }

    fn status(backend: &EventsBackend) -> Vec<EventsStatus> {
        let kind = backend.bus.kind();
        vec![EventsStatus { id: "bus", kind }]
    }

    fn backend_hosts(_: &NoConfig) -> Vec<String> {
        Vec::new()
    }

    fn resolve(
        module: &str,
        grants: &Self::Grants,
        backend: &EventsBackend,
        audit: Arc<dyn AuditSink>,
    ) -> Result<EventsModule, String> {
        let bus = backend.bus.clone();
        Ok(EventsModule::new(module, grants.clone(), bus, audit))
    }

    fn ctx(module: &Arc<EventsModule>, _: InvocationLimits) -> Arc<EventsModule> {
        module.clone()
    }

    fn host<'a>(ctx: &'a mut Arc<EventsModule>, _: &'a mut ResourceTable) -> &'a EventsModule {
        ctx
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &EventsModule,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HostOf<Events>>(linker, get)
    }
}

impl wit::Host for &EventsModule {
    async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), WitError>> {
        Ok(EventsModule::publish(self, &topic, payload).map_err(Into::into))
    }
}
