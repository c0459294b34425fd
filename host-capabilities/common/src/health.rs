//! Whether a backend's server is there at all. Drivers retry a refused
//! connection until a deadline (sqlx), once per call (redis), or leak a
//! little per failed attempt (lapin), so during an outage every call would
//! wait, hold quota slots that later calls are told are "in use", or grow
//! the host. Instead, once a backend is known to be down, calls fail at
//! once with `unavailable` naming it, and one caller at a time probes the
//! server's port (a plain TCP connect) every [`RETRY`] until it answers.
//! The backend says when a real call succeeded again ([`Health::recovered`]).
//! A server that accepts connections but does not answer (a frozen Kafka
//! broker) needs a probe that speaks its protocol: [`Health::with_probe`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::CapabilityError;

/// How long reaching the server's port (or a custom probe) may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Wait between attempts while the server is down.
pub const RETRY: Duration = Duration::from_millis(250);
/// Longest wait after repeated failures past the port (a handshake).
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The up/down state of one backend. Clones share it.
#[derive(Clone)]
pub struct Health(Arc<State>);

struct State {
    /// Names the backend in errors: `sql backend main`.
    label: String,
    /// What is down: `database`, `broker`, `Redis`.
    what: &'static str,
    probe: Probe,
    down: AtomicBool,
    outage: Mutex<Option<Outage>>,
    /// Set while one probe runs.
    probing: AtomicBool,
    /// When a probe last found the port open: a busy pool makes many calls
    /// slow, and each probe costs the server a connection (PostgreSQL forks
    /// for it), so a healthy backend is probed at most once per [`RETRY`].
    last_open: Mutex<Option<Instant>>,
}

/// A backend's own check that its server answers, within [`PROBE_TIMEOUT`].
pub type ProbeFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

enum Probe {
    /// SQLite, Unix sockets: never probed.
    Never,
    /// A plain TCP connect to `host:port`.
    Port(String, u16),
    Custom(ProbeFn),
}

/// A probe in progress; gives the flag back on drop.
struct Probing(Health);

impl Drop for Probing {
    fn drop(&mut self) {
        self.0.0.probing.store(false, Ordering::Release);
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
    /// A gate probing `address` (`host`, `port`) with a TCP connect; None:
    /// never probed.
    pub fn new(label: String, what: &'static str, address: Option<(String, u16)>) -> Self {
        let probe = match address {
            Some((host, port)) => Probe::Port(host, port),
            None => Probe::Never,
        };
        Self::with(label, what, probe)
    }

    /// A gate whose probe is the backend's own.
    pub fn with_probe(label: String, what: &'static str, probe: ProbeFn) -> Self {
        Self::with(label, what, Probe::Custom(probe))
    }

    fn with(label: String, what: &'static str, probe: Probe) -> Self {
        Self(Arc::new(State {
            label,
            what,
            probe,
            down: AtomicBool::new(false),
            outage: Mutex::new(None),
            probing: AtomicBool::new(false),
            last_open: Mutex::new(None),
        }))
    }

    /// Before a call: `unavailable` at once while the backend is down and no
    /// attempt is due. When one is due, one caller probes the port; if it
    /// answers, that caller goes ahead (and reports [`Health::recovered`]
    /// or [`Health::went_down`] after), the others still fail until the
    /// next attempt is due.
    pub async fn check(&self) -> Result<(), CapabilityError> {
        if !self.is_down() {
            return Ok(());
        }
        let due = {
            let outage = self.outage();
            outage.as_ref().is_none_or(|o| Instant::now() >= o.next_try)
        };
        if due && let Some(probe) = self.spawn_probe() {
            return match probe.await {
                Ok(true) => Ok(()),
                _ => Err(self.down_error()),
            };
        }
        Err(self.down_error())
    }

    /// [`Health::check`] within the call's deadline. The probe goes on after
    /// the caller stops waiting and records what it found.
    pub async fn check_until(&self, deadline: Instant) -> Result<(), CapabilityError> {
        match tokio::time::timeout_at(deadline.into(), self.check()).await {
            Ok(checked) => checked,
            Err(_) => Err(self.not_answering()),
        }
    }

    /// After a call failed (or is slow) for reasons that may be an outage:
    /// if the server's port is closed, the backend is down and this is the
    /// error to give. One probe at a time: a busy pool makes many calls slow.
    pub async fn after_trouble(&self) -> Option<CapabilityError> {
        if self.is_down() {
            return Some(self.down_error());
        }
        let recently_open = self
            .0
            .last_open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < RETRY);
        if recently_open {
            return None;
        }
        match self.spawn_probe()?.await {
            Ok(true) => None,
            _ => Some(self.down_error()),
        }
    }

    /// [`Health::after_trouble`] within the call's deadline: a probe still
    /// running then is no verdict (None), and records its outcome later.
    pub async fn after_trouble_until(&self, deadline: Instant) -> Option<CapabilityError> {
        tokio::time::timeout_at(deadline.into(), self.after_trouble())
            .await
            .ok()
            .flatten()
    }

    /// True while an outage is recorded.
    pub fn is_down(&self) -> bool {
        self.0.down.load(Ordering::Acquire)
    }

    /// The error a call gets while the backend is down.
    pub fn down_error(&self) -> CapabilityError {
        let outage = self.outage();
        let detail = match outage.as_ref() {
            Some(o) => format!("unreachable for {:.1?}: {}", o.since.elapsed(), o.error),
            None => "unreachable".into(),
        };
        CapabilityError::Unavailable(format!("{}: {} {detail}", self.0.label, self.0.what))
    }

