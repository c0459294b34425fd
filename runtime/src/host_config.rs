//! The server's host config (`warden.toml` for the server; README, "Serving modules").
//! Only the parts this warden implements are accepted; anything else is
//! rejected by name rather than silently ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use warden_capability::{ByteSize, Capability, HumanDuration, url_host};

use crate::compile::CompileLimits;

macro_rules! host_config {
    ($($kind:ident: $cap:ty),* $(,)?) => {
        /// The whole host config: `[server]`, `[fs]`, and one section per
        /// capability of `capabilities.rs` (`[sql.<id>]`, `[kv.<id>]`, ...),
        /// each building that capability's shared backends.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct HostConfig {
            #[serde(default)]
            pub server: ServerConfig,
            /// `[fs]`: where `[grants.fs]` host paths may point.
            #[serde(default)]
            pub fs: FsConfig,
            $(#[serde(default)]
            pub $kind: <$cap as Capability>::Config,)*
        }

        impl HostConfig {
            /// Every capability's backend hosts (see [`Self::backend_hosts`]).
            fn capability_hosts(&self) -> Vec<String> {
                let mut hosts = Vec::new();
                $(hosts.extend(<$cap>::backend_hosts(&self.$kind));)*
                hosts
            }

            /// Every capability's paths made relative to `dir`.
            fn capabilities_relative_to(&mut self, dir: &Path) {
                $(<$cap>::relative_to(&mut self.$kind, dir);)*
            }
        }
    };
}

crate::capabilities::for_each_capability!(host_config);

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
        let registry = self.server.registry.starts_with("postgres");
        let registry = registry.then(|| url_host(&self.server.registry)).flatten();
        let mut hosts = self.capability_hosts();
        hosts.extend(registry);
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
        config.capabilities_relative_to(dir);
        Ok(config)
    }
}
