//! One `warden serve` process: the registry is the source of truth, the node
//! loads what it says into [`Deployments`] and keeps them in step
//! (`reconcile`), so a change made through any node reaches every node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::capabilities::Backends;
use warden_fs::HostPaths;
use wasmtime::component::Linker;

use super::audit::AuditLog;
use super::deployments::{self, Deployed, Deployments, Version};
use super::metrics::{Metrics, outcome};
use super::registry::{ModuleRecord, ModuleState, NewAudit, Registry, RegistryError, Uploader};
use crate::engine::WardenEngine;
use crate::error::{LoadError, RunError};
use crate::host_config::ServerConfig;
use crate::lifecycle::Hook;
use crate::limits::Limits;
use crate::manifest::Manifest;
use crate::module::{LoadContext, LoadedModule, Output, Stdio};
use crate::state::ModuleState as StoreState;

/// Captured stdout/stderr per invocation (logged, not returned).
const CAPTURE: usize = 64 << 10;

/// Why a management operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The request is wrong; every problem found is listed.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    /// The caller's token may not do this (scope, quota).
    #[error("{0}")]
    Forbidden(String),
}

impl From<RegistryError> for NodeError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(m) => NodeError::NotFound(m),
            RegistryError::Conflict(m) => NodeError::Conflict(m),
            RegistryError::Unavailable(m) => NodeError::Unavailable(m),
            RegistryError::Quota(m) => NodeError::Forbidden(m),
        }
    }
}

/// What the engine needs to load modules on this node.
pub struct Host {
    pub engine: WardenEngine,
    pub linker: Linker<StoreState>,
    pub backends: Backends,
    /// `[fs] roots`: the directories `[grants.fs]` may name paths beneath.
    pub fs_roots: BTreeMap<String, PathBuf>,
    /// Every configured backend's host, which scoped tokens' `[grants.net]`
    /// may not name.
    pub backend_hosts: Vec<String>,
    /// Their addresses (resolved at start-up), which scoped tokens' modules
    /// may not reach through any granted name.
    pub backend_addrs: Arc<[std::net::IpAddr]>,
}

pub struct Node {
    pub config: ServerConfig,
    pub registry: Registry,
    pub deployments: Deployments,
    pub metrics: Arc<Metrics>,
    pub audit: AuditLog,
    pub host: Host,
    /// The in-process event bus modules publish to.
    pub bus: Arc<dyn warden_events::EventBus>,
    /// Message triggers on Kafka, AMQP and Redis.
    pub consumers: super::consumers::Consumers,
    /// Bounds the compilations running at once.
    pub compile_gate: CompileGate,
}

/// Compilations at once (`server.compile-concurrency`), and how many uploads
/// may wait for one: waiting costs no thread, and beyond the bound an
/// upload is refused as busy instead of queuing memory.
pub struct CompileGate {
    slots: Arc<tokio::sync::Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
}

/// Uploads that may wait for a compile slot.
const UPLOADS_WAITING: usize = 8;
/// How long an upload waits for one.
const UPLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl CompileGate {
    pub fn new(concurrent: usize) -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(concurrent.max(1))),
            waiting: Default::default(),
        }
    }

    /// A slot for an upload: waits among at most [`UPLOADS_WAITING`].
    async fn for_upload(&self) -> Result<tokio::sync::OwnedSemaphorePermit, NodeError> {
        use std::sync::atomic::Ordering;
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        let busy = || {
            NodeError::Unavailable(
                "busy: the host is compiling as many uploads as it may; try again shortly".into(),
            )
        };
        // Counted while waiting, and uncounted on drop too: an upload whose
        // client goes away stops waiting without leaving the count behind.
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let waiting = Waiting(&self.waiting);
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= UPLOADS_WAITING {
            return Err(busy());
        }
        let got = tokio::time::timeout(UPLOAD_WAIT, self.slots.clone().acquire_owned()).await;
        drop(waiting);
        match got {
            Ok(Ok(p)) => Ok(p),
            _ => Err(busy()),
        }
    }

    /// A slot for loading a stored version (activation, sync): it waits.
    async fn for_load(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }
}

/// The result of an upload.
#[derive(Debug)]
pub struct Uploaded {
    pub module: String,
    pub version: String,
    pub sha256: String,
    /// False when this exact version was stored already.
    pub stored: bool,
}

