//! One lapin connection per `[amqp.<id>]`, opened on first use and reopened
//! after it broke, with a pool of confirm-mode channels shared by every
//! module. A module holds a channel only for one invocation.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warden_capability::{Backend, BackendSet, CapabilityError, Health};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a call waits for a free channel before giving up.
const CHANNEL_WAIT: Duration = Duration::from_secs(2);

/// One `[amqp.<id>]` entry of the host config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AmqpBackendConfig {
    /// `amqp://user:pass@host:port/vhost`
    pub url: String,
    /// Channels open at once for guest calls (all modules together).
    #[serde(default = "default_channels")]
    pub max_channels: usize,
}

fn default_channels() -> usize {
    32
}

pub struct AmqpBackend {
    pub id: String,
    url: String,
    /// The current connection; read by status without waiting.
    connection: Mutex<Option<Arc<Connection>>>,
    /// Held while (re)connecting, so one caller connects at a time.
    connecting: tokio::sync::Mutex<()>,
    /// Whether the broker is there; calls fail at once while it is not.
    health: Health,
    idle: Mutex<Vec<Channel>>,
    slots: Arc<Semaphore>,
    max_channels: usize,
    published: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AmqpBackendStatus {
    pub id: String,
    pub connected: bool,
    pub channels_in_use: usize,
    pub channels_idle: usize,
    pub published: u64,
    pub errors: u64,
}

/// Every `[amqp.<id>]` broker of the host.
pub type AmqpBackends = BackendSet<AmqpBackend>;

impl Backend for AmqpBackend {
    type Config = AmqpBackendConfig;
    type Status = AmqpBackendStatus;

    fn new(id: &str, config: &AmqpBackendConfig) -> Result<Self, String> {
        let uri = config
            .url
            .parse::<lapin::uri::AMQPUri>()
            .map_err(|e| format!("amqp.{id}.url: {e}"))?;
        if config.max_channels == 0 {
            return Err(format!("amqp.{id}.max-channels: must be at least 1"));
        }
        Ok(AmqpBackend {
            id: id.to_string(),
            url: config.url.clone(),
            connection: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            health: Health::new(
                format!("amqp backend {id}"),
                "broker",
                Some((uri.authority.host.clone(), uri.authority.port)),
            ),
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(config.max_channels)),
            max_channels: config.max_channels,
            published: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    fn status(&self) -> AmqpBackendStatus {
        let connected = self.connected().is_some();
        AmqpBackendStatus {
            id: self.id.clone(),
            connected,
            channels_in_use: self.max_channels - self.slots.available_permits(),
            channels_idle: self.idle.lock().unwrap_or_else(|p| p.into_inner()).len(),
            published: self.published.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

impl AmqpBackend {
    /// The shared connection, (re)opened when there is none or it broke.
    ///
    /// While the broker is down, calls fail at once with `unavailable` and
    /// one attempt at a time is made, at most every 250 ms (see
    /// [`Health`]). An attempt first probes the broker's port itself: lapin
    /// 4.12 keeps about 10 KB of every connection attempt that fails (its
    /// I/O loop and internal RPC hold each other), so lapin is asked to
    /// connect only to a port that answers, and failed handshakes back off
    /// exponentially.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>, CapabilityError> {
        if let Some(c) = self.connected() {
            return Ok(c);
        }
        // Passing the check while down means this caller's turn to try.
        let my_turn = self.health.is_down();
        self.health
            .check()
            .await
            .inspect_err(|_| self.count_error())?;
        // One caller connects; the others wait for its result.
        let _connecting = self.connecting.lock().await;
        if let Some(c) = self.connected() {
            return Ok(c);
        }
        // The attempt of a caller ahead failed while this one waited.
        if !my_turn && self.health.is_down() {
            self.count_error();
            return Err(self.health.down_error());
        }
        // Channels of a broken connection are useless.
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        if let Err(e) = self.health.probe().await {
            self.count_error();
            return Err(self.health.went_down(e, false));
        }
        let connect = Connection::connect(&self.url, ConnectionProperties::default());
        let failed = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(c)) => {
                let conn = Arc::new(c);
                self.health.recovered();
                *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
                return Ok(conn);
            }
            Ok(Err(e)) => format!("cannot connect: {e}"),
            Err(_) => format!("cannot connect within {CONNECT_TIMEOUT:?}"),
        };
        self.count_error();
        Err(self.health.went_down(failed, true))
    }

    /// The shared connection, if it is open.
    fn connected(&self) -> Option<Arc<Connection>> {
        let slot = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().filter(|c| c.status().connected()).cloned()
    }

    /// A confirm-mode channel for one guest handle; it goes back to the
    /// pool when the lease drops (or is closed when it is unusable).
    pub(crate) async fn lease(self: &Arc<Self>) -> Result<Lease, CapabilityError> {
        let permit = tokio::time::timeout(CHANNEL_WAIT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                CapabilityError::Unavailable(format!(
                    "amqp backend {}: all {} channels busy for {CHANNEL_WAIT:?}",
                    self.id, self.max_channels
                ))
            })?
            .map_err(|_| CapabilityError::Unavailable("amqp backend closed".into()))?;
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            std::iter::from_fn(|| idle.pop()).find(|c| c.status().connected())
        };
        let channel = match reused {
            Some(c) => c,
            None => self.new_channel(true).await?,
        };
        Ok(Lease {
            backend: self.clone(),
            channel: Some(channel),
            unsettled: AtomicUsize::new(0),
            _permit: permit,
        })
    }

