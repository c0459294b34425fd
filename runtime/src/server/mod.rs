//! `warden serve`: the registry, the management API, HTTP ingress and cron
//! on one node. Nodes share state only through the registry.

pub mod api;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod consumers;
pub mod cron;
pub mod delivery;
pub mod deployments;
pub mod ingress;
pub mod listener;
pub mod metrics;
pub mod node;
pub mod openapi;
pub mod redis_trigger;
pub mod registry;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use warden_sql::SqlBackendConfig;

use crate::capabilities::Backends;
use crate::engine::{EngineOptions, WardenEngine};
use crate::host_config::HostConfig;
use crate::linker::build_linker;
use api::Api;
use auth::Tokens;
use deployments::Deployments;
use metrics::Metrics;
use node::{Host, Node};
use registry::Registry;

/// How often a node re-reads the registry to pick up changes made elsewhere.
const SYNC_EVERY: Duration = Duration::from_millis(500);

/// Starts everything and serves until SIGINT/SIGTERM.
pub async fn serve(mut config: HostConfig) -> Result<(), String> {
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
    let mut fs_roots = config.fs.roots.clone();
    fs_roots
        .entry(warden_fs::DEFAULT_ROOT.into())
        .or_insert_with(|| data_dir.join("files"));
    for (name, root) in &fs_roots {
        std::fs::create_dir_all(root)
            .map_err(|e| format!("cannot create fs.roots.{name} {}: {e}", root.display()))?;
    }
    // The embedded default: every node has a local SQLite database.
    config
        .sql
        .entry("local".into())
        .or_insert_with(|| SqlBackendConfig {
            max_connections: 4,
            ..SqlBackendConfig::new(format!("sqlite://{}", data_dir.join("local.db").display()))
        });

    let (tokens, token_note) = if config.server.tokens.is_empty() {
        let (t, file) = Tokens::local_admin(&data_dir)?;
        (t, format!("admin token in {}", file.display()))
    } else {
        (
            Tokens::new(&config.server.tokens)?,
            format!("{} configured tokens", config.server.tokens.len()),
        )
    };

    let registry = Registry::open(&config.server.registry, &data_dir)
        .await
        .map_err(|e| e.to_string())?;
    let engine = WardenEngine::new(EngineOptions {
        cache_dir: Some(data_dir.join("compiled")),
        compile_limits: config.server.compile_limits(),
        compile_worker: crate::cli::compile_worker(),
        ..EngineOptions::default()
    })
    .map_err(|e| format!("engine: {e:#}"))?;
    let linker = build_linker(&engine).map_err(|e| format!("linker: {e:#}"))?;
    let mut backends = Backends::new(&config)?;
    // Published events go to this node's bus.
    let bus = Arc::new(bus::Bus::default());
    backends.events = warden_events::EventsBackend::new(bus.clone());
    // A privileged database credential is refused before any module runs.
    backends
        .sql
        .verify()
        .await
        .map_err(|e| format!("invalid host config: {e}"))?;
    let host = Host {
        engine,
        linker,
        backends,
        fs_roots,
        backend_hosts: config.backend_hosts(),
        backend_addrs: resolve_hosts(&config.backend_hosts()).await,
    };
    // In the background: a broker that is slow or down must not hold up the
    // node (sends and consumers say so, and retry).
    for kafka in host.backends.kafka.all() {
        tokio::spawn(async move {
            if let Err(e) = kafka.create_topics().await {
                tracing::warn!("{e}");
            }
        });
    }
    let metrics = Arc::new(Metrics::default());
    let audit = audit::AuditLog::start(registry.clone(), metrics.clone());
    let node = Arc::new(Node {
        config: config.server.clone(),
        registry,
        deployments: Deployments::default(),
        metrics,
        audit,
        host,
        bus: bus.clone(),
        consumers: Default::default(),
        compile_gate: node::CompileGate::new(config.server.compile_concurrency),
    });
    bus.attach(&node);

    let started = std::time::Instant::now();
    node.reconcile_all().await.map_err(|e| e.to_string())?;
    node.consumers.reconcile(&node);
    adopt_routes(&node).await;
    report_shared_credentials(&node);
    let loaded = node
        .deployments
        .all()
        .iter()
        .filter(|d| d.current().is_some())
        .count();

    let ingress = TcpListener::bind(config.server.ingress)
        .await
        .map_err(|e| format!("server.ingress {}: {e}", config.server.ingress))?;
    let admin = TcpListener::bind(config.server.admin)
        .await
        .map_err(|e| format!("server.admin {}: {e}", config.server.admin))?;
    // Scripts and tests read these lines (ports may be chosen by the OS).
    println!(
        "warden: ingress http://{}",
        ingress.local_addr().map_err(|e| e.to_string())?
    );
    println!(
        "warden: admin http://{}",
        admin.local_addr().map_err(|e| e.to_string())?
    );
    println!(
        "warden: data dir {}, {token_note}, {loaded} modules loaded in {:.2?}",
        data_dir.display(),
        started.elapsed()
    );

    tokio::spawn(cron::run_scheduler(node.clone()));
    tokio::spawn(sync_loop(node.clone()));
    if let Some(url) = node.registry.postgres_url() {
        tokio::spawn(listen_loop(node.clone(), url.to_string()));
    }
    let api = Arc::new(Api {
        node: node.clone(),
        tokens,
    });
    let admin_server = listener::serve(
        admin,
        api::router(api),
        listener::ConnLimits::of(&config.server),
        shutdown(),
    );
    let ingress_server = listener::serve(
        ingress,
        ingress::router(node.clone()),
        listener::ConnLimits::of(&config.server),
        shutdown(),
    );
    tokio::join!(admin_server, ingress_server);
    // Unacknowledged messages go back to their brokers.
    node.consumers.stop_all();
    // What the last requests recorded must reach the registry.
    node.audit.flush().await;
    Ok(())
}

