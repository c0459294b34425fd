//! Whether a backend's server is there at all. Drivers retry a refused
//! connection until a deadline (sqlx), once per call (redis), or leak a
//! little per failed attempt (lapin), so during an outage every call would
//! wait, hold quota slots that later calls are told are "in use", or grow
//! the host. Instead, once a backend is known to be down, calls fail at
//! once with `unavailable` naming it, and one caller at a time probes the
//! server's port (a plain TCP connect) every [`RETRY`] until it answers.
//! The backend says when a real call succeeded again ([`Health::recovered`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::CapabilityError;

/// How long reaching the server's port may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Wait between attempts while the server is down.
pub const RETRY: Duration = Duration::from_millis(250);
/// Longest wait after repeated failures past the port (a handshake).
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The up/down state of one backend.
pub struct Health {
    /// Names the backend in errors: `sql backend main`.
    label: String,
    /// What is down: `database`, `broker`, `Redis`.
    what: &'static str,
    /// `host:port` to probe; None (SQLite, Unix sockets): never probed.
    address: Option<(String, u16)>,
    down: AtomicBool,
    outage: Mutex<Option<Outage>>,
    /// Set while one caller probes.
    probing: AtomicBool,
    /// When a probe last found the port open: a busy pool makes many calls
    /// slow, and each probe costs the server a connection (PostgreSQL forks
    /// for it), so a healthy backend is probed at most once per [`RETRY`].
    last_open: Mutex<Option<Instant>>,
}

/// A probe in progress; gives the flag back on drop.
struct Probing<'a>(&'a AtomicBool);

impl Drop for Probing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

struct Outage {
    since: Instant,
    error: String,
    next_try: Instant,
    /// Failures past a port that answered (each backs off further).
    deep_failures: u32,
}

impl Health {
    pub fn new(label: String, what: &'static str, address: Option<(String, u16)>) -> Self {
        Self {
            label,
            what,
            address,
            down: AtomicBool::new(false),
            outage: Mutex::new(None),
            probing: AtomicBool::new(false),
            last_open: Mutex::new(None),
        }
    }

    /// Before a call: `unavailable` at once while the backend is down and no
    /// attempt is due. When one is due, one caller probes the port; if it
    /// answers, that caller goes ahead (and reports [`Health::recovered`]
    /// or [`Health::went_down`] after), the others still fail.
    pub async fn check(&self) -> Result<(), CapabilityError> {
        if !self.is_down() {
            return Ok(());
        }
        let due = {
            let outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
            outage.as_ref().is_none_or(|o| Instant::now() >= o.next_try)
        };
        if due && let Some(_probing) = self.start_probe() {
            return match self.probe().await {
                Ok(()) => Ok(()),
                Err(e) => Err(self.went_down(e, false)),
            };
        }
        Err(self.down_error())
    }

    /// After a call failed (or is slow) for reasons that may be an outage:
    /// if the server's port is closed, the backend is down and this is the
    /// error to give. One probe at a time: a busy pool makes many calls slow.
    pub async fn after_trouble(&self) -> Option<CapabilityError> {
        if self.is_down() {
            return Some(self.down_error());
        }
        let recently_open = self
            .last_open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < RETRY);
        if recently_open {
            return None;
        }
        let _probing = self.start_probe()?;
        match self.probe().await {
            Ok(()) => {
                *self.last_open.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                None
            }
            Err(e) => Some(self.went_down(e, false)),
        }
    }

    /// True while an outage is recorded.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// The error a call gets while the backend is down.
    pub fn down_error(&self) -> CapabilityError {
        let outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        let detail = match outage.as_ref() {
            Some(o) => format!("unreachable for {:.1?}: {}", o.since.elapsed(), o.error),
            None => "unreachable".into(),
        };
        CapabilityError::Unavailable(format!("{}: {} {detail}", self.label, self.what))
    }

    /// Records a failed attempt. `deep`: the port answered but the server
    /// did not (a handshake failed): such attempts back off exponentially.
    pub fn went_down(&self, error: String, deep: bool) -> CapabilityError {
        let now = Instant::now();
        {
            let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
            let o = outage.get_or_insert_with(|| {
                tracing::warn!("{}: {} down: {error}", self.label, self.what);
                Outage {
                    since: now,
                    error: String::new(),
                    next_try: now,
                    deep_failures: 0,
                }
            });
            let wait = if deep {
                o.deep_failures += 1;
                (RETRY * 2u32.saturating_pow(o.deep_failures)).min(RETRY_MAX)
            } else {
                RETRY
            };
            o.error.clone_from(&error);
            o.next_try = now + wait;
            self.down.store(true, Ordering::Release);
        }
        self.down_error()
    }

    /// A real call succeeded: the outage, if any, is over.
    pub fn recovered(&self) {
        if !self.is_down() {
            return;
        }
        let ended = self.outage.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.down.store(false, Ordering::Release);
        if let Some(o) = ended {
            tracing::info!(
                "{}: {} back after {:.1?}",
                self.label,
                self.what,
                o.since.elapsed()
            );
        }
    }

    /// The right to probe, held until dropped: a caller whose future is
    /// dropped mid-probe (its deadline) must not leave probing taken.
    fn start_probe(&self) -> Option<Probing<'_>> {
        self.probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Probing(&self.probing))
    }

    /// A plain TCP connect to the server's port.
    pub async fn probe(&self) -> Result<(), String> {
        let Some((host, port)) = &self.address else {
            return Ok(());
        };
        let connect = tokio::net::TcpStream::connect((host.as_str(), *port));
        match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot reach {host}:{port}: {e}")),
            Err(_) => Err(format!(
                "cannot reach {host}:{port} within {PROBE_TIMEOUT:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Health;

    #[tokio::test]
    async fn a_closed_port_is_down_at_once_and_a_real_success_ends_it() {
        // A port nothing listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let h = Health::new(
            "test backend t".into(),
            "server",
            Some(("127.0.0.1".into(), port)),
        );
        h.check().await.unwrap();
        let err = h.after_trouble().await.expect("down").to_string();
        assert!(err.contains("test backend t: server unreachable"), "{err}");
        assert!(h.check().await.is_err(), "fails fast until the next try");
        h.recovered();
        assert!(!h.is_down());
        h.check().await.unwrap();
    }

    #[tokio::test]
    async fn a_probe_dropped_half_way_leaves_the_next_one_free() {
        // A loopback listener whose accept queue is full and never drained:
        // further connects wait (the kernel drops their SYNs).
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let c = tokio::net::TcpSocket::new_v4().unwrap();
            if let Ok(Ok(s)) =
                tokio::time::timeout(std::time::Duration::from_millis(50), c.connect(addr)).await
            {
                fillers.push(s);
            }
        }
        let h = Health::new(
            "b".into(),
            "server",
            Some(("127.0.0.1".into(), addr.port())),
        );
        h.went_down("gone".into(), false);
        tokio::time::sleep(super::RETRY).await;
        let dropped = tokio::time::timeout(std::time::Duration::from_millis(20), h.check()).await;
        assert!(dropped.is_err(), "the probe was cut off");
        assert!(h.start_probe().is_some(), "probing was given back");
    }

    #[tokio::test]
    async fn failures_past_the_port_back_off() {
        let h = Health::new("b".into(), "broker", None);
        for _ in 0..3 {
            h.went_down("handshake".into(), true);
        }
        let next = h.outage.lock().unwrap().as_ref().unwrap().next_try;
        assert!(next > std::time::Instant::now() + super::RETRY * 4);
    }
}
