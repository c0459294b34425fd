//! The `warden` command line (README, "Running one module"; ARCHITECTURE.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::capabilities::Backends;
use clap::{Parser, Subcommand};
use warden_capability::{AuditKind, MemoryAudit};
use warden_fs::HostPaths;

use crate::engine::{EngineOptions, WardenEngine};
use crate::error::{LoadError, RunError};
use crate::host_config::HostConfig;
use crate::limits::Limits;
use crate::linker::build_linker;
use crate::manifest::Manifest;
use crate::module::{LoadContext, LoadedModule};

#[derive(Debug, Parser)]
#[command(
    name = "warden",
    version,
    about = "Run WebAssembly components sandboxed, deny-by-default"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a component once under its manifest.
    Run {
        component: PathBuf,
        /// Module manifest; default: warden.toml next to the component.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Host config (data dir, backends).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Export to call: `run` (default, the task export), `iface#func` or a function name.
        #[arg(long)]
        invoke: Option<String>,
        /// A JSON argument for --invoke; repeat in parameter order.
        #[arg(long = "arg", requires = "invoke")]
        args: Vec<String>,
        /// Send one HTTP request to the module's wasi:http handler and print the response.
        #[arg(long, num_args = 2, value_names = ["METHOD", "PATH"], conflicts_with = "invoke")]
        http: Vec<String>,
        /// Request body for --http.
        #[arg(long, requires = "http")]
        body: Option<String>,
    },
    /// Validate a component against its manifest without running it.
    Check {
        component: PathBuf,
        #[arg(long)]
        manifest: PathBuf,
    },
    /// Serve modules: management API, HTTP ingress, cron (embedded defaults without --config).
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Internal: compile a component read from stdin under memory limits
    /// (the server and the CLI run this as a child process).
    #[command(name = "__compile-worker", hide = true)]
    CompileWorker {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        max_wasm_stack: usize,
        #[arg(long)]
        memory: u64,
    },
    /// Manage the modules of a running server through its API.
    Module {
        /// The server's admin address.
        #[arg(
            long,
            env = "WARDEN_SERVER",
            default_value = "http://127.0.0.1:8081",
            global = true
        )]
        server: String,
        /// Bearer token; default: the local admin token in <data-dir>/admin.token.
        #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true, global = true)]
        token: Option<String>,
        /// Data dir of a local server, for its admin token.
        #[arg(long, default_value = ".warden", global = true)]
        data_dir: PathBuf,
        #[command(subcommand)]
        command: ModuleCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// Upload a component with its manifest (validated before it is stored).
    Upload {
        component: PathBuf,
        #[arg(long)]
        manifest: PathBuf,
        /// Make this version the active one right away.
        #[arg(long)]
        activate: bool,
    },
    List,
    Show {
        name: String,
    },
    Versions {
        name: String,
    },
    /// Hot swap to a stored version.
    Activate {
        name: String,
        version: String,
    },
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    Stop {
        name: String,
    },
    Delete {
        name: String,
    },
}

/// A failure as printed: `<module>: <what>`.
pub struct Failure {
    pub module: String,
    pub message: String,
}

pub async fn execute(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Run {
            component,
            manifest,
            config,
            invoke,
            args,
            http,
            body,
        } => {
            let action = match (invoke, http.as_slice()) {
                (_, [method, path]) => Action::Http {
                    method: method.clone(),
                    path: path.clone(),
                    body: body.unwrap_or_default(),
                },
                (Some(export), _) if export != "run" => Action::Invoke { export, args },
                _ => Action::Task,
            };
            run(&component, manifest.as_deref(), config.as_deref(), action).await
        }
        Command::Check {
            component,
            manifest,
        } => check(&component, &manifest),
        Command::Serve { config } => {
            let host = match &config {
                Some(path) => HostConfig::load(path).map_err(|e| Failure {
                    module: "warden".into(),
                    message: e.to_string(),
                })?,
                None => HostConfig::default(),
            };
            crate::server::serve(host).await.map_err(|message| Failure {
                module: "warden".into(),
                message,
            })
        }
        Command::CompileWorker {
            out,
            max_wasm_stack,
            memory,
        } => match crate::compile::worker_main(&out, max_wasm_stack, memory) {
            0 => Ok(()),
            code => std::process::exit(code),
        },
        Command::Module {
            server,
            token,
            data_dir,
            command,
        } => crate::module_cli::execute(&server, token, &data_dir, command).await,
    }
}

/// This binary, as the compile worker of `run`, `check` and `serve`.
pub fn compile_worker() -> Option<PathBuf> {
    match std::env::current_exe() {
        Ok(exe) => Some(exe),
        Err(e) => {
            tracing::warn!("compiling in-process: cannot find this binary: {e}");
            None
        }
    }
}

/// What `warden run` does with the loaded module.
enum Action {
    Task,
    Invoke {
        export: String,
        args: Vec<String>,
    },
    Http {
        method: String,
        path: String,
        body: String,
    },
}

