//! The one list of the capabilities this warden is built with. The
//! manifest's `[grants]`, the host config's sections, the shared backends,
//! each module's resolved grants, the store's ctxs, the linker, the
//! contract check and the API's status are all generated from it.
//!
//! Adding a capability: a crate implementing
//! [`warden_capability::Capability`], one line below, its WIT world line and
//! its SDK module (ARCHITECTURE.md).

use std::sync::Arc;

use serde_json::{Map, Value};
use warden_capability::{AuditSink, Capability, InvocationLimits};
use wasmtime::component::Linker;

use crate::state::ModuleState;

/// Calls `$callback!` with `field: Type` for every capability; the field
/// is the capability's `KIND` (checked at compile time).
macro_rules! for_each_capability {
    ($callback:ident) => {
        $callback! {
            sql: warden_sql::Sql,
            kv: warden_kv::Kv,
            kafka: warden_kafka::Kafka,
            amqp: warden_amqp::Amqp,
            events: warden_events::Events,
        }
    };
}
pub(crate) use for_each_capability;

/// Whether two names are the same, at compile time.
pub(crate) const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

macro_rules! compose {
    ($($kind:ident: $cap:ty),* $(,)?) => {
        $(const _: () = assert!(
            same_name(stringify!($kind), <$cap as Capability>::KIND),
            "a capability's field must be its KIND",
        );)*

        /// The kinds of every capability, in the list's order.
        pub const KINDS: &[&str] = &[$(stringify!($kind)),*];

        /// The host's shared backends of every capability, built once from
        /// the host config and handed to every module that is loaded.
        #[derive(Default, Clone)]
        pub struct Backends {
            $(pub $kind: <$cap as Capability>::Backends,)*
        }

        impl Backends {
            /// Builds every backend; an invalid section is an error naming
            /// it. Nothing connects here: a service that is down does not
            /// stop the host.
            pub fn new(config: &crate::host_config::HostConfig) -> Result<Self, String> {
                let invalid = |e: String| format!("invalid host config: {e}");
                Ok(Self {
                    $($kind: <$cap>::backends(&config.$kind).map_err(invalid)?,)*
                })
            }

            /// Every backend's status by capability, for `/v1/backends`.
            pub fn status(&self) -> Value {
                let mut all = Map::new();
                $(all.insert(
                    stringify!($kind).into(),
                    serde_json::to_value(<$cap>::status(&self.$kind)).unwrap_or_default(),
                );)*
                Value::Object(all)
            }
        }

        /// One module's grants of every capability, resolved at load time.
        pub(crate) struct ModuleCapabilities {
            $($kind: Arc<<$cap as Capability>::Module>,)*
        }

        impl ModuleCapabilities {
            pub(crate) fn resolve(
                module: &str,
                grants: &crate::manifest::Grants,
                backends: &Backends,
                audit: &Arc<dyn AuditSink>,
            ) -> Result<Self, String> {
                Ok(Self {
                    $($kind: Arc::new(<$cap>::resolve(
                        module,
                        &grants.$kind,
                        &backends.$kind,
                        audit.clone(),
                    )?),)*
                })
            }

            /// Every capability's state for one invocation.
            pub(crate) fn ctxs(&self, limits: InvocationLimits) -> CapabilityCtxs {
                CapabilityCtxs {
                    $($kind: <$cap>::ctx(&self.$kind, limits),)*
                }
            }
        }

        /// What one store holds of every capability.
        pub(crate) struct CapabilityCtxs {
            $($kind: <$cap as Capability>::Ctx,)*
        }

        /// Adds every capability's host functions.
        pub(crate) fn add_to_linker(linker: &mut Linker<ModuleState>) -> wasmtime::Result<()> {
            $(<$cap>::add_to_linker(linker, |s: &mut ModuleState| {
                <$cap>::host(&mut s.caps.$kind, &mut s.table)
            })?;)*
            Ok(())
        }

        /// The capability providing `warden:host/<name>`, as how a manifest
        /// grants it and whether `grants` do; `None` for no capability's.
        pub(crate) fn provider(
            name: &str,
            grants: &crate::manifest::Grants,
        ) -> Option<(&'static str, bool)> {
            $(if <$cap as Capability>::INTERFACES.contains(&name) {
                return Some((<$cap>::GRANT, <$cap>::is_granted(&grants.$kind)));
            })*
            None
        }
    };
}

for_each_capability!(compose);

#[cfg(test)]
mod tests {
    use super::same_name;

    #[test]
    fn names_compare_by_every_byte() {
        assert!(same_name("kafka", "kafka"));
        assert!(!same_name("kafka", "kafkb"));
        assert!(!same_name("kv", "kvs"));
    }
}
