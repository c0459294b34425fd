//! The server's host config (`warden.toml` for the server; README, "Serving modules").
//! Only the parts this warden implements are accepted; anything else is
//! rejected by name rather than silently ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use warden_amqp::AmqpBackendConfig;
use warden_capability::{ByteSize, HumanDuration};

use crate::compile::CompileLimits;
use warden_kafka::KafkaBackendConfig;
use warden_kv::KvBackendConfig;
use warden_sql::SqlBackendConfig;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    #[serde(default)]
    pub server: ServerConfig,
    /// `[sql.<id>]` backends, one shared pool each.
    #[serde(default)]
    pub sql: BTreeMap<String, SqlBackendConfig>,
    /// `[kv.<id>]` Redis backends, one shared connection each.
    #[serde(default)]
    pub kv: BTreeMap<String, KvBackendConfig>,
    /// `[kafka.<id>]` clusters, one shared producer each.
    #[serde(default)]
    pub kafka: BTreeMap<String, KafkaBackendConfig>,
    /// `[amqp.<id>]` brokers, one shared connection and channel pool each.
    #[serde(default)]
    pub amqp: BTreeMap<String, AmqpBackendConfig>,
    /// `[fs]`: where `[grants.fs]` host paths may point.
    #[serde(default)]
    pub fs: FsConfig,
}

/// `[fs]` of the host config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// Root name → directory. A grant's `host` is opened beneath the root
    /// its `root` key names (`files` when absent), never through a symlink.
    /// `files` is `<data-dir>/files` unless set here.
    #[serde(default)]
    pub roots: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// HTTP triggers (`[http] route` of each module).
    #[serde(default = "default_ingress")]
    pub ingress: SocketAddr,
    /// The management API and `/metrics`.
    #[serde(default = "default_admin")]
    pub admin: SocketAddr,
    /// `"sqlite"` (in the data dir) or a `postgres://` URL shared by many nodes.
    #[serde(default = "default_registry")]
    pub registry: String,
    /// Bearer tokens of the management API. None: one admin token is
    /// generated into `<data-dir>/admin.token` on first start.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Largest upload (component + manifest) the API accepts.
    #[serde(default = "default_max_upload")]
    pub max_upload: ByteSize,
    /// Failed invocations in a row (traps, limit breaches) after which a
    /// module is marked `failed` and stops serving.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// Time a client has to send a request's headers (also how long an
    /// idle keep-alive connection stays open), on both listeners.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: HumanDuration,
    /// Time an ingress client has to send a request body.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: HumanDuration,
    /// Time one write of a response may stay blocked on a client that does
    /// not read; then its connection is closed. Both listeners.
    #[serde(default = "default_write_timeout")]
    pub write_timeout: HumanDuration,
    /// Connections open at once, per listener; more are closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections open at once from one client IP, per listener.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Request body bytes the ingress holds at once across all requests;
    /// beyond it requests are answered 503 instead of buffered.
    #[serde(default = "default_body_budget")]
    pub body_budget: ByteSize,
    /// Let a module's `[http] route` sit under another module's (`/a/b`
    /// under `/a`). Off: a tenant cannot take over part of another's tree.
    #[serde(default)]
    pub allow_nested_routes: bool,
    /// Memory the process compiling one upload may use.
    #[serde(default = "default_compile_memory")]
    pub compile_memory: ByteSize,
    /// Time compiling one upload may take.
    #[serde(default = "default_compile_timeout")]
    pub compile_timeout: HumanDuration,
    /// Uploads compiled at once; more are answered 503 (busy).
    #[serde(default = "default_compile_concurrency")]
    pub compile_concurrency: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    /// Hex sha256 of the token; the token itself is never stored.
    pub sha256: String,
    pub role: Role,
    /// Module-name globs this token may see and act on (`["orders-*"]`);
    /// absent: every module.
    #[serde(default)]
    pub modules: Option<Vec<String>>,
    /// Bytes of components the versions this token uploaded may hold.
    #[serde(default)]
    pub quota: Option<ByteSize>,
    /// Backends its modules may be granted, as `<kind>.<id>` (`sql.main`,
    /// `kv.redis`, `kafka.events`, `amqp.rabbit`); absent: every backend.
    #[serde(default)]
    pub backends: Option<Vec<String>>,
}

/// What a management API token may do; each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Deployer,
    Admin,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            ingress: default_ingress(),
            admin: default_admin(),
            registry: default_registry(),
            tokens: Vec::new(),
            max_upload: default_max_upload(),
            failure_threshold: default_failure_threshold(),
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            write_timeout: default_write_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            body_budget: default_body_budget(),
            allow_nested_routes: false,
            compile_memory: default_compile_memory(),
            compile_timeout: default_compile_timeout(),
            compile_concurrency: default_compile_concurrency(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(".warden")
}

