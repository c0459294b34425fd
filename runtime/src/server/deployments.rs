//! The modules this node serves right now. Each has a state and, while it
//! can serve, its active version loaded. Activating another version swaps
//! the pointer: new invocations take the new version, invocations already
//! running keep their `Arc` to the old one and finish on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwapOption;

use super::registry::ModuleState;
use crate::module::LoadedModule;

pub struct Deployed {
    pub name: String,
    state: RwLock<ModuleState>,
    current: ArcSwapOption<Version>,
    /// Failed invocations in a row; reset by a success or an activation.
    failures: AtomicU32,
    /// Events queued for this module and not yet handled (see `bus`).
    pub backlog: Arc<tokio::sync::Semaphore>,
    /// The version that could not be loaded here, if any.
    load_failed: Mutex<Option<String>>,
    /// Held while a cron run is in progress: runs of one module never overlap.
    pub cron_running: Arc<tokio::sync::Mutex<()>>,
}

/// A loaded version of a module.
pub struct Version {
    pub version: String,
    pub module: LoadedModule,
}

impl Deployed {
    pub fn state(&self) -> ModuleState {
        *self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_state(&self, state: ModuleState) {
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// The version new invocations should go to, if the module is active.
    pub fn serving(&self) -> Option<Arc<Version>> {
        (self.state() == ModuleState::Active)
            .then(|| self.current.load_full())
            .flatten()
    }

    pub fn current(&self) -> Option<Arc<Version>> {
        self.current.load_full()
    }

    /// Installs `version`, returning the one it replaces.
    pub fn swap(&self, version: Option<Arc<Version>>) -> Option<Arc<Version>> {
        self.failures.store(0, Ordering::Relaxed);
        *self.load_failed.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.current.swap(version)
    }

    /// True when loading `version` failed before on this node.
    pub fn load_failed(&self, version: &str) -> bool {
        self.load_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
            == Some(version)
    }

    pub fn set_load_failed(&self, version: &str) {
        *self.load_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(version.to_string());
    }

    /// Counts one failed invocation; true when this one reached `threshold`.
    pub fn failed_once(&self, threshold: u32) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed) + 1 == threshold
    }

    pub fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct Deployments {
    modules: RwLock<HashMap<String, Arc<Deployed>>>,
}

impl Deployments {
    pub fn get(&self, name: &str) -> Option<Arc<Deployed>> {
        self.read().get(name).cloned()
    }

    /// The entry for `name`, created in `state` when missing.
    pub fn entry(&self, name: &str, state: ModuleState) -> Arc<Deployed> {
        let mut map = self.modules.write().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Deployed {
                    name: name.to_string(),
                    state: RwLock::new(state),
                    current: ArcSwapOption::empty(),
                    failures: AtomicU32::new(0),
                    cron_running: Arc::default(),
                    load_failed: Mutex::default(),
                    backlog: Arc::new(tokio::sync::Semaphore::new(super::bus::BACKLOG)),
                })
            })
            .clone()
    }

    pub fn remove(&self, name: &str) -> Option<Arc<Deployed>> {
        self.modules
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
    }

    pub fn all(&self) -> Vec<Arc<Deployed>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The active module whose `[http] route` is the longest prefix of
    /// `path` (on a segment boundary).
    pub fn route(&self, path: &str) -> Option<(Arc<Deployed>, Arc<Version>)> {
        let map = self.read();
        let mut best: Option<(usize, Arc<Deployed>, Arc<Version>)> = None;
        for deployed in map.values() {
            let Some(version) = deployed.serving() else {
                continue;
            };
            let Some(route) = version.module.manifest().http.as_ref().map(|h| &h.route) else {
                continue;
            };
            if route_matches(route, path)
                && best.as_ref().is_none_or(|(len, ..)| route.len() > *len)
            {
                best = Some((route.len(), deployed.clone(), version));
            }
        }
        best.map(|(_, d, v)| (d, v))
    }

    /// A loaded module that owns `path` but does not serve now (paused, failed).
    pub fn resting(&self, path: &str) -> Option<(String, ModuleState)> {
        self.read().values().find_map(|d| {
            let state = d.state();
            let v = d.current()?;
            let route = &v.module.manifest().http.as_ref()?.route;
            (state != ModuleState::Active && route_matches(route, path))
                .then(|| (d.name.clone(), state))
        })
    }

    /// Another module that serves `route` already, if any.
    pub fn route_owner(&self, route: &str, except: &str) -> Option<String> {
        let map = self.read();
        map.values()
            .filter(|d| d.name != except && d.state() != ModuleState::Stopped)
            .find(|d| {
                d.current().is_some_and(|v| {
                    v.module
                        .manifest()
                        .http
                        .as_ref()
                        .is_some_and(|h| normalize(&h.route) == normalize(route))
                })
            })
            .map(|d| d.name.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Deployed>>> {
        self.modules.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn normalize(route: &str) -> &str {
    let trimmed = route.trim_end_matches('/');
    if trimmed.is_empty() { "/" } else { trimmed }
}

/// `/orders` matches `/orders`, `/orders/1` and `/orders?x`, not `/ordersx`.
pub fn route_matches(route: &str, path: &str) -> bool {
    let route = normalize(route);
    if route == "/" {
        return true;
    }
    match path.strip_prefix(route) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::route_matches;

    #[test]
    fn routes_match_on_segment_boundaries() {
        assert!(route_matches("/orders", "/orders"));
        assert!(route_matches("/orders", "/orders/1"));
        assert!(route_matches("/orders/", "/orders/1"));
        assert!(route_matches("/orders", "/orders?x=1"));
        assert!(!route_matches("/orders", "/ordersx"));
        assert!(!route_matches("/orders", "/order"));
        assert!(route_matches("/", "/anything"));
    }
}