/// A management state change.
#[derive(Debug, Clone, Copy)]
pub enum Transition {
    Pause,
    Resume,
    Stop,
}

impl Node {
    /// `confined`: the module of a scoped token, whose network grants
    /// reach only the outside world.
    fn load(
        &self,
        bytes: &[u8],
        manifest: Manifest,
        confined: bool,
    ) -> Result<LoadedModule, LoadError> {
        let version = manifest.module.version.clone();
        let cx = LoadContext {
            engine: &self.host.engine,
            linker: &self.host.linker,
            host_paths: HostPaths::Roots(self.host.fs_roots.clone()),
            defaults: &Limits::default(),
            audit: self.audit.for_version(&version),
            backends: &self.host.backends,
            outside_only: confined.then(|| self.host.backend_addrs.clone()),
        };
        let mut module = LoadedModule::load(&cx, bytes, manifest)?;
        module.set_stdio(Stdio::Capture(CAPTURE));
        Ok(module)
    }

    /// Validates everything a later activation needs, then stores the
    /// version. Nothing is stored when anything is wrong. Returns the loaded
    /// module too, so an activation right after needs no second load.
    pub async fn upload(
        &self,
        bytes: &[u8],
        manifest_text: &str,
        caller: &super::auth::Caller,
    ) -> Result<(Uploaded, LoadedModule), NodeError> {
        let manifest = match parse_manifest(manifest_text).await {
            Ok(m) => m,
            Err(problems) => {
                // Report the component's own problems in the same answer,
                // as far as they show without compiling (nothing is
                // compiled for a manifest that cannot be stored).
                // Parsing a large component takes a while: keep this
                // worker's other tasks moving.
                let mut problems = problems;
                if let Err(e) = tokio::task::block_in_place(|| self.host.engine.check(bytes)) {
                    problems.push(e.to_string());
                }
                return Err(NodeError::Invalid(problems));
            }
        };
        let (name, version) = (
            manifest.module.name.clone(),
            manifest.module.version.clone(),
        );
        // Before compiling: a token cannot make the host work for a module
        // it may not deploy, nor store past its quota.
        let refusals = caller.refusals(&manifest, &self.host.backend_hosts);
        if !refusals.is_empty() {
            return Err(NodeError::Forbidden(refusals.join("; ")));
        }
        // The same version with the same component costs nothing more (the
        // registry tells an identical re-upload from a changed manifest);
        // other bytes under a stored version are checked, so a token over
        // its quota cannot make the host compile for a conflict.
        let stored = match self.registry.version(&name, &version).await {
            Ok(v) => {
                use sha2::Digest as _;
                let sha256 = tokio::task::block_in_place(|| sha2::Sha256::digest(bytes));
                hex::encode(sha256) == v.sha256
            }
            Err(_) => false,
        };
        if let Some(quota) = caller.quota
            && !stored
        {
            let used = self.registry.stored_by(&caller.name).await?;
            let needed = (bytes.len() + manifest_text.len()) as u64;
            if used + needed > quota {
                return Err(NodeError::Forbidden(super::registry::quota_message(
                    &caller.name,
                    used,
                    quota,
                    needed,
                )));
            }
        }
        // Compiling takes a while: keep this worker's other tasks moving.
        let _slot = self.compile_gate.for_upload().await?;
        let confined = caller.is_scoped();
        let module = tokio::task::block_in_place(|| self.load(bytes, manifest, confined));
        let module = module.map_err(|e| match e {
            LoadError::Manifest(p) | LoadError::Contract(p) => NodeError::Invalid(p),
            LoadError::Invalid(m) => NodeError::Invalid(vec![format!("invalid component: {m}")]),
            LoadError::Host(m) => NodeError::Invalid(vec![m]),
        })?;
        let sha256 = module.sha256().to_string();
        let stored = self
            .registry
            .put_version(
                &name,
                &version,
                &sha256,
                manifest_text,
                bytes,
                Some(&Uploader {
                    token: &caller.name,
                    quota: caller.quota,
                }),
            )
            .await?;
        if stored {
            self.audit.record(NewAudit {
                module: name.clone(),
                version: Some(version.clone()),
                kind: "upload".into(),
                rule: "api".into(),
                detail: format!("stored version {version} (sha256 {sha256})"),
            });
        }
        let uploaded = Uploaded {
            module: name,
            version,
            sha256,
            stored,
        };
        Ok((uploaded, module))
    }