async fn run(
    component: &Path,
    manifest: Option<&Path>,
    config: Option<&Path>,
    action: Action,
) -> Result<(), Failure> {
    let (module, audit, _engine, backends) = load(component, manifest, config)?;
    backends.sql.verify().await.map_err(|e| Failure {
        module: module.name().to_string(),
        message: format!("invalid host config: {e}"),
    })?;
    // As under `warden serve`, a module's `init` runs before it is called.
    module
        .call_hook(crate::lifecycle::Hook::Init)
        .await
        .map_err(|e| Failure {
            module: module.name().to_string(),
            message: format!("lifecycle init failed: {e}"),
        })?;
    // A guest failing right after a denial failed because of the policy: say so.
    let fail = |err: RunError| {
        let denial = audit
            .events()
            .into_iter()
            .find(|e| e.kind == AuditKind::Denied);
        let message = match (denial, &err) {
            (Some(d), RunError::Failed(guest)) => {
                format!(
                    "denied: {}: {} (the guest then failed: {guest})",
                    d.rule, d.detail
                )
            }
            _ => err.to_string(),
        };
        Failure {
            module: module.name().to_string(),
            message,
        }
    };
    match action {
        Action::Task => {
            module.run_task().await.map_err(fail)?;
        }
        Action::Invoke { export, args } => {
            let args = args
                .iter()
                .map(|a| {
                    serde_json::from_str(a)
                        .map_err(|e| RunError::Host(format!("--arg {a:?} is not JSON: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            let (results, _) = module.invoke(&export, &args).await.map_err(fail)?;
            for r in results {
                println!("{r}");
            }
        }
        Action::Http { method, path, body } => {
            let request = http::Request::builder()
                .method(method.as_str())
                .uri(path.as_str())
                .body(bytes::Bytes::from(body))
                .map_err(|e| fail(RunError::Host(format!("invalid --http request: {e}"))))?;
            let (response, _) = module.handle_http(request).await.map_err(fail)?;
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "HTTP {}", response.status);
            for (name, value) in &response.headers {
                let _ = writeln!(stdout, "{name}: {value}");
            }
            let _ = writeln!(stdout);
            let _ = stdout.write_all(&response.body);
        }
    }
    Ok(())
}

fn check(component: &Path, manifest: &Path) -> Result<(), Failure> {
    let (module, _, _engine, _) = load(component, Some(manifest), None)?;
    let shape = module.shape();
    println!(
        "{}: ok: version {}, sha256 {}, exports [{}], {} imports within its grants",
        module.name(),
        module.manifest().module.version,
        module.sha256(),
        shape.exports.join(", "),
        shape.imports.len()
    );
    Ok(())
}

fn load(
    component: &Path,
    manifest: Option<&Path>,
    config: Option<&Path>,
) -> Result<(LoadedModule, MemoryAudit, WardenEngine, Backends), Failure> {
    let manifest_path = manifest.map(Path::to_path_buf).unwrap_or_else(|| {
        component
            .parent()
            .unwrap_or(Path::new("."))
            .join("warden.toml")
    });
    // Until the manifest is read, name the module after its file.
    let file_name = component
        .file_stem()
        .map_or("warden".into(), |s| s.to_string_lossy().replace('_', "-"));
    let manifest = Manifest::load(&manifest_path).map_err(|errs| Failure {
        module: file_name.clone(),
        message: LoadError::Manifest(errs.iter().map(|e| e.to_string()).collect()).to_string(),
    })?;
    let name = manifest.module.name.clone();
    let fail = |message: String| Failure {
        module: name.clone(),
        message,
    };

    let host = match config {
        Some(path) => HostConfig::load(path).map_err(|e| fail(e.to_string()))?,
        None => HostConfig::default(),
    };
    // One invocation: a small pool is enough.
    let mut options = EngineOptions {
        max_instances: 8,
        compile_limits: host.server.compile_limits(),
        compile_worker: compile_worker(),
        ..EngineOptions::default()
    };
    if config.is_some() {
        options.cache_dir = Some(host.server.data_dir.join("compiled"));
    }
    let engine =
        WardenEngine::new(options).map_err(|e| fail(format!("host error: engine: {e:#}")))?;
    let linker = build_linker(&engine).map_err(|e| fail(format!("host error: linker: {e:#}")))?;
    let bytes = std::fs::read(component).map_err(|e| {
        fail(format!(
            "invalid component: cannot read {}: {e}",
            component.display()
        ))
    })?;
    let audit = MemoryAudit::default();
    let backends = Backends::new(&host).map_err(fail)?;
    let base = manifest_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let cx = LoadContext {
        engine: &engine,
        linker: &linker,
        host_paths: HostPaths::RelativeTo(if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        }),
        defaults: &Limits::default(),
        audit: Arc::new(audit.clone()),
        backends: &backends,
        outside_only: None,
    };
    let module = LoadedModule::load(&cx, &bytes, manifest).map_err(|e| fail(e.to_string()))?;
    Ok((module, audit, engine, backends))
}