    /// A channel outside the pool (consumers own theirs).
    pub(crate) async fn new_channel(&self, confirms: bool) -> Result<Channel, CapabilityError> {
        let conn = self.connection().await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| self.unavailable(format!("cannot open a channel: {e}")))?;
        if confirms {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| self.unavailable(format!("confirm.select: {e}")))?;
        }
        Ok(channel)
    }

    fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unavailable(&self, detail: String) -> CapabilityError {
        self.errors.fetch_add(1, Ordering::Relaxed);
        CapabilityError::Unavailable(format!("amqp backend {}: {detail}", self.id))
    }

    /// Maps a broker error: soft channel errors (404, 403, 406) are the
    /// caller's; anything else means the broker is not usable right now.
    pub(crate) fn error(&self, what: &str, e: lapin::Error) -> CapabilityError {
        use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
        self.errors.fetch_add(1, Ordering::Relaxed);
        let detail = format!("amqp backend {}: {what}: {e}", self.id);
        match e.kind() {
            lapin::ErrorKind::ProtocolError(p) => match p.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => CapabilityError::NotFound(detail),
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => {
                    CapabilityError::Denied(detail)
                }
                AMQPErrorKind::Soft(_) => CapabilityError::Backend(detail),
                AMQPErrorKind::Hard(_) => CapabilityError::Unavailable(detail),
            },
            _ => CapabilityError::Unavailable(detail),
        }
    }

    pub(crate) fn published(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
    }
}

/// A pooled channel held by one guest handle.
pub(crate) struct Lease {
    backend: Arc<AmqpBackend>,
    channel: Option<Channel>,
    /// Deliveries taken and not yet acked or nacked. A channel that still
    /// holds some is closed, not pooled: closing requeues them.
    unsettled: AtomicUsize,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    pub(crate) fn channel(&self) -> &Channel {
        self.channel.as_ref().expect("present until drop")
    }

    pub(crate) fn backend(&self) -> &Arc<AmqpBackend> {
        &self.backend
    }

    pub(crate) fn taken(&self) {
        self.unsettled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn settled(&self) {
        self.unsettled.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(channel) = self.channel.take() else {
            return;
        };
        if self.unsettled.load(Ordering::Relaxed) == 0 && channel.status().connected() {
            self.backend
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(channel);
        } else if channel.status().connected()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = channel.close(200, "warden: invocation ended".into()).await;
            });
        }
    }
}
