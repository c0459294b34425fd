//! HTTP triggers: each request goes to the active module whose `[http]
//! route` is its longest prefix. Limits map to statuses: `rate` → 429,
//! `timeout` → 504, `max-instances` waits (backpressure).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::deployments::Routed;
use super::node::Node;
use crate::error::RunError;

/// Largest request body the ingress reads for a module.
const MAX_BODY: usize = 16 << 20;

pub fn router(node: Arc<Node>) -> Router {
    Router::new().fallback(handle).with_state(node)
}

async fn handle(State(node): State<Arc<Node>>, request: Request) -> Response {
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
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body above {MAX_BODY} bytes"),
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

fn plain(status: StatusCode, message: String) -> Response {
    (status, format!("{message}\n")).into_response()
}
