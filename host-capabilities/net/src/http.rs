use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::NetPolicy;

type ResponseFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;
type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// wasi:http hooks that send a request only to a granted `host:port`, over a
/// connection to the address the policy checked (no second DNS lookup).
pub struct GrantedHttpHooks {
    policy: Arc<NetPolicy>,
}

impl GrantedHttpHooks {
    pub fn new(policy: Arc<NetPolicy>) -> Self {
        Self { policy }
    }
}

impl WasiHttpHooks for GrantedHttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_error: IoFuture,
    ) -> ResponseFuture {
        let policy = self.policy.clone();
        Box::new(async move {
            let (res, io) = send(&policy, request, options).await?;
            Ok((res.map(|b| b.map_err(Error::from).boxed_unsync()), io))
        })
    }
}

async fn send(
    policy: &NetPolicy,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<Incoming>, IoFuture), Error> {
    let uri = request.uri().clone();
    let tls = uri.scheme() == Some(&Scheme::HTTPS);
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = match policy.resolve(host, port).await {
        Ok(addr) => addr,
        Err(why) => {
            policy.deny(format!("http {} {uri}: {why}", request.method()));
            return Err(Error::HttpRequestDenied);
        }
    };

    let opt = |f: fn(&RequestOptions) -> Option<Duration>| {
        options.as_ref().and_then(f).unwrap_or(DEFAULT_TIMEOUT)
    };
    let connect_timeout = opt(|o| o.connect_timeout);
    let first_byte_timeout = opt(|o| o.first_byte_timeout);

    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;

    // Only origin-form goes on the wire; scheme and authority are in Host.
    *request.uri_mut() = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    macro_rules! exchange {
        ($stream:expr) => {{
            let (mut sender, conn) = tokio::time::timeout(
                connect_timeout,
                hyper::client::conn::http1::handshake(TokioIo::new($stream)),
            )
            .await
            .map_err(|_| Error::ConnectionTimeout)??;
            let driver = tokio::spawn(conn);
            let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
                .await
                .map_err(|_| Error::ConnectionReadTimeout)??;
            let io = async move {
                match driver.await {
                    Ok(result) => result.map_err(Error::from),
                    Err(_) => Err(Error::ConnectionTerminated),
                }
            };
            Ok((response, Box::new(io) as IoFuture))
        }};
    }

    if tls {
        let name =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(Error::from)?;
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|_| Error::TlsProtocolError)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(Error::Tls)?;
        exchange!(stream)
    } else {
        exchange!(tcp)
    }
}
