//! The shared wasmtime engine: pooling allocator, epoch ticker, fuel, and an
//! on-disk cache of precompiled components.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::compile::{self, CompileLimits, WorkerEngine};
use crate::error::LoadError;

/// How often the epoch advances; deadlines are rounded up to this.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine-wide settings. Per-module limits live in the manifest; these are
/// the ceilings the pool is sized for.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Pooling allocator (fast instantiation) or on-demand allocation.
    pub pooling: bool,
    /// Component instances alive at once across all modules.
    pub max_instances: u32,
    /// Largest linear memory any module may be granted.
    pub max_memory: u64,
    /// Guest stack; deeper recursion traps with a stack overflow.
    pub max_wasm_stack: usize,
    /// Where precompiled components are kept; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Structural bounds and the compile budget of a component.
    pub compile_limits: CompileLimits,
    /// The `warden` binary that compiles in a bounded child process
    /// (`__compile-worker`). `None`: compile in this process (the structure
    /// check still applies); only for trusted callers such as tests.
    pub compile_worker: Option<PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            pooling: true,
            max_instances: 1000,
            max_memory: 4 << 30,
            max_wasm_stack: 512 << 10,
            cache_dir: default_cache_dir(),
            compile_limits: CompileLimits::default(),
            compile_worker: None,
        }
    }
}

/// `$WARDEN_CACHE_DIR`, else `$XDG_CACHE_HOME/warden/compiled`, else `~/.cache/warden/compiled`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WARDEN_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("warden").join("compiled"))
}

/// A compiled component plus the identity it was cached under.
pub struct CompiledComponent {
    pub component: Component,
    /// Hex sha256 of the component bytes.
    pub sha256: String,
}

#[derive(Clone)]
pub struct WardenEngine {
    engine: Engine,
    fingerprint: String,
    options: EngineOptions,
}

