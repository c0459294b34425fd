//! A capability's shared backends by id: built once at start-up from its
//! host-config section (`[<kind>.<id>]`) and shared by every module granted
//! one of them.

use std::collections::BTreeMap;
use std::sync::Arc;

/// One shared backend of a capability (a pool, a producer, a connection).
pub trait Backend: Sized {
    /// Its entry in the host config.
    type Config;
    /// What `/v1/backends` and the metrics show of it.
    type Status;
    /// Builds backend `id`; the error names the entry (`kv.cache: …`).
    fn new(id: &str, config: &Self::Config) -> Result<Self, String>;
    fn status(&self) -> Self::Status;
}

/// Every backend of one capability, by id.
pub struct BackendSet<B> {
    backends: BTreeMap<String, Arc<B>>,
}

impl<B> Default for BackendSet<B> {
    fn default() -> Self {
        Self {
            backends: BTreeMap::new(),
        }
    }
}

impl<B> Clone for BackendSet<B> {
    fn clone(&self) -> Self {
        Self {
            backends: self.backends.clone(),
        }
    }
}

impl<B> AsRef<BackendSet<B>> for BackendSet<B> {
    fn as_ref(&self) -> &Self {
        self
    }
}

impl<B: Backend> BackendSet<B> {
    /// One backend per entry of `configs`; the first error stops it.
    pub fn new(configs: &BTreeMap<String, B::Config>) -> Result<Self, String> {
        let backends = configs
            .iter()
            .map(|(id, config)| Ok((id.clone(), Arc::new(B::new(id, config)?))))
            .collect::<Result<_, String>>()?;
        Ok(Self { backends })
    }

    /// Their status, ordered by id.
    pub fn status(&self) -> Vec<B::Status> {
        self.backends.values().map(|b| b.status()).collect()
    }
}

impl<B> BackendSet<B> {
    pub fn get(&self, id: &str) -> Option<Arc<B>> {
        self.backends.get(id).cloned()
    }

    /// Every backend, ordered by id.
    pub fn all(&self) -> Vec<Arc<B>> {
        self.backends.values().cloned().collect()
    }

    /// `(id, backend)` pairs, ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<B>)> {
        self.backends.iter().map(|(id, b)| (id.as_str(), b))
    }
}

#[cfg(test)]
mod tests {
    use super::{Backend, BackendSet};
    use std::collections::BTreeMap;

    struct Echo(String);

    impl Backend for Echo {
        type Config = String;
        type Status = String;
        fn new(id: &str, config: &String) -> Result<Self, String> {
            if config.is_empty() {
                return Err(format!("echo.{id}: empty"));
            }
            Ok(Echo(format!("{id}={config}")))
        }
        fn status(&self) -> String {
            self.0.clone()
        }
    }

    #[test]
    fn backends_are_built_per_entry_and_listed_by_id() {
        let configs = BTreeMap::from([("b".into(), "2".into()), ("a".into(), "1".into())]);
        let set = BackendSet::<Echo>::new(&configs).unwrap();
        assert_eq!(set.status(), ["a=1", "b=2"]);
        assert!(set.get("a").is_some() && set.get("c").is_none());
        let bad = BTreeMap::from([("x".into(), String::new())]);
        let err = BackendSet::<Echo>::new(&bad).err().unwrap();
        assert_eq!(err, "echo.x: empty");
    }
}
