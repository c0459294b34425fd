//! The modules this node serves right now. Each has a state and, while it
//! can serve, its active version loaded. Activating another version swaps
//! the pointer: new invocations take the new version, invocations already
//! running keep their `Arc` to the old one and finish on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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
    /// Held while the installed version changes (activation, sync), so one
    /// change is never loaded twice by racing paths.
    pub changing: tokio::sync::Mutex<()>,
    /// Held while a cron run is in progress: runs of one module never overlap.
    pub cron_running: Arc<tokio::sync::Mutex<()>>,
    /// State writes this node is making (API calls, the failure threshold)
    /// and the [`clock`] when the last one ended: a registry record read
    /// before then is stale and must not undo them.
    local_writes: AtomicU32,
    written_at: AtomicU64,
}

/// Logical time for ordering local state writes against registry reads.
static CLOCK: AtomicU64 = AtomicU64::new(0);

/// Take before reading a registry record to hand to [`Deployed::sync_state`].
pub fn clock() -> u64 {
    CLOCK.load(Ordering::SeqCst)
}

/// A local state write in progress (see [`Deployed::local_write`]).
pub struct LocalWrite<'a>(&'a Deployed);

impl Drop for LocalWrite<'_> {
    fn drop(&mut self) {
        let now = CLOCK.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.written_at.store(now, Ordering::SeqCst);
        self.0.local_writes.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A loaded version of a module.
pub struct Version {
    pub version: String,
    pub module: LoadedModule,
    /// Its `[[cron]]` schedules, parsed once (the manifest was validated).
    pub schedules: Vec<(String, croner::Cron)>,
}

impl Version {
    pub fn new(version: &str, module: LoadedModule) -> Self {
        let schedules = module
            .manifest()
            .cron
            .iter()
            .filter_map(|c| {
                Some((
                    c.schedule.clone(),
                    crate::manifest::schedule::parse_schedule(&c.schedule).ok()?,
                ))
            })
            .collect();
        Self {
            version: version.to_string(),
            module,
            schedules,
        }
    }
}

impl Deployed {
    pub fn state(&self) -> ModuleState {
        *self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_state(&self, state: ModuleState) {
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// Marks a state change this node makes (registry and local state)
    /// until the guard drops.
    pub fn local_write(&self) -> LocalWrite<'_> {
        self.local_writes.fetch_add(1, Ordering::SeqCst);
        LocalWrite(self)
    }

    /// Applies a state read from the registry at `read_at` unless a local
    /// write is in progress or ended after it. Checked under the state lock:
    /// a write that starts meanwhile sets its state after this one.
    pub fn sync_state(&self, state: ModuleState, read_at: u64) {
        let mut current = self.state.write().unwrap_or_else(|p| p.into_inner());
        if self.local_writes.load(Ordering::SeqCst) == 0
            && self.written_at.load(Ordering::SeqCst) <= read_at
        {
            *current = state;
        }
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

    /// Installs `version`, returning the one it replaces (through
    /// [`Deployments::install`], which keeps the indexes in step).
    fn swap(&self, version: Option<Arc<Version>>) -> Option<Arc<Version>> {
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

/// Where a request path goes.
pub enum Routed {
    /// The active module owning the longest matching route, and its version.
    Serving(Arc<Deployed>, Arc<Version>),
    /// The owner is loaded but not serving (paused, failed).
    Resting(Arc<Deployed>),
    NotFound,
}

/// Every module known to this node, plus indexes kept in step with what is
/// installed, so a request or an event finds its module without a scan.
#[derive(Default)]
pub struct Deployments {
    modules: RwLock<HashMap<String, Arc<Deployed>>>,
    /// Normalized `[http] route` → the module whose installed version has it.
    routes: RwLock<HashMap<String, Arc<Deployed>>>,
    /// Event topic → modules whose installed version subscribes to it.
    topics: RwLock<HashMap<String, Vec<Arc<Deployed>>>>,
    /// Bumped by every install: watchers (consumers) skip work when unchanged.
    generation: AtomicU64,
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
                    changing: tokio::sync::Mutex::default(),
                    load_failed: Mutex::default(),
                    backlog: Arc::new(tokio::sync::Semaphore::new(super::bus::BACKLOG)),
                    local_writes: AtomicU32::new(0),
                    written_at: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// Makes `version` the installed one of `deployed` (None: unload) and
    /// updates the indexes; returns the version it replaces.
    pub fn install(
        &self,
        deployed: &Arc<Deployed>,
        version: Option<Arc<Version>>,
    ) -> Option<Arc<Version>> {
        self.generation.fetch_add(1, Ordering::Relaxed);
        let (new_route, new_topics) = keys(version.as_deref());
        let old = deployed.swap(version);
        let (old_route, old_topics) = keys(old.as_deref());
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = old_route
            && routes.get(&r).is_some_and(|d| Arc::ptr_eq(d, deployed))
        {
            routes.remove(&r);
        }
        if let Some(r) = new_route {
            routes.insert(r, deployed.clone());
        }
        drop(routes);
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        for t in old_topics {
            if let Some(subs) = topics.get_mut(&t) {
                subs.retain(|d| !Arc::ptr_eq(d, deployed));
                if subs.is_empty() {
                    topics.remove(&t);
                }
            }
        }
        for t in new_topics {
            let subs = topics.entry(t).or_default();
            if !subs.iter().any(|d| Arc::ptr_eq(d, deployed)) {
                subs.push(deployed.clone());
            }
        }
        old
    }

    /// Forgets a module (and unloads it); returns the version it had.
    pub fn remove(&self, name: &str) -> Option<Arc<Version>> {
        let deployed = self
            .modules
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)?;
        self.install(&deployed, None)
    }

    pub fn all(&self) -> Vec<Arc<Deployed>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The module whose route is the longest prefix of `path` on a segment
    /// boundary: one lookup per path segment.
    pub fn route(&self, path: &str) -> Routed {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        let owner = prefixes(path).find_map(|prefix| routes.get(prefix).cloned());
        drop(routes);
        match owner {
            None => Routed::NotFound,
            Some(d) => match d.serving() {
                Some(v) => Routed::Serving(d, v),
                None => Routed::Resting(d),
            },
        }
    }

    /// Changes whenever an installed version changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Modules subscribed to event `topic`.
    pub fn subscribers(&self, topic: &str) -> Vec<Arc<Deployed>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.get(topic).cloned().unwrap_or_default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Deployed>>> {
        self.modules.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// The index keys of a version: its route and its event topics.
fn keys(version: Option<&Version>) -> (Option<String>, Vec<String>) {
    let Some(v) = version else {
        return (None, Vec::new());
    };
    let manifest = v.module.manifest();
    let route = manifest
        .http
        .as_ref()
        .map(|h| normalize(&h.route).to_string());
    let topics = manifest
        .subscribe
        .iter()
        .filter(|s| s.source == super::bus::SOURCE)
        .map(|s| s.topic.clone())
        .collect();
    (route, topics)
}

/// `/a/b/c` → `/a/b/c`, `/a/b`, `/a`, `/`: the routes that may own it,
/// longest first.
fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    let path = normalize(path);
    let cuts = path
        .match_indices('/')
        .map(|(i, _)| i)
        .filter(|&i| i > 0)
        .rev();
    std::iter::once(path)
        .chain(cuts.map(move |i| &path[..i]))
        .chain((path != "/").then_some("/"))
}

/// A route without its trailing slashes (`/` stays `/`).
pub fn normalize(route: &str) -> &str {
    let trimmed = route.trim_end_matches('/');
    if trimmed.is_empty() { "/" } else { trimmed }
}

#[cfg(test)]
mod tests {
    use super::{Deployments, ModuleState, clock, prefixes};

    #[test]
    fn a_registry_read_from_before_a_local_state_change_does_not_undo_it() {
        let d = Deployments::default().entry("m", ModuleState::Active);
        let before = clock();
        {
            // The failure threshold marks the module failed; the registry
            // write has not finished when the sync applies its older read.
            let _write = d.local_write();
            d.set_state(ModuleState::Failed);
            d.sync_state(ModuleState::Active, before);
            d.sync_state(ModuleState::Active, clock());
            assert_eq!(d.state(), ModuleState::Failed);
        }
        d.sync_state(ModuleState::Active, before);
        assert_eq!(
            d.state(),
            ModuleState::Failed,
            "read before the write ended"
        );
        d.sync_state(ModuleState::Active, clock());
        assert_eq!(d.state(), ModuleState::Active, "a later read applies");
    }

    #[test]
    fn a_path_is_owned_by_routes_on_segment_boundaries_longest_first() {
        let all = |p| prefixes(p).collect::<Vec<_>>();
        assert_eq!(
            all("/orders/1/items"),
            ["/orders/1/items", "/orders/1", "/orders", "/"]
        );
        assert_eq!(all("/orders/"), ["/orders", "/"]);
        assert_eq!(all("/ordersx"), ["/ordersx", "/"]);
        assert_eq!(all("/"), ["/"]);
    }
}