    /// A call's deadline passed while its server's port was being probed.
    fn not_answering(&self) -> CapabilityError {
        CapabilityError::Unavailable(format!(
            "{}: {} not answering (the call's deadline passed while its port was probed)",
            self.0.label, self.0.what
        ))
    }

    /// Records a failed attempt. `deep`: the port answered but the server
    /// did not (a handshake failed): such attempts back off exponentially.
    pub fn went_down(&self, error: String, deep: bool) -> CapabilityError {
        let now = Instant::now();
        {
            let mut outage = self.outage();
            let o = outage.get_or_insert_with(|| {
                tracing::warn!("{}: {} down: {error}", self.0.label, self.0.what);
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
            self.0.down.store(true, Ordering::Release);
        }
        self.down_error()
    }

    /// A real call succeeded: the outage, if any, is over.
    pub fn recovered(&self) {
        if !self.is_down() {
            return;
        }
        let ended = self.outage().take();
        self.0.down.store(false, Ordering::Release);
        if let Some(o) = ended {
            tracing::info!(
                "{}: {} back after {:.1?}",
                self.0.label,
                self.0.what,
                o.since.elapsed()
            );
        }
    }

    fn outage(&self) -> std::sync::MutexGuard<'_, Option<Outage>> {
        self.0.outage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The right to probe, held until dropped.
    fn start_probe(&self) -> Option<Probing> {
        self.0
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Probing(self.clone()))
    }

    /// Probes in a task of its own, which records the outcome: a caller cut
    /// off by its deadline must not lose a finding (an outage would go
    /// unrecorded and every later call would wait again). None while
    /// another probe runs. The task answers whether the port was open.
    fn spawn_probe(&self) -> Option<tokio::task::JoinHandle<bool>> {
        let probing = self.start_probe()?;
        Some(tokio::spawn(async move {
            let health = &probing.0;
            match health.probe().await {
                Ok(()) => {
                    let now = Instant::now();
                    *health.0.last_open.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
                    // A backend's own probe got an answer from the server
                    // itself: it is up (and a caller whose calls keep
                    // failing for other reasons cannot hold it down).
                    if matches!(health.0.probe, Probe::Custom(_)) {
                        health.recovered();
                        return true;
                    }
                    // Still down until a real call succeeds: the next
                    // attempt is one [`RETRY`] away, not at once (an open
                    // port with a failing server would be probed hot).
                    if let Some(o) = health.outage().as_mut() {
                        o.next_try = o.next_try.max(now + RETRY);
                    }
                    true
                }
                Err(e) => {
                    health.went_down(e, false);
                    false
                }
            }
        }))
    }

    /// Whether the server answers: a plain TCP connect to its port, or
    /// the backend's own probe.
    pub async fn probe(&self) -> Result<(), String> {
        let (host, port) = match &self.0.probe {
            Probe::Never => return Ok(()),
            Probe::Custom(probe) => {
                return match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                    Ok(answered) => answered,
                    Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
                };
            }
            Probe::Port(host, port) => (host, port),
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
    use std::time::{Duration, Instant};

    use super::{Health, PROBE_TIMEOUT, RETRY};

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

    /// A loopback listener whose accept queue is full and never drained:
    /// further connects wait (the kernel drops their SYNs), like a
    /// blackholed server.
    async fn blackhole() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>, u16) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let c = tokio::net::TcpSocket::new_v4().unwrap();
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_millis(50), c.connect(addr)).await
            {
                fillers.push(s);
            }
        }
        (listener, fillers, addr.port())
    }

    #[tokio::test]
    async fn a_caller_cut_off_by_its_deadline_mid_probe_still_gets_the_outage_recorded() {
        let (_listener, _fillers, port) = blackhole().await;
        let h = Health::new("b".into(), "server", Some(("127.0.0.1".into(), port)));
        let start = Instant::now();
        let verdict = h
            .after_trouble_until(Instant::now() + Duration::from_millis(20))
            .await;
        assert!(verdict.is_none(), "no verdict within the deadline");
        assert!(start.elapsed() < Duration::from_millis(200));
        assert!(!h.is_down());
        // The probe ran on and found the port not answering.
        tokio::time::sleep(PROBE_TIMEOUT + Duration::from_millis(100)).await;
        assert!(h.is_down(), "the outage was recorded");
        assert!(h.start_probe().is_some(), "probing was given back");
        let err = h.down_error().to_string();
        assert!(err.contains("within 500ms"), "{err}");

        // Down: a check due for a probe is cut off at its deadline too,
        // with `unavailable`, and the probe again records the outcome.
        tokio::time::sleep(RETRY).await;
        let err = h
            .check_until(Instant::now() + Duration::from_millis(20))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not answering"), "{err}");
    }

    #[tokio::test]
    async fn an_open_port_lets_one_caller_try_per_retry_while_down() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let h = Health::new("b".into(), "server", Some(("127.0.0.1".into(), port)));
        h.went_down("handshake failed".into(), false);
        tokio::time::sleep(RETRY).await;
        h.check()
            .await
            .expect("due, and the port answers: one caller tries");
        // That caller has not reported yet (its server may still fail):
        // the next callers fail fast instead of probing hot.
        for _ in 0..10 {
            assert!(h.check().await.is_err());
        }
        tokio::time::sleep(RETRY).await;
        h.check().await.expect("one more try a retry later");
    }

    #[tokio::test]
    async fn failures_past_the_port_back_off() {
        let h = Health::new("b".into(), "broker", None);
        for _ in 0..3 {
            h.went_down("handshake".into(), true);
        }
        let next = h.outage().as_ref().unwrap().next_try;
        assert!(next > Instant::now() + RETRY * 4);
    }
}
