//! Bounded compilation. An upload is hostile input to wasmtime: a few
//! hundred KiB of nested components can make validation and compilation
//! use memory that grows with the square of the depth. So:
//!
//! 1. [`check_structure`] walks the binary (no validation, no allocation
//!    per item) and refuses what no real module needs: deep nesting, huge
//!    counts of components, instances, types, functions, data.
//! 2. Compilation runs in a child process ([`compile_in_worker`]) with a
//!    memory rlimit and a deadline, because wasmtime's own allocations
//!    cannot be capped in-process. A breach kills the child, not the host.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmparser::{Parser, Payload};

use crate::error::LoadError;

/// Structural bounds of an accepted component, and the budget for compiling it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileLimits {
    /// Components and core modules nested in each other.
    pub max_depth: u32,
    /// Nested components and core modules, counted together.
    pub max_modules: u32,
    /// Core and component instances.
    pub max_instances: u32,
    /// Type definitions (core and component).
    pub max_types: u32,
    /// Core functions plus canonical (lifted/lowered) functions.
    pub max_functions: u32,
    /// Bytes of data segments.
    pub max_data: u64,
    /// Address space of the compiling process.
    pub memory: u64,
    /// Wall time to compile.
    pub timeout: Duration,
    /// Components compiled at once by a server (see `server::node::CompileGate`).
    pub concurrent: usize,
}

impl Default for CompileLimits {
    fn default() -> Self {
        Self {
            max_depth: 8,
            max_modules: 256,
            max_instances: 4096,
            max_types: 100_000,
            max_functions: 200_000,
            max_data: 32 << 20,
            memory: 2 << 30,
            timeout: Duration::from_secs(60),
            concurrent: 2,
        }
    }
}

/// Running totals; u64 and saturating, since a hostile binary declares
/// whatever counts it likes.
#[derive(Default)]
struct Counts {
    depth: u64,
    max_depth: u64,
    modules: u64,
    instances: u64,
    types: u64,
    functions: u64,
    data: u64,
}

/// Refuses a component whose shape exceeds `limits`, naming the limit,
/// before wasmtime sees it.
pub fn check_structure(bytes: &[u8], limits: &CompileLimits) -> Result<(), LoadError> {
    let mut c = Counts::default();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| LoadError::Invalid(format!("malformed binary: {e}")))?;
        match payload {
            Payload::Version { .. } => {
                c.depth += 1;
                c.max_depth = c.max_depth.max(c.depth);
            }
            Payload::End(_) => c.depth = c.depth.saturating_sub(1),
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                add(&mut c.modules, 1)
            }
            Payload::InstanceSection(r) => add(&mut c.instances, r.count()),
            Payload::ComponentInstanceSection(r) => add(&mut c.instances, r.count()),
            Payload::TypeSection(r) => add(&mut c.types, r.count()),
            Payload::CoreTypeSection(r) => add(&mut c.types, r.count()),
            Payload::ComponentTypeSection(r) => add(&mut c.types, r.count()),
            Payload::FunctionSection(r) => add(&mut c.functions, r.count()),
            Payload::ComponentCanonicalSection(r) => add(&mut c.functions, r.count()),
            Payload::DataSection(r) => c.data = c.data.saturating_add(r.range().len() as u64),
            _ => {}
        }
        // Checked as we go: a bomb is refused at its first excess.
        over(&c, limits)?;
    }
    Ok(())
}

fn add(total: &mut u64, n: u32) {
    *total = total.saturating_add(n.into());
}

fn over(c: &Counts, l: &CompileLimits) -> Result<(), LoadError> {
    let checks: [(&str, u64, u64); 6] = [
        ("nesting depth", c.max_depth, l.max_depth.into()),
        (
            "nested components and modules",
            c.modules,
            l.max_modules.into(),
        ),
        ("instances", c.instances, l.max_instances.into()),
        ("types", c.types, l.max_types.into()),
        ("functions", c.functions, l.max_functions.into()),
        ("data bytes", c.data, l.max_data),
    ];
    match checks.iter().find(|(_, n, max)| n > max) {
        Some((what, n, max)) => Err(LoadError::Invalid(format!(
            "too large to compile: {what} {n} is above the limit of {max}"
        ))),
        None => Ok(()),
    }
}

/// The engine settings a worker needs to compile artifacts this engine loads.
#[derive(Debug, Clone)]
pub struct WorkerEngine {
    pub max_wasm_stack: usize,
}

