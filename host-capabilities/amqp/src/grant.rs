use serde::Deserialize;
use warden_capability::{check_globs, glob_matches};

/// `[grants.amqp.<name>]` of a module manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpGrant {
    /// The `[amqp.<id>]` backend of the host config.
    pub backend: String,
    /// `exchange/routing-key` globs the module may publish to (the default
    /// exchange is the empty name: `/queue`).
    #[serde(default)]
    pub publish: Vec<String>,
    /// Queue globs the module may take messages from (`get`, `[[subscribe]]`).
    #[serde(default)]
    pub consume: Vec<String>,
    /// Exchange and queue globs the module may declare and bind.
    #[serde(default)]
    pub declare: Vec<String>,
}

impl warden_capability::NamedGrant for AmqpGrant {
    fn backend(&self) -> &str {
        &self.backend
    }

    fn check(&self) -> Result<(), String> {
        for (key, globs) in [
            ("publish", &self.publish),
            ("consume", &self.consume),
            ("declare", &self.declare),
        ] {
            check_globs(globs).map_err(|e| format!("{key}: {e}"))?;
        }
        Ok(())
    }
}

impl AmqpGrant {
    pub fn may_publish(&self, exchange: &str, routing_key: &str) -> bool {
        let target = format!("{exchange}/{routing_key}");
        self.publish.iter().any(|g| glob_matches(g, &target))
    }

    pub fn may_consume(&self, queue: &str) -> bool {
        self.consume.iter().any(|g| glob_matches(g, queue))
    }

    pub fn may_declare(&self, name: &str) -> bool {
        self.declare.iter().any(|g| glob_matches(g, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_globs_cover_exchange_and_routing_key_together() {
        let g = AmqpGrant {
            backend: "r".into(),
            publish: vec!["orders/*".into(), "/work-q".into()],
            consume: vec!["work-q".into()],
            declare: vec!["orders-*".into()],
        };
        assert!(g.may_publish("orders", "created.eu"));
        assert!(!g.may_publish("orders2", "x"));
        // The default exchange reaches a queue by name: only the granted one.
        assert!(g.may_publish("", "work-q"));
        assert!(!g.may_publish("", "other-q"));
        // A slash in a routing key does not let an exchange name widen it.
        assert!(!g.may_publish("ord", "ers/x"));
        assert!(g.may_consume("work-q") && !g.may_consume("work-q2"));
        assert!(g.may_declare("orders-dlx") && !g.may_declare("orders"));
    }
}
