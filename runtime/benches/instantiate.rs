//! Instantiate + call + drop of a trivial component, pooling + InstancePre vs
//! the on-demand allocator, and the host→guest call overhead.
//!
//! Run with `just bench` (needs the guests built). Prints a Markdown table.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_capability::LogAudit;
use warden_fs::HostPaths;
use warden_runtime::linker::build_linker;
use warden_runtime::{
    EngineOptions, Limits, LoadContext, LoadedModule, Manifest, Stdio, WardenEngine,
};

const WARMUP: usize = 500;
const ITERATIONS: usize = 20_000;
const CALLS: u32 = 200_000;

fn load(pooling: bool) -> LoadedModule {
    let engine = WardenEngine::new(EngineOptions {
        pooling,
        max_instances: 64,
        cache_dir: None,
        ..EngineOptions::default()
    })
    .expect("engine");
    let linker = build_linker(&engine).expect("linker");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-modules/target/wasm32-wasip2/release/noop.wasm");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `just build-guests`)", path.display()));
    let manifest = Manifest::parse(
        "[module]\nname = \"noop\"\nversion = \"0.1.0\"\n[limits]\nmemory = \"16 MiB\"\n",
    )
    .unwrap();
    let cx = LoadContext {
        engine: &engine,
        linker: &linker,
        host_paths: HostPaths::RelativeTo(".".into()),
        defaults: &Limits::default(),
        audit: Arc::new(LogAudit),
        backends: &warden_runtime::Backends::default(),
        outside_only: None,
    };
    let mut module = LoadedModule::load(&cx, &bytes, manifest).expect("load noop");
    module.set_stdio(Stdio::Capture(1024));
    module
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn instantiate_call_drop(module: &LoadedModule) -> (Duration, Duration, Duration) {
    for _ in 0..WARMUP {
        module.run_task().await.unwrap();
    }
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let start = Instant::now();
        module.run_task().await.unwrap();
        samples.push(start.elapsed());
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    (percentile(&samples, 0.50), percentile(&samples, 0.99), mean)
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!(
        "| allocator | p50 | p99 | mean | ({ITERATIONS} runs of instantiate + call + drop, noop task) |"
    );
    println!("|---|---|---|---|---|");
    let pooled = load(true);
    for (name, module) in [
        ("pooling + InstancePre", &pooled),
        ("on-demand + InstancePre", &load(false)),
    ] {
        let (p50, p99, mean) = instantiate_call_drop(module).await;
        println!("| {name} | {} | {} | {} | |", us(p50), us(p99), us(mean));
    }
    let elapsed = pooled.time_task_calls(CALLS).await.unwrap();
    println!();
    println!(
        "host→guest call overhead (task run on a live instance, {CALLS} calls): {:.1} ns/call",
        elapsed.as_nanos() as f64 / f64::from(CALLS)
    );
}