fn default_ingress() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}

fn default_registry() -> String {
    "sqlite".into()
}

fn default_max_upload() -> ByteSize {
    ByteSize(64 << 20)
}

fn default_failure_threshold() -> u32 {
    5
}

fn default_header_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}

fn default_body_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

fn default_write_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

fn default_max_connections() -> usize {
    1024
}

fn default_max_connections_per_ip() -> usize {
    64
}

fn default_body_budget() -> ByteSize {
    ByteSize(256 << 20)
}

fn default_compile_memory() -> ByteSize {
    ByteSize(CompileLimits::default().memory)
}

fn default_compile_concurrency() -> usize {
    CompileLimits::default().concurrent
}

fn default_compile_timeout() -> HumanDuration {
    HumanDuration(CompileLimits::default().timeout)
}

impl ServerConfig {
    /// The compile limits this config sets, over the defaults.
    pub fn compile_limits(&self) -> CompileLimits {
        CompileLimits {
            memory: self.compile_memory.0,
            timeout: self.compile_timeout.0,
            concurrent: self.compile_concurrency,
            ..CompileLimits::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid host config {file}: {path}: {message}")]
pub struct HostConfigError {
    file: String,
    path: String,
    message: String,
}

impl HostConfig {
    /// The host names and addresses (lower-cased, no port) of every
    /// configured backend: a scoped token's `[grants.net]` may not reach
    /// them around the capability that guards them.
    pub fn backend_hosts(&self) -> Vec<String> {
        let urls = self.sql.values().flat_map(|b| {
            [
                Some(&b.url),
                b.read_only_url.as_ref(),
                b.control_url.as_ref(),
            ]
            .into_iter()
            .flatten()
        });
        let urls = urls
            .chain(self.kv.values().map(|b| &b.url))
            .chain(self.amqp.values().map(|b| &b.url));
        let registry = self
            .server
            .registry
            .starts_with("postgres")
            .then_some(&self.server.registry);
        let mut hosts: Vec<String> = urls
            .chain(registry)
            .filter(|u| !u.starts_with("sqlite:"))
            .filter_map(|u| url_host(u))
            .collect();
        for kafka in self.kafka.values() {
            hosts.extend(kafka.bootstrap_servers.split(',').filter_map(|b| {
                // `PLAINTEXT://host:port` is a spelling librdkafka accepts.
                let b = b.trim();
                let b = b.split_once("://").map_or(b, |(_, rest)| rest);
                let (host, _port) = b.rsplit_once(':')?;
                Some(unbracket(host))
            }));
        }
        hosts.retain(|h| !h.is_empty());
        hosts.sort();
        hosts.dedup();
        hosts
    }

    pub fn load(file: &Path) -> Result<HostConfig, HostConfigError> {
        let err = |path: String, message: String| HostConfigError {
            file: file.display().to_string(),
            path,
            message,
        };
        let text = std::fs::read_to_string(file).map_err(|e| err("file".into(), e.to_string()))?;
        let de = toml::Deserializer::parse(&text)
            .map_err(|e| err("config".into(), format!("TOML syntax: {}", e.message())))?;
        let mut config: HostConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| err(e.path().to_string(), e.inner().message().to_string()))?;
        // Relative paths (data dir, SQLite files) are relative to the config file.
        let dir = file.parent().unwrap_or(Path::new("."));
        if config.server.data_dir.is_relative() {
            config.server.data_dir = dir.join(&config.server.data_dir);
        }
        for root in config.fs.roots.values_mut() {
            if root.is_relative() {
                *root = dir.join(&*root);
            }
        }
        for backend in config.sql.values_mut() {
            if let Some(path) = backend.url.strip_prefix("sqlite://")
                && !path.starts_with('/')
                && !path.starts_with(":memory:")
            {
                backend.url = format!("sqlite://{}", dir.join(path).display());
            }
        }
        Ok(config)
    }
}

/// The host of `scheme://[user[:password]@]host[:port][/path][?query]`.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next()?
    } else {
        host_port.split(':').next()?
    };
    Some(unbracket(host))
}

fn unbracket(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod backend_host_tests {
    use super::url_host;

    #[test]
    fn url_hosts_ignore_credentials_ports_and_paths() {
        for (url, host) in [
            ("postgres://u:p@db.Example:6432/app?x=1", "db.example"),
            ("redis://127.0.0.1:6379/0", "127.0.0.1"),
            ("amqp://guest:guest@[::1]:5672/%2f", "::1"),
            ("mysql://root@localhost/test", "localhost"),
            ("postgres://a:b@c@db2", "db2"),
        ] {
            assert_eq!(url_host(url).as_deref(), Some(host), "{url}");
        }
        assert_eq!(url_host("sqlite://x.db").as_deref(), Some("x.db"));
    }
}
