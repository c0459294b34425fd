//! Accepting connections without trusting clients: a cap on connections
//! per listener and per client (an IPv4 address or an IPv6 /64; over it, a
//! connection is closed at once, before a byte is read), a header-read
//! timeout that also ends idle keep-alive connections, and a write timeout
//! for clients that stop reading. `axum::serve` has none of these.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

/// How a listener treats its clients.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Time a client has to send a request's headers, counted from when
    /// the server starts waiting for them (so idle keep-alive too).
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one client ([`client_key`]); None:
    /// no cap.
    pub max_per_ip: Option<usize>,
    /// Time one write to a client may stay blocked (the client is not
    /// reading): then the connection is closed, or a client that never
    /// reads would hold it, and its pipelined requests, for good.
    pub write_timeout: Duration,
}

impl ConnLimits {
    /// The limits `[server]` sets; both listeners get the same caps, so
    /// whoever reaches the API cannot hold every slot from one address.
    pub fn of(config: &crate::host_config::ServerConfig) -> Self {
        Self {
            header_timeout: config.header_timeout.0,
            max_connections: config.max_connections,
            max_per_ip: Some(config.max_connections_per_ip),
            write_timeout: config.write_timeout.0,
        }
    }
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
    let mut refused_per_client: u64 = 0;
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
        let Some(ip_slot) = IpSlot::take(&per_ip, client_key(peer.ip()), limits.max_per_ip) else {
            refused_per_client += 1;
            if refused_per_client.is_power_of_two() {
                tracing::warn!(
                    "per-client connection cap of {} reached (last by {}): {refused_per_client} connections refused so far",
                    limits.max_per_ip.unwrap_or_default(),
                    client_key(peer.ip())
                );
            }
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
            .serve_connection(
                TokioIo::new(WriteTimeout::new(stream, limits.write_timeout)),
                service,
            );
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

/// Whom the per-client caps count: an IPv4 address (also when it comes
/// IPv4-mapped), or an IPv6 /64, the block one client usually holds (per
/// address, one host could take every slot with addresses of its /64).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// A stream whose writes fail with `TimedOut` once they have been blocked
/// for the timeout without [`MIN_PROGRESS`] bytes getting through: a
/// client draining a few bytes now and then holds the connection no
/// longer than one that reads nothing. Reads are the header and body
/// timeouts' business.
struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Armed at a blocked write: the deadline, and the bytes written since.
    blocked: Option<(Pin<Box<Sleep>>, usize)>,
}

/// Bytes that must get through within one write timeout of a blocked
/// write (0.5 KiB/s at the default 30 s).
const MIN_PROGRESS: usize = 16 << 10;

impl<S> WriteTimeout<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            blocked: None,
        }
    }

    /// Counts what a ready write got through; a pending one arms (or
    /// checks) the deadline.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
        written: impl FnOnce(&T) -> usize,
    ) -> Poll<std::io::Result<T>> {
        if let Poll::Ready(result) = &polled {
            if let (Ok(value), Some((_, progress))) = (result, self.blocked.as_mut()) {
                *progress += written(value);
                if *progress >= MIN_PROGRESS {
                    self.blocked = None;
                }
            }
            return polled;
        }
        let timeout = self.timeout;
        let (timer, _) = self
            .blocked
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep(timeout)), 0));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not read its response in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // Not a sign of progress: a client may send requests and read nothing.
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled, |n| *n)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled, |n| *n)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled, |()| 0)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled, |()| 0)
    }
}

/// One connection counted against its client until dropped.
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

impl Peer {
    /// Whom per-client budgets count ([`client_key`]).
    pub fn client(&self) -> IpAddr {
        client_key(self.0.ip())
    }
}

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{WriteTimeout, client_key};

    /// Writes 1 KiB at a time, under a 300 ms write timeout, to a peer
    /// reading up to `chunk` bytes every 100 ms; for at most 3 s. The
    /// error, if the writes failed in that time.
    async fn write_to_reader(chunk: usize) -> Option<std::io::ErrorKind> {
        let (server, mut client) = tokio::io::duplex(chunk);
        let mut server = WriteTimeout::new(server, Duration::from_millis(300));
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; chunk];
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if matches!(client.read(&mut buf).await, Ok(0) | Err(_)) {
                    break;
                }
            }
        });
        let written = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                server.write_all(&[b'x'; 1024]).await?;
            }
        })
        .await;
        reader.abort();
        match written {
            Ok(Err::<(), std::io::Error>(e)) => Some(e.kind()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_reader_draining_a_trickle_is_cut_off_and_a_steady_one_is_not() {
        // 1 KiB per 100 ms: ~3 KiB per write timeout, under MIN_PROGRESS.
        assert_eq!(
            write_to_reader(1024).await,
            Some(std::io::ErrorKind::TimedOut)
        );
        // 64 KiB per 100 ms: writes block between reads, and go on.
        assert_eq!(write_to_reader(64 << 10).await, None);
    }

    #[test]
    fn clients_are_ipv4_addresses_or_ipv6_64s() {
        let key = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(key("203.0.113.5"), "203.0.113.5");
        assert_eq!(key("::ffff:203.0.113.5"), "203.0.113.5");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:ffff::9"), "2001:db8:1:2::");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }
}