    /// Makes a stored `version` the one new invocations get (hot swap when
    /// another version is active: in-flight invocations finish on the old one).
    pub async fn activate(&self, name: &str, version: &str) -> Result<(), NodeError> {
        let module = self.load_version(name, version).await?;
        self.install(name, version, module).await
    }

    /// [`Node::activate`] for a module [`Node::upload`] just loaded.
    pub async fn activate_uploaded(
        &self,
        uploaded: &Uploaded,
        module: LoadedModule,
    ) -> Result<(), NodeError> {
        self.install(&uploaded.module, &uploaded.version, module)
            .await
    }

    async fn install(
        &self,
        name: &str,
        version: &str,
        module: LoadedModule,
    ) -> Result<(), NodeError> {
        let route = module
            .manifest()
            .http
            .as_ref()
            .map(|h| deployments::normalize(&h.route).to_string());
        let deployed = self.deployments.entry(name, ModuleState::Uploaded);
        let _changing = deployed.changing.lock().await;
        let loaded = prepare(name, version, module).await?;
        let _write = deployed.local_write();
        // The route claim and the state change are one registry
        // transaction: of concurrent activations on one route, one wins.
        if let Err(e) = self
            .registry
            .activate(
                name,
                version,
                route.as_deref(),
                self.config.allow_nested_routes,
            )
            .await
        {
            retire(Some(loaded));
            return Err(e.into());
        }
        let previous = self.deployments.install(&deployed, Some(loaded));
        deployed.set_state(ModuleState::Active);
        let was = previous.as_ref().map(|v| v.version.clone());
        retire(previous);
        self.audit.record(NewAudit {
            module: name.into(),
            version: Some(version.into()),
            kind: "activate".into(),
            rule: "api".into(),
            detail: match was {
                Some(p) if p != version => format!("activated {version} (was {p})"),
                _ => format!("activated {version}"),
            },
        });
        Ok(())
    }

    pub async fn transition(&self, name: &str, t: Transition) -> Result<ModuleState, NodeError> {
        let record = self.registry.module(name).await?;
        let to = match (t, record.state) {
            (Transition::Pause, ModuleState::Active) => ModuleState::Paused,
            (Transition::Resume, ModuleState::Paused) => ModuleState::Active,
            (Transition::Stop, ModuleState::Active | ModuleState::Paused | ModuleState::Failed) => {
                ModuleState::Stopped
            }
            (t, from) => {
                return Err(NodeError::Conflict(
                    format!(
                        "cannot {t:?} module {name} while it is {}; activate a version first",
                        from.as_str()
                    )
                    .to_lowercase(),
                ));
            }
        };
        let deployed = self.deployments.entry(name, record.state);
        let write = deployed.local_write();
        self.registry.set_state(name, to, None).await?;
        let updated = ModuleRecord {
            state: to,
            ..record
        };
        self.reconcile(&updated, None).await;
        drop(write);
        self.audit.record(NewAudit {
            module: name.into(),
            version: updated.active_version.clone(),
            kind: "state".into(),
            rule: "api".into(),
            detail: format!("{:?}: now {}", t, to.as_str()).to_lowercase(),
        });
        Ok(to)
    }

    pub async fn delete(&self, name: &str) -> Result<(), NodeError> {
        self.registry.delete(name).await?;
        retire(self.deployments.remove(name));
        self.audit.record(NewAudit {
            module: name.into(),
            version: None,
            kind: "delete".into(),
            rule: "api".into(),
            detail: "module and its versions deleted".into(),
        });
        Ok(())
    }

    /// Whether a version uploaded by token `uploader` is confined to the
    /// outside world: its token is scoped, or no longer configured (a
    /// removed token's scope is unknown, so the narrow one holds).
    fn confined(&self, uploader: Option<&str>) -> bool {
        uploader.is_some_and(|name| {
            self.config
                .tokens
                .iter()
                .find(|t| t.name == name)
                .is_none_or(|t| t.modules.is_some() || t.backends.is_some())
        })
    }

