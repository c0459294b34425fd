//! A module ready to run: manifest checked, component compiled and linked
//! once (`InstancePre`); every invocation gets a fresh, limited store.

use std::collections::HashMap;
use std::sync::Arc;

use std::sync::atomic::{AtomicU32, Ordering};
use warden_capability::{AuditEvent, AuditKind, AuditSink, InvocationLimits};
use warden_fs::{HostPaths, ResolvedDir};
use warden_net::{GrantedHttpHooks, NetPolicy};

use warden_capability::LimitExceeded;
use wasmtime::component::{ComponentExportIndex, InstancePre, Linker, ResourceTable};
use wasmtime::{CallHook, Store};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::WasiHttpCtx;

use crate::admission::Admission;
use crate::capabilities::{Backends, ModuleCapabilities};
use crate::contract::{self, ComponentShape, MESSAGE_EXPORT, TASK_EXPORT};
use crate::engine::{EPOCH_TICK, WardenEngine};
use crate::error::{LoadError, RunError, TrapContext};
use crate::limits::{Limiter, Limits};
use crate::manifest::Manifest;
use crate::state::ModuleState;

/// Where a module's stdout and stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// The host process's own (the CLI).
    Inherit,
    /// Kept in memory, at most this many bytes each; returned with the outcome.
    Capture(usize),
}

/// What a successful invocation printed (empty when stdio is inherited).
#[derive(Debug, Default, Clone)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

pub struct LoadedModule {
    manifest: Manifest,
    limits: Limits,
    sha256: String,
    shape: ComponentShape,
    fs_dirs: Vec<ResolvedDir>,
    net: Arc<NetPolicy>,
    caps: ModuleCapabilities,
    config: Arc<WasiConfigVariables>,
    pre: InstancePre<ModuleState>,
    task_run: Option<ComponentExportIndex>,
    message_handle: Option<ComponentExportIndex>,
    /// `invoke` names already resolved to an export (the lookup walks the
    /// component's type; a caller repeating a name should not pay it again).
    pub(crate) invoke_exports: std::sync::Mutex<HashMap<String, ComponentExportIndex>>,
    audit: Arc<dyn AuditSink>,
    trap_ctx: TrapContext,
    stdio: Stdio,
    admission: Admission,
    guest_log: crate::guest_log::GuestLog,
}

/// Everything needed to load a module besides its bytes and manifest.
pub struct LoadContext<'a> {
    pub engine: &'a WardenEngine,
    pub linker: &'a Linker<ModuleState>,
    pub host_paths: HostPaths,
    pub defaults: &'a Limits,
    pub audit: Arc<dyn AuditSink>,
    /// The host's shared backends of every capability.
    pub backends: &'a Backends,
    /// Set for modules of scoped tokens: their network grants reach no
    /// internal address and none of these (the backends' addresses).
    pub outside_only: Option<Arc<[std::net::IpAddr]>>,
}

