//! Accepting connections without trusting clients: a cap on connections
//! per listener and per client IP (over it, a connection is closed at
//! once, before a byte is read), and a header-read timeout that also ends
//! idle keep-alive connections. `axum::serve` has none of these.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How a listener treats its clients.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Time a client has to send a request's headers, counted from when
    /// the server starts waiting for them (so idle keep-alive too).
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one IP address; None: no cap.
    pub max_per_ip: Option<usize>,
}

/// How long in-flight requests get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` under `limits` until `shutdown` resolves,
/// then lets open requests finish (at most [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(Mutex::new(HashMap::<IpAddr, usize>::new()));
    let mut refused: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, most likely: let some close.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    "connection cap of {} reached: {refused} connections refused so far",
                    limits.max_connections
                );
            }
            continue;
        };
        let Some(ip_slot) = IpSlot::take(&per_ip, peer.ip(), limits.max_per_ip) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(WithPeer {
            app: app.clone(),
            peer,
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(ip_slot);
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

/// One connection counted against its IP address until dropped.
struct IpSlot {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: Option<IpAddr>,
}

impl IpSlot {
    fn take(
        map: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        max: Option<usize>,
    ) -> Option<Self> {
        let Some(max) = max else {
            return Some(IpSlot {
                map: map.clone(),
                ip: None,
            });
        };
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            map: map.clone(),
            ip: Some(ip),
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else {
            return;
        };
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// The client address of a request, for per-client budgets.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The router, with each request tagged with its connection's [`Peer`].
#[derive(Clone)]
struct WithPeer {
    app: Router,
    peer: SocketAddr,
}

impl<B> tower_service::Service<http::Request<B>> for WithPeer
where
    Router: tower_service::Service<http::Request<B>>,
{
    type Response = <Router as tower_service::Service<http::Request<B>>>::Response;
    type Error = <Router as tower_service::Service<http::Request<B>>>::Error;
    type Future = <Router as tower_service::Service<http::Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<http::Request<B>>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(Peer(self.peer));
        self.app.call(request)
    }
}
