//! The server's host config (`warden.toml` for the server, DESIGN.md).
//! Only the parts this warden implements are accepted; anything else is
//! rejected by name rather than silently ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use warden_amqp::AmqpBackendConfig;
use warden_capability::ByteSize;
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    /// Hex sha256 of the token; the token itself is never stored.
    pub sha256: String,
    pub role: Role,
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

#[derive(Debug, thiserror::Error)]
#[error("invalid host config {file}: {path}: {message}")]
pub struct HostConfigError {
    file: String,
    path: String,
    message: String,
}

impl HostConfig {
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
