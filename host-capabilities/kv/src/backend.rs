//! One multiplexed Redis connection manager per `[kv.<id>]`, created once.
//! It reconnects by itself after an outage; calls made while Redis is down
//! fail with `unavailable`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::ConnectionAddr;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;
use tokio::sync::OnceCell;
use warden_capability::{Backend, BackendSet, Health};

/// One `[kv.<id>]` entry of the host config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvBackendConfig {
    /// `redis://host:port[/db]`
    pub url: String,
}

pub struct KvBackend {
    pub id: String,
    client: redis::Client,
    manager: OnceCell<ConnectionManager>,
    /// Whether Redis is there; calls fail at once while it is not.
    pub(crate) health: Health,
    calls: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KvBackendStatus {
    pub id: String,
    pub connected: bool,
    pub calls: u64,
    pub errors: u64,
}

/// Every `[kv.<id>]` backend of the host.
pub type KvBackends = BackendSet<KvBackend>;

impl Backend for KvBackend {
    type Config = KvBackendConfig;
    type Status = KvBackendStatus;

    fn new(id: &str, config: &KvBackendConfig) -> Result<Self, String> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| format!("kv.{id}: invalid url: {e}"))?;
        let address = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) => Some((host.clone(), *port)),
            ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
            _ => None,
        };
        Ok(KvBackend {
            id: id.to_string(),
            client,
            manager: OnceCell::new(),
            health: Health::new(format!("kv backend {id}"), "Redis", address),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    fn status(&self) -> KvBackendStatus {
        KvBackendStatus {
            id: self.id.clone(),
            connected: self.manager.initialized(),
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

impl KvBackend {
    /// The shared connection, created on first use (so a Redis that is down
    /// at start-up does not stop the host).
    pub(crate) async fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.manager
            .get_or_try_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(5)))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
            .inspect_err(|_| self.record_error())
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    pub(crate) fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}
