//! Resolving a manifest's `[grants.<kind>.<name>]` against the host's
//! backends, once, when a module is loaded.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::{AuditSink, CapabilityError};

/// A grant with the shared backend it names.
pub struct Granted<G, B> {
    /// The grant's name in the manifest (what the guest passes to `open`).
    pub name: String,
    pub grant: G,
    pub backend: Arc<B>,
}

/// Every grant of one kind with its backend; a grant naming a backend the
/// host config lacks is an error naming both.
pub fn resolve_grants<G: Clone, B>(
    kind: &str,
    grants: &BTreeMap<String, G>,
    backend_of: impl Fn(&G) -> &str,
    lookup: impl Fn(&str) -> Option<Arc<B>>,
) -> Result<HashMap<String, Arc<Granted<G, B>>>, String> {
    grants
        .iter()
        .map(|(name, grant)| {
            let id = backend_of(grant);
            let backend = lookup(id).ok_or_else(|| {
                format!("grants.{kind}.{name}.backend: no [{kind}.{id}] in the host config")
            })?;
            let granted = Granted {
                name: name.clone(),
                grant: grant.clone(),
                backend,
            };
            Ok((name.clone(), Arc::new(granted)))
        })
        .collect()
}

/// One module's grants of one capability, resolved when it is loaded,
/// with the audit sink its denials go to.
pub struct ModuleGrants<G, B> {
    module: String,
    kind: &'static str,
    grants: HashMap<String, Arc<Granted<G, B>>>,
    audit: Arc<dyn AuditSink>,
}

impl<G: Clone, B> ModuleGrants<G, B> {
    pub fn new(
        module: &str,
        kind: &'static str,
        grants: &BTreeMap<String, G>,
        backend_of: impl Fn(&G) -> &str,
        lookup: impl Fn(&str) -> Option<Arc<B>>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, String> {
        Ok(Self {
            module: module.to_string(),
            kind,
            grants: resolve_grants(kind, grants, backend_of, lookup)?,
            audit,
        })
    }

    /// The grant a guest `open`s by name; a name the manifest does not
    /// grant is an audited denial.
    pub fn open(&self, name: &str) -> Result<Arc<Granted<G, B>>, CapabilityError> {
        self.grants
            .get(name)
            .cloned()
            .ok_or_else(|| self.deny(format!("{} grant {name:?} not in manifest", self.kind)))
    }

    /// Records a refusal of this capability and returns the guest's error.
    pub fn deny(&self, detail: String) -> CapabilityError {
        self.audit.deny(&self.module, self.kind, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_naming_a_backend_the_host_lacks_is_refused_by_name() {
        let grants = BTreeMap::from([("ev".to_string(), "cluster-a".to_string())]);
        let host = |id: &str| (id == "cluster-a").then(|| Arc::new(id.to_string()));
        let ok = resolve_grants("kafka", &grants, |g| g.as_str(), host).unwrap();
        assert_eq!(ok["ev"].backend.as_str(), "cluster-a");
        let missing = BTreeMap::from([("ev".to_string(), "cluster-b".to_string())]);
        let err = resolve_grants("kafka", &missing, |g| g.as_str(), host)
            .err()
            .unwrap();
        assert_eq!(
            err,
            "grants.kafka.ev.backend: no [kafka.cluster-b] in the host config"
        );
    }
}
