//! HTTP triggers: each request goes to the active module whose `[http]
//! route` is its longest prefix. Limits map to statuses: `rate` → 429,
//! `timeout` → 504, `max-instances` waits (backpressure).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use super::deployments::Routed;
use super::listener::Peer;
use super::node::Node;
use crate::error::RunError;

/// Largest request body the ingress reads for a module.
const MAX_BODY: usize = 16 << 20;

/// The ingress's shared state.
#[derive(Clone)]
struct Ingress {
    node: Arc<Node>,
    /// Body bytes held at once across requests (`server.body-budget`).
    budget: Arc<Semaphore>,
    /// Body bytes held per client address; one client gets a quarter of
    /// the budget, so it cannot starve the others' requests.
    per_client: PerClient,
    client_share: usize,
    body_timeout: std::time::Duration,
}

pub fn router(node: Arc<Node>) -> Router {
    let budget = Semaphore::new((node.config.body_budget.0 as usize).min(Semaphore::MAX_PERMITS));
    let total = node.config.body_budget.0 as usize;
    let state = Ingress {
        body_timeout: node.config.body_timeout.0,
        budget: Arc::new(budget),
        per_client: Arc::default(),
        client_share: (total / 4).max(MAX_BODY).min(total),
        node,
    };
    Router::new().fallback(handle).with_state(state)
}

async fn handle(State(ingress): State<Ingress>, request: Request) -> Response {
    let node = ingress.node.clone();
    let path = request.uri().path().to_string();
    let (deployed, version) = match node.deployments.route(&path) {
        Routed::Serving(d, v) => (d, v),
        Routed::Resting(d) => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{}: module is {}", d.name, d.state().as_str()),
            );
        }
        Routed::NotFound => {
            return plain(StatusCode::NOT_FOUND, format!("no module serves {path}"));
        }
    };
    let (parts, body) = request.into_parts();
    let client = parts.extensions.get::<Peer>().map(Peer::client);
    let (body, _held) =
        match tokio::time::timeout(ingress.body_timeout, read_body(body, &ingress, client)).await {
            Ok(Ok(read)) => read,
            Ok(Err(refusal)) => return refusal,
            Err(_) => {
                return plain(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "request body not received within {}",
                        humantime::format_duration(ingress.body_timeout)
                    ),
                );
            }
        };
    let request = http::Request::from_parts(parts, body);
    let started = Instant::now();
    let result = version.module.handle_http(request).await;
    node.after_invocation(
        &deployed,
        &version,
        "http",
        started,
        result.as_ref().map(|(_, out)| out),
    )
    .await;
    match result {
        Ok((response, _)) => {
            let mut out = Response::new(Body::from(response.body));
            *out.status_mut() =
                StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            for (name, value) in response.headers {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::try_from(value.as_str()),
                ) {
                    out.headers_mut().append(n, v);
                }
            }
            out
        }
        Err(e) => {
            let status = match &e {
                RunError::Refused(l) if l.limit == "rate" => StatusCode::TOO_MANY_REQUESTS,
                RunError::Refused(_) => StatusCode::SERVICE_UNAVAILABLE,
                RunError::Limit(l) if l.limit == "timeout" => StatusCode::GATEWAY_TIMEOUT,
                RunError::Failed(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            plain(status, format!("{}: {e}", deployed.name))
        }
    }
}

/// Reads a body of at most [`MAX_BODY`], taking each frame's bytes from
/// the shared budget as they arrive (a client that sends nothing holds
/// nothing). The permit is held until the response is done.
async fn read_body(
    mut body: Body,
    ingress: &Ingress,
    client: Option<IpAddr>,
) -> Result<(bytes::Bytes, Held), Response> {
    let budget = &ingress.budget;
    let mut buf = bytes::BytesMut::new();
    let mut held = Held {
        permit: None,
        client: client.map(|ip| (ip, ingress.per_client.clone())),
        bytes: 0,
    };
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| plain(StatusCode::BAD_REQUEST, format!("request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > MAX_BODY {
            return Err(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body above {MAX_BODY} bytes"),
            ));
        }
        if let Some((ip, per_client)) = &held.client {
            let mut map = per_client.lock().unwrap_or_else(|p| p.into_inner());
            let mine = map.entry(*ip).or_default();
            if *mine + data.len() > ingress.client_share {
                return Err(plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "server busy: this client's request bodies in flight use its share ({} bytes) of the body budget",
                        ingress.client_share
                    ),
                ));
            }
            *mine += data.len();
            held.bytes += data.len();
        }
        let permit = budget
            .clone()
            .try_acquire_many_owned(data.len() as u32)
            .map_err(|_| {
                plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server busy: request bodies in flight use the whole body budget".into(),
                )
            })?;
        match &mut held.permit {
            Some(h) => h.merge(permit),
            None => held.permit = Some(permit),
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), held))
}

/// Body bytes held per client address.
type PerClient = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Body bytes a request holds of the budget and of its client's share,
/// given back when the response is done.
struct Held {
    permit: Option<OwnedSemaphorePermit>,
    client: Option<(IpAddr, PerClient)>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((ip, per_client)) = &self.client {
            let mut map = per_client.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(mine) = map.get_mut(ip) {
                *mine = mine.saturating_sub(self.bytes);
                if *mine == 0 {
                    map.remove(ip);
                }
            }
        }
    }
}

fn plain(status: StatusCode, message: String) -> Response {
    (status, format!("{message}\n")).into_response()
}