impl WardenEngine {
    pub fn new(options: EngineOptions) -> wasmtime::Result<Self> {
        let mut config = base_config(options.max_wasm_stack);
        if options.pooling {
            let mut pool = PoolingAllocationConfig::new();
            let n = options.max_instances;
            // A Rust wasip2 component has a handful of core instances, one
            // memory and a few tables (main module plus shims).
            pool.total_component_instances(n)
                .total_core_instances(n * 8)
                .total_memories(n)
                .total_tables(n * 4)
                .total_stacks(n)
                .max_core_instances_per_component(16)
                .max_memories_per_component(2)
                .max_tables_per_component(8)
                .max_memory_size(options.max_memory as usize)
                // Reset up to this much dirty memory with memset (PAGEMAP_SCAN
                // finds the dirty pages) instead of madvise: the pages stay
                // mapped, so the next instance does not fault them back in.
                // Batch the rest of the madvise calls.
                .linear_memory_keep_resident(1 << 20)
                .table_keep_resident(16 << 10)
                .async_stack_keep_resident(64 << 10)
                .decommit_batch_size(16)
                .pagemap_scan(wasmtime::Enabled::Auto);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config)?;
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        options.pooling.hash(&mut h);
        let fingerprint = format!("{:016x}", h.finish());
        spawn_epoch_ticker(&engine);
        Ok(Self {
            engine,
            fingerprint,
            options,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Compiles `bytes`, or loads the precompiled artifact cached for the
    /// same bytes and engine.
    /// The checks that cost nothing to run on hostile bytes: the header and
    /// the structure bounds (no compiling).
    pub fn check(&self, bytes: &[u8]) -> Result<(), LoadError> {
        check_header(bytes)?;
        compile::check_structure(bytes, &self.options.compile_limits)
    }

    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledComponent, LoadError> {
        check_header(bytes)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let cached = self
            .options
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{sha256}-{}.cwasm", self.fingerprint)));
        if let Some(path) = &cached
            && let Some(component) = self.load_cached(path)
        {
            return Ok(CompiledComponent { component, sha256 });
        }
        compile::check_structure(bytes, &self.options.compile_limits)?;
        let component = match &self.options.compile_worker {
            Some(worker) => self.compile_bounded(worker, bytes, cached.as_deref())?,
            None => {
                let component = Component::new(&self.engine, bytes)
                    .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
                if let Some(path) = &cached
                    && let Err(e) = store_cached(&component, path)
                {
                    tracing::warn!("not caching compiled component at {}: {e}", path.display());
                }
                component
            }
        };
        Ok(CompiledComponent { component, sha256 })
    }

    /// Compiles in a child process under the compile limits; its artifact
    /// lands in the cache (or a temporary file) and is loaded from there.
    fn compile_bounded(
        &self,
        worker: &Path,
        bytes: &[u8],
        cached: Option<&Path>,
    ) -> Result<Component, LoadError> {
        let dir = match cached.and_then(Path::parent) {
            Some(dir) => dir.to_path_buf(),
            None => std::env::temp_dir(),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| LoadError::Host(format!("cannot create {}: {e}", dir.display())))?;
        let tmp = tempfile_in(&dir)
            .map_err(|e| LoadError::Host(format!("compile output in {}: {e}", dir.display())))?;
        let engine = WorkerEngine {
            max_wasm_stack: self.options.max_wasm_stack,
        };
        compile::compile_in_worker(worker, &engine, bytes, &tmp, &self.options.compile_limits)?;
        // SAFETY: written just now by this binary's own compile worker into
        // the host's private dir; wasmtime checks engine compatibility.
        let loaded = unsafe { Component::deserialize_file(&self.engine, &tmp) }
            .map_err(|e| LoadError::Host(format!("loading the compiled component: {e:#}")));
        match (cached, &loaded) {
            (Some(path), Ok(_)) => {
                if let Err(e) = std::fs::rename(&tmp, path) {
                    tracing::warn!("not caching compiled component at {}: {e}", path.display());
                    let _ = std::fs::remove_file(&tmp);
                }
            }
            _ => {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        loaded
    }

    fn load_cached(&self, path: &Path) -> Option<Component> {
        if !path.exists() {
            return None;
        }
        // SAFETY: the file is one this process family wrote into its private
        // cache dir, keyed by the engine fingerprint; wasmtime additionally
        // checks the header for engine compatibility and fails cleanly.
        match unsafe { Component::deserialize_file(&self.engine, path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("discarding unusable cache entry {}: {e}", path.display());
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }
}

/// The settings every engine shares, compile workers' included: artifacts
/// are only loadable by an engine with the same ones.
fn base_config(max_wasm_stack: usize) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(true)
        .max_wasm_stack(max_wasm_stack);
    config
}

/// The compile worker's engine: the shared settings, no instance pool
/// (it never instantiates) and no epoch ticker.
pub(crate) fn compile_only_engine(max_wasm_stack: usize) -> wasmtime::Result<Engine> {
    let mut config = base_config(max_wasm_stack);
    // One thread: an upload's compile takes one core of the host, and its
    // memory is one thread's.
    config.parallel_compilation(false);
    Engine::new(&config)
}

fn store_cached(component: &Component, path: &Path) -> std::io::Result<()> {
    let dir = path.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let tmp = tempfile_in(dir)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn tempfile_in(dir: &Path) -> std::io::Result<PathBuf> {
    let nonce: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(dir.join(format!(".tmp-{}-{nonce}-{seq}", std::process::id())))
}

/// Tells a core module or garbage apart from a component before compiling,
/// so the error says what the file is.
fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(LoadError::Invalid(
            "not a WebAssembly file (bad magic bytes)".into(),
        ));
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Err(LoadError::Invalid(
            "this is a core WebAssembly module, not a component; build it with `cargo component build` or for wasm32-wasip2".into(),
        )),
        [_, _, 1, 0] => Ok(()),
        _ => Err(LoadError::Invalid("unsupported WebAssembly version".into())),
    }
}

/// Advances the engine epoch every [`EPOCH_TICK`] until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("warden-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