impl LoadedModule {
    /// Compiles (or loads from cache), checks the contract, resolves grants
    /// and pre-links. Nothing of the guest runs here.
    pub fn load(cx: &LoadContext<'_>, bytes: &[u8], manifest: Manifest) -> Result<Self, LoadError> {
        let compiled = cx.engine.compile(bytes)?;
        // Every capability reports denials here; each is also counted
        // against the invocation it happened in (`max-denials`).
        let audit: Arc<dyn AuditSink> = Arc::new(CountingAudit(cx.audit.clone()));
        let shape = ComponentShape::of(cx.engine.engine(), &compiled.component);
        let problems = contract::check(&shape, &manifest);
        if !problems.is_empty() {
            return Err(LoadError::Contract(problems));
        }
        let fs_dirs = manifest
            .grants
            .fs
            .iter()
            .map(|(guest, grant)| grant.resolve(guest, &cx.host_paths))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LoadError::Host(e.to_string()))?;
        let endpoints = match &manifest.grants.net {
            Some(net) => net.endpoints().map_err(|e| LoadError::Manifest(vec![e]))?,
            None => Vec::new(),
        };
        let net = NetPolicy::new(manifest.module.name.clone(), endpoints, audit.clone());
        let net = Arc::new(match &cx.outside_only {
            Some(backends) => net.outside_only(backends.clone()),
            None => net,
        });
        let name = &manifest.module.name;
        let caps = ModuleCapabilities::resolve(name, &manifest.grants, cx.backends, &audit)
            .map_err(LoadError::Host)?;
        let config = Arc::new(
            manifest
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.as_config_string()))
                .collect::<WasiConfigVariables>(),
        );
        let pre = cx
            .linker
            .instantiate_pre(&compiled.component)
            .map_err(|e| LoadError::Invalid(format!("cannot link: {e:#}")))?;
        let task_run = export_func(&compiled.component, &shape, TASK_EXPORT, "run");
        let message_handle = export_func(&compiled.component, &shape, MESSAGE_EXPORT, "handle");
        let limits = Limits::resolve(&manifest.limits, cx.defaults);
        if limits.memory.0 > cx.engine.options().max_memory {
            return Err(LoadError::Host(format!(
                "limits.memory {} is above this host's maximum of {}",
                limits.memory,
                crate::manifest::ByteSize(cx.engine.options().max_memory)
            )));
        }
        let trap_ctx = TrapContext {
            timeout: limits.timeout,
            fuel: limits.fuel,
            max_handles: limits.max_handles,
            max_stack: cx.engine.options().max_wasm_stack,
        };
        let guest_log = crate::guest_log::GuestLog::new(&manifest.module.name);
        Ok(Self {
            manifest,
            sha256: compiled.sha256,
            shape,
            fs_dirs,
            net,
            caps,
            config,
            pre,
            task_run,
            message_handle,
            invoke_exports: Default::default(),
            audit: audit.clone(),
            trap_ctx,
            stdio: Stdio::Inherit,
            admission: Admission::new(&limits),
            guest_log,
            limits,
        })
    }

    pub fn name(&self) -> &str {
        &self.manifest.module.name
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn shape(&self) -> &ComponentShape {
        &self.shape
    }

    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        self.pre.engine()
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<ModuleState> {
        &self.pre
    }

    pub(crate) fn component(&self) -> &wasmtime::component::Component {
        self.pre.component()
    }

    /// The `message-handler#handle` export, if the component has one.
    pub(crate) fn message_handle(&self) -> Option<&ComponentExportIndex> {
        self.message_handle.as_ref()
    }

    /// Invocations of this module running right now.
    pub fn in_flight(&self) -> u32 {
        self.admission.in_flight()
    }

    /// Logs what an invocation printed, within the module's log budget.
    /// This module's log budget, for host lines carrying its text.
    pub fn guest_log(&self) -> &crate::guest_log::GuestLog {
        &self.guest_log
    }

    pub fn log_output(&self, out: &Output) {
        self.guest_log.lines(&out.stdout);
        self.guest_log.lines(&out.stderr);
    }

    pub fn set_stdio(&mut self, stdio: Stdio) {
        self.stdio = stdio;
    }

    /// Calls the `task` export's `run`.
    pub async fn run_task(&self) -> Result<Output, RunError> {
        let index = self.task_run.as_ref().ok_or_else(|| {
            RunError::Host(format!("the component does not export {TASK_EXPORT}"))
        })?;
        let max_output = self.limits.max_output;
        self.with_instance(async |store, instance| {
            let run = instance
                .get_typed_func::<(), (Result<(), String>,)>(&mut *store, index)
                .map_err(|e| {
                    RunError::Host(format!("{TASK_EXPORT}#run has an unexpected type: {e}"))
                })?;
            let (result,) = run
                .call_async(&mut *store, ())
                .await
                .map_err(InstanceError::Call)?;
            guest_result(result, max_output)
        })
        .await
        .map(|((), output)| output)
    }

    /// For benchmarks: one instance, `calls` calls of the task export; returns
    /// the time spent in the calls alone.
    pub async fn time_task_calls(&self, calls: u32) -> Result<std::time::Duration, RunError> {
        let index = self.task_run.as_ref().ok_or_else(|| {
            RunError::Host(format!("the component does not export {TASK_EXPORT}"))
        })?;
        self.with_instance(async |store, instance| {
            let run = instance
                .get_typed_func::<(), (Result<(), String>,)>(&mut *store, index)
                .map_err(|e| RunError::Host(e.to_string()))?;
            let start = std::time::Instant::now();
            for _ in 0..calls {
                let (result,) = run
                    .call_async(&mut *store, ())
                    .await
                    .map_err(InstanceError::Call)?;
                if result.is_err() {
                    return Err(RunError::Failed("task returned an error".into()).into());
                }
            }
            Ok(start.elapsed())
        })
        .await
        .map(|(elapsed, _)| elapsed)
    }

    /// Instantiates into a fresh store, runs `f` under the module's deadline,
    /// and turns traps into errors naming the limit.
    pub(crate) async fn with_instance<R>(
        &self,
        f: impl AsyncFnOnce(
            &mut Store<ModuleState>,
            &wasmtime::component::Instance,
        ) -> Result<R, InstanceError>,
    ) -> Result<(R, Output), RunError> {
        let _slot = match self.admission.admit(self.limits.queue_patience()).await {
            Ok(slot) => slot,
            Err(limit) => {
                let err = RunError::Refused(limit);
                self.audit_failure(&err);
                return Err(err);
            }
        };
        let (mut store, pipes) = self.new_store()?;
        // The epoch deadline stops guest code; this one also covers time the
        // guest spends blocked in host calls. A tick of slack lets the epoch
        // trap (which names the guest frame) win when both fire.
        let wall = self.limits.timeout + EPOCH_TICK * 2;
        let denials = store.data().denials.clone();
        let outcome = tokio::time::timeout(
            wall,
            DENIALS.scope(denials, async {
                let instance = self
                    .pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(InstanceError::Call)?;
                f(&mut store, &instance).await
            }),
        )
        .await;
        let result = match outcome {
            Err(_elapsed) => Err(RunError::Limit(self.trap_ctx.timeout_exceeded())),
            Ok(Ok(r)) => Ok(r),
            Ok(Err(InstanceError::Call(e))) => Err(RunError::from_wasmtime(e, &self.trap_ctx)),
            Ok(Err(InstanceError::Run(e))) => Err(e),
        };
        drop(store);
        match result {
            Ok(r) => Ok((r, pipes.map(|p| p.output()).unwrap_or_default())),
            Err(e) => {
                // What the guest printed before failing is what explains it.
                if let Some(out) = pipes.map(|p| p.output()) {
                    self.log_output(&out);
                }
                self.audit_failure(&e);
                Err(e)
            }
        }
    }

    fn new_store(&self) -> Result<(Store<ModuleState>, Option<Pipes>), RunError> {
        let mut wasi = WasiCtx::builder();
        let pipes = match self.stdio {
            Stdio::Inherit => {
                wasi.inherit_stdout().inherit_stderr();
                None
            }
            Stdio::Capture(limit) => {
                let p = Pipes {
                    stdout: MemoryOutputPipe::new(limit),
                    stderr: MemoryOutputPipe::new(limit),
                };
                wasi.stdout(p.stdout.clone()).stderr(p.stderr.clone());
                Some(p)
            }
        };
        if let Err(e) = warden_fs::add_preopens(&mut wasi, &self.fs_dirs) {
            // The grant was fine when loaded; its directory changed since
            // (removed, or swapped for a link).
            self.audit.record(AuditEvent {
                module: self.name().to_string(),
                kind: AuditKind::Denied,
                rule: "fs".into(),
                detail: e.to_string(),
            });
            return Err(RunError::Host(e.to_string()));
        }
        warden_net::configure_sockets(&mut wasi, self.net.clone());

        let mut table = ResourceTable::new();
        table.set_max_capacity(self.limits.max_handles as usize);
        let state = ModuleState {
            wasi: wasi.build(),
            table,
            http: WasiHttpCtx::new(),
            http_hooks: GrantedHttpHooks::new(self.net.clone()),
            config: self.config.clone(),
            net: self.net.clone(),
            limiter: Limiter::new(&self.limits),
            caps: self.caps.ctxs(InvocationLimits {
                max_output: self.limits.max_output.0,
                timeout: self.limits.timeout,
            }),
            denials: Arc::default(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // A guest that keeps calling what it was denied is stopped on its
        // way back from the host call that crossed the budget.
        let max_denials = self.limits.max_denials;
        store.call_hook(move |store, hook| {
            if matches!(hook, CallHook::ReturningFromHost)
                && store.data().denials.load(Ordering::Relaxed) > max_denials
            {
                return Err(wasmtime::Error::new(LimitExceeded {
                    limit: "max-denials",
                    allowed: format!("{max_denials} denied calls per invocation"),
                    attempted: None,
                }));
            }
            Ok(())
        });
        store
            .set_fuel(self.limits.fuel.unwrap_or(u64::MAX))
            .map_err(|e| RunError::Host(e.to_string()))?;
        let ticks = self
            .limits
            .timeout
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis())
            .max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        Ok((store, pipes))
    }

    fn audit_failure(&self, err: &RunError) {
        let (kind, rule) = match err {
            RunError::Refused(l) | RunError::Limit(l) => {
                (AuditKind::LimitExceeded, l.limit.to_string())
            }
            RunError::Trap(_) => (AuditKind::Trap, "trap".to_string()),
            RunError::Failed(_) | RunError::Host(_) => return,
        };
        self.audit.record(AuditEvent {
            module: self.name().to_string(),
            kind,
            rule,
            detail: err.to_string(),
        });
    }
}

tokio::task_local! {
    /// The denial counter of the invocation running on this task.
    static DENIALS: Arc<AtomicU32>;
}

/// The module's audit sink, counting each denial against the invocation
/// (if any) that caused it.
struct CountingAudit(Arc<dyn AuditSink>);

impl AuditSink for CountingAudit {
    fn record(&self, e: AuditEvent) {
        if e.kind == AuditKind::Denied {
            let _ = DENIALS.try_with(|d| d.fetch_add(1, Ordering::Relaxed));
        }
        self.0.record(e);
    }
}

/// Errors inside [`LoadedModule::with_instance`]: a raw wasmtime error still
/// to be classified, or an already classified one.
pub(crate) enum InstanceError {
    Call(wasmtime::Error),
    Run(RunError),
}

impl From<RunError> for InstanceError {
    fn from(e: RunError) -> Self {
        InstanceError::Run(e)
    }
}

pub(crate) fn charge_output(max: crate::manifest::ByteSize, bytes: usize) -> Result<(), RunError> {
    if bytes as u64 > max.0 {
        return Err(RunError::Limit(warden_capability::LimitExceeded {
            limit: "max-output",
            allowed: max.to_string(),
            attempted: Some(format!(
                "{} returned",
                crate::manifest::ByteSize(bytes as u64)
            )),
        }));
    }
    Ok(())
}

/// A guest's `result<_, string>`: its error becomes [`RunError::Failed`].
///
/// The string is lifted as an owned copy inside the call: wasmtime runs the
/// guest's post-return (which may free or reuse that memory) right after
/// lifting, so a borrowed `WasmStr` read afterwards could be anything. The
/// copy is bounded by the guest's own linear memory.
pub(crate) fn guest_result(
    result: Result<(), String>,
    max_output: crate::manifest::ByteSize,
) -> Result<(), InstanceError> {
    let Err(msg) = result else {
        return Ok(());
    };
    charge_output(max_output, msg.len())?;
    Err(RunError::Failed(msg).into())
}

/// The index of `func` in the exported `interface`, if the component has it.
pub(crate) fn export_func(
    component: &wasmtime::component::Component,
    shape: &ComponentShape,
    interface: &str,
    func: &str,
) -> Option<ComponentExportIndex> {
    let iface = component.get_export_index(None, versioned_export(shape, interface).as_str())?;
    component.get_export_index(Some(&iface), func)
}

/// The exported name of `interface` with the version the component uses.
fn versioned_export(shape: &ComponentShape, interface: &str) -> String {
    shape
        .exports
        .iter()
        .find(|e| contract::unversioned(e) == interface)
        .cloned()
        .unwrap_or_else(|| interface.to_string())
}

struct Pipes {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl Pipes {
    fn output(&self) -> Output {
        Output {
            stdout: String::from_utf8_lossy(&self.stdout.contents()).into_owned(),
            stderr: String::from_utf8_lossy(&self.stderr.contents()).into_owned(),
        }
    }
}
