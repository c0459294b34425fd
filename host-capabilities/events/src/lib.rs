//! Events capability: `publish` through the bus the runtime provides
//! (in-process under `warden serve`), restricted to the topic globs of
//! `[grants.events] publish`.

use std::sync::Arc;

use serde::Deserialize;
use warden_capability::{AuditSink, CapabilityError, check_globs, glob_matches};
use wasmtime::component::{HasData, Linker};

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

impl EventsGrant {
    pub fn check(&self) -> Result<(), String> {
        check_globs(&self.publish)
    }
}

/// Where published events go. The server's bus delivers them to
/// subscribers; without a server there is no bus.
pub trait EventBus: Send + Sync {
    fn publish(&self, from: &str, topic: &str, payload: Vec<u8>) -> Result<(), CapabilityError>;
}

/// The bus of `warden run`: nothing subscribes, so publishing is refused.
pub struct NoBus;

impl EventBus for NoBus {
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

pub trait EventsView: Send {
    fn events(&mut self) -> &EventsModule;
}

struct EventsData;

impl HasData for EventsData {
    type Data<'a> = &'a EventsModule;
}

pub fn add_to_linker<T: EventsView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, EventsData>(linker, |t| t.events())
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