/// Runs `<worker> __compile-worker`, which reads the component on stdin and
/// writes the precompiled artifact to `out`, under the memory and time
/// limits. The host only ever deserializes what its own binary wrote.
pub fn compile_in_worker(
    worker: &Path,
    engine: &WorkerEngine,
    bytes: &[u8],
    out: &Path,
    limits: &CompileLimits,
) -> Result<(), LoadError> {
    let mut child = Command::new(worker)
        .arg("__compile-worker")
        .arg("--out")
        .arg(out)
        .arg("--max-wasm-stack")
        .arg(engine.max_wasm_stack.to_string())
        .arg("--memory")
        .arg(limits.memory.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("WARDEN_LOG")
        .spawn()
        .map_err(|e| LoadError::Host(format!("cannot start the compile worker: {e}")))?;
    let started = Instant::now();
    // Read while it runs: a worker blocked on a full pipe would otherwise
    // sit until the deadline. The first 64 KiB are kept.
    let stderr = child.stderr.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let _ = (&mut s).take(64 << 10).read_to_end(&mut kept);
            let _ = std::io::copy(&mut s, &mut std::io::sink());
            String::from_utf8_lossy(&kept).into_owned()
        })
    });
    // A worker that dies early closes the pipe and the write fails, which
    // the exit status below explains.
    let _ = child.stdin.take().map(|mut s| s.write_all(bytes));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= limits.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_file(out);
                return Err(LoadError::Invalid(format!(
                    "too large to compile: compilation took longer than the limit of {}",
                    humantime::format_duration(limits.timeout)
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(LoadError::Host(format!("compile worker: {e}"))),
        }
    };
    if status.success() {
        return Ok(());
    }
    let _ = std::fs::remove_file(out);
    let said = stderr
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default();
    let said = said.trim();
    if let Some(invalid) = said.strip_prefix(INVALID) {
        return Err(LoadError::Invalid(invalid.trim().to_string()));
    }
    // Anything else is the worker dying: out of its memory budget (Rust
    // aborts when an allocation fails) or killed.
    Err(LoadError::Invalid(format!(
        "too large to compile: compilation needed more than the limit of {} of memory ({status}{})",
        crate::manifest::ByteSize(limits.memory),
        match said
            .lines()
            .find(|l| l.contains("memory allocation"))
            .or_else(|| said.lines().last())
        {
            Some(line) => format!(": {line}"),
            None => String::new(),
        }
    )))
}

/// What the worker prints before a component's own error.
const INVALID: &str = "warden-compile: invalid:";

/// The `__compile-worker` side: bound itself, compile, write the artifact.
pub fn worker_main(out: &Path, max_wasm_stack: usize, memory: u64) -> i32 {
    limit_self(memory);
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("warden-compile: cannot read the component: {e}");
        return 3;
    }
    let engine = match crate::engine::compile_only_engine(max_wasm_stack) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warden-compile: engine: {e:#}");
            return 3;
        }
    };
    let artifact = match wasmtime::component::Component::new(&engine, &bytes) {
        Ok(c) => c.serialize(),
        Err(e) => {
            eprintln!("{INVALID} {e:#}");
            return 2;
        }
    };
    match artifact.map(|a| std::fs::write(out, a)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("warden-compile: cannot write {}: {e}", out.display());
            3
        }
        Err(e) => {
            eprintln!("warden-compile: serialize: {e:#}");
            3
        }
    }
}

/// Caps the worker's data (heap and writable mappings) and CPU time, and
/// makes it die with its parent.
fn limit_self(memory: u64) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on this process with valid arguments.
    unsafe {
        let data = libc::rlimit {
            rlim_cur: memory,
            rlim_max: memory,
        };
        libc::setrlimit(libc::RLIMIT_DATA, &data);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = memory;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `depth` components, each nested in the one before.
    fn nested(depth: usize) -> Vec<u8> {
        let mut wat = String::new();
        for _ in 0..depth {
            wat.push_str("(component ");
        }
        wat.push_str(&")".repeat(depth));
        wat::parse_str(&wat).unwrap()
    }

    #[test]
    fn declared_counts_cannot_overflow_the_totals() {
        // A type section declaring 2^32-1 entries, twice.
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        for _ in 0..2 {
            bytes.extend_from_slice(&[1, 5, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        }
        let err = check_structure(&bytes, &CompileLimits::default()).unwrap_err();
        assert!(err.to_string().contains("types"), "{err}");
    }

    #[test]
    fn nesting_and_counts_are_bounded_and_named() {
        let limits = CompileLimits::default();
        check_structure(&nested(4), &limits).unwrap();
        let err = check_structure(&nested(40), &limits).unwrap_err();
        assert!(err.to_string().contains("nesting depth"), "{err}");
        let wide = format!("(component {})", "(component)".repeat(300));
        let err = check_structure(&wat::parse_str(&wide).unwrap(), &limits).unwrap_err();
        assert!(err.to_string().contains("nested components"), "{err}");
        let data = CompileLimits {
            max_data: 10,
            ..limits
        };
        let module =
            "(component (core module (memory 1) (data (i32.const 0) \"0123456789abcdef\")))";
        let err = check_structure(&wat::parse_str(module).unwrap(), &data).unwrap_err();
        assert!(err.to_string().contains("data bytes"), "{err}");
    }
}