    async fn load_version(&self, name: &str, version: &str) -> Result<LoadedModule, NodeError> {
        let record = self.registry.version(name, version).await?;
        let bytes = self.registry.blob(&record.sha256).await?;
        let manifest = parse_manifest(&record.manifest)
            .await
            .map_err(NodeError::Invalid)?;
        let confined = self.confined(record.uploaded_by.as_deref());
        let _slot = self.compile_gate.for_load().await;
        tokio::task::block_in_place(|| self.load(&bytes, manifest, confined))
            .map_err(|e| NodeError::Invalid(vec![e.to_string()]))
    }

    /// Brings this node in line with the registry for every module.
    pub async fn reconcile_all(&self) -> Result<(), NodeError> {
        let read_at = deployments::clock();
        let records = self.registry.modules().await?;
        for record in &records {
            self.reconcile(record, Some(read_at)).await;
        }
        let known: std::collections::HashSet<&str> =
            records.iter().map(|r| r.name.as_str()).collect();
        for deployed in self.deployments.all() {
            if !known.contains(deployed.name.as_str()) {
                retire(self.deployments.remove(&deployed.name));
            }
        }
        Ok(())
    }

    /// Loads, swaps or unloads one module as its registry record says.
    /// `read_at` is the [`deployments::clock`] before `record` was read;
    /// None when the caller wrote it (its own change, applied as is).
    pub async fn reconcile(&self, record: &ModuleRecord, read_at: Option<u64>) {
        let deployed = self.deployments.entry(&record.name, record.state);
        let (state, read_at) =
            if wanted_version(record) != deployed.current().map(|v| v.version.clone()).as_deref() {
                let _changing = deployed.changing.lock().await;
                // `record` may predate a change that finished while we waited.
                let read_at = read_at.map(|_| deployments::clock());
                let Ok(fresh) = self.registry.module(&record.name).await else {
                    return;
                };
                self.change_version(&deployed, &fresh).await;
                if wanted_version(&fresh).is_some_and(|v| deployed.load_failed(v)) {
                    deployed.set_state(ModuleState::Failed);
                    return;
                }
                (fresh.state, read_at)
            } else {
                (record.state, read_at)
            };
        match read_at {
            Some(t) => deployed.sync_state(state, t),
            None => deployed.set_state(state),
        }
    }

    async fn change_version(&self, deployed: &Arc<Deployed>, record: &ModuleRecord) {
        let loaded = deployed.current().map(|v| v.version.clone());
        match wanted_version(record) {
            w if w == loaded.as_deref() => {}
            // Tried and failed already: do not retry (and re-log) every sync.
            Some(version) if deployed.load_failed(version) => {}
            Some(version) => {
                let prepared = match self.load_version(&record.name, version).await {
                    Ok(module) => prepare(&record.name, version, module).await,
                    Err(e) => Err(e),
                };
                match prepared {
                    Ok(v) => retire(self.deployments.install(deployed, Some(v))),
                    Err(e) => {
                        tracing::error!(module = %record.name, version, "cannot load: {e}");
                        retire(self.deployments.install(deployed, None));
                        deployed.set_load_failed(version);
                    }
                }
            }
            None => retire(self.deployments.install(deployed, None)),
        }
    }