/// Claims in the registry the routes of modules activated before routes
/// were claimed there (older registries).
async fn adopt_routes(node: &Node) {
    for deployed in node.deployments.all() {
        let Some(version) = deployed.current() else {
            continue;
        };
        if let Some(http) = &version.module.manifest().http {
            let route = deployments::normalize(&http.route);
            if let Err(e) = node.registry.adopt_route(&deployed.name, route).await {
                tracing::warn!(module = %deployed.name, "cannot record route {route}: {e}");
            }
        }
    }
}

/// Warns about SQL credentials that several loaded modules share: the
/// database does not isolate their sessions from each other.
fn report_shared_credentials(node: &Node) {
    let uses: Vec<_> = node
        .deployments
        .all()
        .iter()
        .filter_map(|d| d.current())
        .flat_map(|v| {
            let m = v.module.manifest();
            m.grants
                .sql
                .values()
                .map(|g| {
                    let read_only = g.access == warden_sql::SqlAccess::ReadOnly;
                    (m.module.name.clone(), g.backend.clone(), read_only)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for notice in node.host.backends.sql.shared_credentials(&uses) {
        tracing::warn!("{notice}");
    }
}

async fn sync_loop(node: Arc<Node>) {
    let mut tick = tokio::time::interval(SYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = node.reconcile_all().await {
            tracing::warn!("registry sync: {e}");
        }
        node.consumers.reconcile(&node);
    }
}

/// PostgreSQL registry: reconcile as soon as another node announces a
/// change (the periodic sync stays as the safety net).
async fn listen_loop(node: Arc<Node>, url: String) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("registry LISTEN: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(registry::CHANGES_CHANNEL).await {
            tracing::warn!("registry LISTEN: {e}; retrying");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        // recv() reconnects by itself; an error here means it gave up.
        while let Ok(n) = listener.recv().await {
            let read_at = deployments::clock();
            match node.registry.module(n.payload()).await {
                Ok(record) => {
                    node.reconcile(&record, Some(read_at)).await;
                    node.consumers.reconcile(&node);
                }
                Err(_) => {
                    let _ = node.reconcile_all().await;
                }
            }
        }
    }
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The addresses `hosts` resolve to now (canonical); a name that does not
/// resolve is skipped (its backend is down or misnamed, and says so).
async fn resolve_hosts(hosts: &[String]) -> Arc<[std::net::IpAddr]> {
    let mut addrs = Vec::new();
    for host in hosts {
        let lookup = tokio::net::lookup_host((host.as_str(), 0));
        match tokio::time::timeout(std::time::Duration::from_secs(2), lookup).await {
            Ok(Ok(found)) => addrs.extend(found.map(|a| warden_net::canonical(a.ip()))),
            Ok(Err(e)) => tracing::warn!("backend host {host}: cannot resolve: {e}"),
            Err(_) => tracing::warn!("backend host {host}: no DNS answer within 2s"),
        }
    }
    addrs.sort();
    addrs.dedup();
    addrs.into()
}
