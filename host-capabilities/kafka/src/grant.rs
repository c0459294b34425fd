use serde::Deserialize;
use warden_capability::{check_globs, glob_matches};

/// `[grants.kafka.<name>]` of a module manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaGrant {
    /// The `[kafka.<id>]` backend of the host config.
    pub backend: String,
    /// Topic globs the module may send to.
    #[serde(default)]
    pub produce: Vec<String>,
    /// Topic globs the module's `[[subscribe]]` entries may consume.
    #[serde(default)]
    pub consume: Vec<String>,
}

impl warden_capability::NamedGrant for KafkaGrant {
    fn backend(&self) -> &str {
        &self.backend
    }

    fn check(&self) -> Result<(), String> {
        check_globs(&self.produce)
            .map_err(|e| format!("produce: {e}"))
            .and_then(|()| check_globs(&self.consume).map_err(|e| format!("consume: {e}")))
    }
}

impl KafkaGrant {
    pub fn may_produce(&self, topic: &str) -> bool {
        self.produce.iter().any(|g| glob_matches(g, topic))
    }

    pub fn may_consume(&self, topic: &str) -> bool {
        self.consume.iter().any(|g| glob_matches(g, topic))
    }
}