    /// Bookkeeping after an invocation: metrics, logs, and the failure
    /// threshold that takes a misbehaving module out of service.
    pub async fn after_invocation(
        &self,
        deployed: &Deployed,
        version: &Version,
        trigger: &'static str,
        started: Instant,
        result: Result<&Output, &RunError>,
    ) {
        let name = &deployed.name;
        self.metrics.invocation(
            name,
            trigger,
            outcome(&result.map(|_| ())),
            started.elapsed(),
        );
        match result {
            Ok(out) => {
                deployed.succeeded();
                version.module.log_output(out);
            }
            Err(RunError::Failed(msg)) => {
                // The guest ran and answered with an error: not a sandbox
                // failure. Its text is the guest's: under its log budget,
                // escaped (no forged lines).
                if version.module.guest_log().admit(msg.len()) {
                    let msg = crate::guest_log::cut(msg);
                    tracing::info!(module = %name, trigger, "guest returned an error: {msg:?}");
                }
            }
            Err(RunError::Refused(l)) => {
                // Nothing ran: backpressure is never the module's failure,
                // or anonymous callers could take it down with a burst.
                tracing::debug!(module = %name, trigger, "refused: {l}");
            }
            Err(e) => {
                // A trap's message may carry guest text too (a panic).
                let shown = e.to_string();
                let shown = crate::guest_log::cut(&shown);
                if version.module.guest_log().admit(shown.len()) {
                    tracing::warn!(module = %name, trigger, "{shown:?}");
                }
                if deployed.failed_once(self.config.failure_threshold) {
                    let detail = format!(
                        "{} failed invocations in a row, last: {shown:?}",
                        self.config.failure_threshold
                    );
                    tracing::error!(module = %name, "marked failed: {detail}");
                    let _write = deployed.local_write();
                    deployed.set_state(ModuleState::Failed);
                    if let Err(e) = self
                        .registry
                        .set_state(name, ModuleState::Failed, None)
                        .await
                    {
                        tracing::error!(module = %name, "cannot record failed state: {e}");
                    }
                    self.audit.record(NewAudit {
                        module: name.clone(),
                        version: Some(version.version.clone()),
                        kind: "failed".into(),
                        rule: "failure-threshold".into(),
                        detail,
                    });
                }
            }
        }
    }
}

/// How long parsing and validating one manifest may take.
const MANIFEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Parses a manifest on the blocking pool under a deadline: validation
/// (schemas, cron searches) is CPU work that must not stall the runtime.
pub async fn parse_manifest(text: &str) -> Result<Manifest, Vec<String>> {
    let text = text.to_string();
    let work = tokio::task::spawn_blocking(move || Manifest::parse(&text));
    match tokio::time::timeout(MANIFEST_DEADLINE, work).await {
        Ok(Ok(Ok(m))) => Ok(m),
        Ok(Ok(Err(errs))) => Err(errs.iter().map(|e| e.to_string()).collect()),
        Ok(Err(e)) => Err(vec![format!("manifest: validation failed: {e}")]),
        Err(_) => Err(vec![format!(
            "manifest: validation took longer than {}s",
            MANIFEST_DEADLINE.as_secs()
        )]),
    }
}

/// The version a registry record wants loaded. Paused and failed versions
/// stay loaded (not serving): their routes answer 503, and resume and
/// health need no reload.
fn wanted_version(record: &ModuleRecord) -> Option<&str> {
    match record.state {
        ModuleState::Active | ModuleState::Paused | ModuleState::Failed => {
            record.active_version.as_deref()
        }
        ModuleState::Uploaded | ModuleState::Stopped => None,
    }
}

/// Runs the module's `init` and makes it a servable version.
async fn prepare(
    name: &str,
    version: &str,
    module: LoadedModule,
) -> Result<Arc<Version>, NodeError> {
    if let Err(e) = module.call_hook(Hook::Init).await {
        return Err(NodeError::Invalid(vec![format!(
            "{name} {version}: lifecycle init failed: {e}"
        )]));
    }
    Ok(Arc::new(Version::new(version, module)))
}

/// Calls `shutdown` on a version that no longer takes new invocations.
fn retire(old: Option<Arc<Version>>) {
    if let Some(old) = old.filter(|v| v.module.has_lifecycle()) {
        tokio::spawn(async move {
            if let Err(e) = old.module.call_hook(Hook::Shutdown).await {
                tracing::warn!(module = %old.module.name(), version = %old.version, "shutdown hook: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{CompileGate, UPLOADS_WAITING};

    #[tokio::test]
    async fn uploads_that_stop_waiting_leave_no_count_behind() {
        let gate = std::sync::Arc::new(CompileGate::new(1));
        let _busy = gate.for_upload().await.unwrap();
        // A full queue of waiters whose clients go away.
        let waiters: Vec<_> = (0..UPLOADS_WAITING)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.for_upload().await.map(drop) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for w in &waiters {
            w.abort();
        }
        for w in waiters {
            let _ = w.await;
        }
        // The next upload waits (it is not refused as busy).
        let next = tokio::time::timeout(Duration::from_millis(50), gate.for_upload()).await;
        assert!(
            next.is_err(),
            "refused at once: {:?}",
            next.map(|r| r.is_ok())
        );
    }
}
