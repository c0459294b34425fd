//! The management API (README, "Serving modules"): JSON over HTTP, bearer
//! tokens with roles, request size limits. Errors are
//! `{"error": "...", "problems": [...]}` with every problem found.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Extension, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Caller, Tokens};
use super::node::{Node, NodeError, Transition};
use super::openapi;
use super::registry::RegistryError;
use crate::host_config::Role;
use crate::lifecycle::Hook;

pub struct Api {
    pub node: Arc<Node>,
    pub tokens: Tokens,
}

type Shared = State<Arc<Api>>;

/// Largest manifest an upload may carry (it is stored with every version).
const MAX_MANIFEST: usize = 256 << 10;

pub fn router(api: Arc<Api>) -> Router {
    let max_upload = api.node.config.max_upload.0 as usize;
    let viewer = Router::new()
        .route("/v1/modules", get(list))
        .route("/v1/modules/{name}", get(detail))
        .route("/v1/modules/{name}/versions", get(versions))
        .route("/v1/modules/{name}/health", get(health))
        .route("/v1/backends", get(backends))
        .route("/v1/audit", get(audit))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(api.clone(), viewer_only));
    let deployer = Router::new()
        .route("/v1/modules", post(upload))
        .route("/v1/modules/{name}/activate", post(activate))
        .route("/v1/modules/{name}/{action}", post(transition))
        .route_layer(middleware::from_fn_with_state(api.clone(), deployer_only));
    let admin = Router::new()
        .route("/v1/modules/{name}", axum::routing::delete(delete))
        .route("/v1/tokens", get(tokens))
        .route_layer(middleware::from_fn_with_state(api.clone(), admin_only));
    Router::new()
        .route(
            "/v1/openapi.json",
            get(|| async { Json(openapi::document()) }),
        )
        .merge(viewer)
        .merge(deployer)
        .merge(admin)
        .layer(DefaultBodyLimit::max(max_upload))
        .with_state(api)
}

/// An error response.
pub struct ApiError(StatusCode, String, Vec<String>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1, "problems": self.2}))).into_response()
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        NodeError::from(e).into()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Invalid(p) => {
                ApiError(StatusCode::UNPROCESSABLE_ENTITY, "rejected".into(), p)
            }
            NodeError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m, vec![]),
            NodeError::Conflict(m) => ApiError(StatusCode::CONFLICT, m, vec![]),
            NodeError::Unavailable(m) => ApiError(StatusCode::SERVICE_UNAVAILABLE, m, vec![]),
            NodeError::Forbidden(m) => ApiError(StatusCode::FORBIDDEN, m, vec![]),
        }
    }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into(), vec![])
}

async fn viewer_only(state: Shared, req: Request, next: Next) -> Response {
    authorize(state, req, next, Role::Viewer).await
}

async fn deployer_only(state: Shared, req: Request, next: Next) -> Response {
    authorize(state, req, next, Role::Deployer).await
}

async fn admin_only(state: Shared, req: Request, next: Next) -> Response {
    authorize(state, req, next, Role::Admin).await
}

/// Checks the bearer token's role, then hands the [`Caller`] to the handler
/// (which checks its module scope).
async fn authorize(State(api): Shared, mut req: Request, next: Next, needed: Role) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match api.tokens.check(header) {
        None => ApiError(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required".into(),
            vec![],
        )
        .into_response(),
        Some(c) if c.role < needed => ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "token {:?} has role {:?}; this needs {needed:?}",
                c.name, c.role
            )
            .to_lowercase(),
            vec![],
        )
        .into_response(),
        Some(c) => {
            req.extensions_mut().insert(c.clone());
            next.run(req).await
        }
    }
}

/// Refuses a module outside the caller's `modules` scope.
fn in_scope(caller: &Caller, module: &str) -> Result<(), ApiError> {
    if caller.may(module) {
        return Ok(());
    }
    Err(ApiError(
        StatusCode::FORBIDDEN,
        format!(
            "token {:?} may not act on module {module:?} (its modules: {})",
            caller.name,
            caller.modules.as_deref().unwrap_or_default().join(", ")
        ),
        vec![],
    ))
}

#[derive(Deserialize)]
struct UploadQuery {
    #[serde(default)]
    activate: bool,
}

async fn upload(
    State(api): Shared,
    Extension(caller): Extension<Caller>,
    Query(q): Query<UploadQuery>,
    mut form: Multipart,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (mut component, mut manifest) = (None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError(e.status(), format!("upload: {}", e.body_text()), vec![]))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let data = field
            .bytes()
            .await
            .map_err(|e| ApiError(e.status(), format!("upload: {}", e.body_text()), vec![]))?;
        match name.as_str() {
            "component" => component = Some(data),
            "manifest" => manifest = Some(data),
            other => return Err(bad_request(format!("unexpected form field {other:?}"))),
        }
    }
    let mut problems = Vec::new();
    if component.is_none() {
        problems.push("missing form field \"component\" (the .wasm file)".to_string());
    }
    let manifest = match manifest.map(|m| String::from_utf8(m.to_vec())) {
        Some(Ok(m)) if m.len() > MAX_MANIFEST => {
            problems.push(format!(
                "manifest is {} bytes; at most {MAX_MANIFEST} are accepted",
                m.len()
            ));
            None
        }
        None => {
            problems.push("missing form field \"manifest\" (warden.toml)".into());
            None
        }
        Some(Err(_)) => {
            problems.push("manifest is not UTF-8 text".into());
            None
        }
        Some(Ok(m)) => Some(m),
    };
    let (Some(component), Some(manifest), true) = (component, manifest, problems.is_empty()) else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "rejected".into(),
            problems,
        ));
    };
    let (uploaded, module) = api.node.upload(&component, &manifest, &caller).await?;
    if q.activate {
        api.node.activate_uploaded(&uploaded, module).await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "module": uploaded.module,
            "version": uploaded.version,
            "sha256": uploaded.sha256,
            "stored": uploaded.stored,
            "activated": q.activate,
        })),
    ))
}

async fn list(
    State(api): Shared,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let records = api.node.registry.modules().await?;
    let modules: Vec<Value> = records
        .into_iter()
        .filter(|r| caller.may(&r.name))
        .map(|r| {
            let in_flight = api
                .node
                .deployments
                .get(&r.name)
                .and_then(|d| d.current())
                .map_or(0, |v| v.module.in_flight());
            json!({
                "name": r.name,
                "state": r.state,
                "active_version": r.active_version,
                "in_flight": in_flight,
            })
        })
        .collect();
    Ok(Json(json!({ "modules": modules })))
}

async fn detail(
    State(api): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    in_scope(&caller, &name)?;
    let record = api.node.registry.module(&name).await?;
    let versions = api.node.registry.versions(&name).await?;
    let active = record
        .active_version
        .as_ref()
        .and_then(|v| versions.iter().find(|r| &r.version == v));
    let live = api.node.deployments.get(&name).and_then(|d| d.current());
    // The loaded version's manifest was parsed once, at load; only a version
    // this node has not loaded is parsed here, off the runtime.
    let manifest = match (&live, active) {
        (Some(v), Some(a)) if v.version == a.version => Some(v.module.manifest().clone()),
        (_, Some(a)) => super::node::parse_manifest(&a.manifest).await.ok(),
        (_, None) => None,
    };
    Ok(Json(json!({
        "name": record.name,
        "state": record.state,
        "active_version": record.active_version,
        "sha256": active.map(|a| a.sha256.clone()),
        "updated_at": record.updated_at,
        "versions": versions.iter().map(|v| v.version.clone()).collect::<Vec<_>>(),
        "route": manifest.as_ref().and_then(|m| m.http.as_ref().map(|h| h.route.clone())),
        "cron": manifest.as_ref().map(|m| m.cron.iter().map(|c| c.schedule.clone()).collect::<Vec<_>>()),
        "grants": manifest.as_ref().map(|m| m.grants.summary()),
        "stats": { "in_flight": live.map_or(0, |v| v.module.in_flight()) },
    })))
}

async fn versions(
    State(api): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    in_scope(&caller, &name)?;
    api.node.registry.module(&name).await?;
    let versions = api.node.registry.versions(&name).await?;
    Ok(Json(json!({ "versions": versions })))
}

#[derive(Deserialize)]
struct ActivateBody {
    version: String,
}

async fn activate(
    State(api): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Json<ActivateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    in_scope(&caller, &name)?;
    let Json(body) =
        body.map_err(|e| bad_request(format!("expected {{\"version\": \"...\"}}: {e}")))?;
    api.node.activate(&name, &body.version).await?;
    Ok(Json(
        json!({"module": name, "active_version": body.version, "state": "active"}),
    ))
}

async fn transition(
    State(api): Shared,
    Extension(caller): Extension<Caller>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    in_scope(&caller, &name)?;
    let t = match action.as_str() {
        "pause" => Transition::Pause,
        "resume" => Transition::Resume,
        "stop" => Transition::Stop,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}; use activate, pause, resume or stop"),
                vec![],
            ));
        }
    };
    let state = api.node.transition(&name, t).await?;
    Ok(Json(json!({"module": name, "state": state})))
}

async fn delete(
    State(api): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    in_scope(&caller, &name)?;
    api.node.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn health(
    State(api): Shared,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    in_scope(&caller, &name)?;
    let record = api.node.registry.module(&name).await?;
    let live = api.node.deployments.get(&name).and_then(|d| d.serving());
    let serving = live.is_some();
    // The guest's own check, when it has one.
    let check = match &live {
        Some(v) => match v.module.call_hook(Hook::Health).await {
            Ok(true) => Some(Ok(())),
            Ok(false) => None,
            Err(e) => Some(Err(e.to_string())),
        },
        None => None,
    };
    let healthy = serving && !matches!(check, Some(Err(_)));
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((
        status,
        Json(json!({
            "module": name,
            "state": record.state,
            "active_version": record.active_version,
            "serving": serving,
            "healthy": healthy,
            "check": match check {
                None => Value::Null,
                Some(Ok(())) => json!("ok"),
                Some(Err(e)) => json!(e),
            },
        })),
    )
        .into_response())
}

/// Host-wide views (every module's metrics, every backend) are for tokens
/// without a module scope.
fn unscoped(caller: &Caller) -> Result<(), ApiError> {
    match &caller.modules {
        None => Ok(()),
        Some(_) => Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "token {:?} is scoped to some modules; this view covers the whole host",
                caller.name
            ),
            vec![],
        )),
    }
}

async fn backends(
    State(api): Shared,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    unscoped(&caller)?;
    Ok(Json(api.node.host.backends.status()))
}

async fn audit(
    State(api): Shared,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    if let Some(module) = q.get("module") {
        in_scope(&caller, module)?;
    }
    let since = match q.get("since") {
        None => 0,
        Some(s) => s
            .parse::<i64>()
            .map_err(|_| bad_request("since must be milliseconds since the Unix epoch"))?,
    };
    let limit = match q.get("limit") {
        None => 1000,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| bad_request("limit must be 1..=10000"))?,
    };
    let events = api
        .node
        .registry
        .audit(q.get("module").map(String::as_str), since, limit)
        .await?
        .into_iter()
        .filter(|e| caller.may(&e.module))
        .collect::<Vec<_>>();
    Ok(Json(json!({ "events": events })))
}

/// The configured tokens: names, roles, scopes, quotas and what each has
/// stored. Never the secrets (only hashes are configured).
async fn tokens(State(api): Shared) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    for t in api.tokens.all() {
        out.push(json!({
            "name": t.name,
            "role": format!("{:?}", t.role).to_lowercase(),
            "modules": t.modules,
            "quota": t.quota,
            "stored": api.node.registry.stored_by(&t.name).await?,
        }));
    }
    Ok(Json(json!({ "tokens": out })))
}

async fn metrics(
    State(api): Shared,
    Extension(caller): Extension<Caller>,
) -> Result<impl IntoResponse, ApiError> {
    unscoped(&caller)?;
    let node = &api.node;
    let mut gauges = Vec::new();
    for d in node.deployments.all() {
        let labels = format!("module=\"{}\"", super::metrics::escape(&d.name));
        if let Some(v) = d.current() {
            gauges.push((
                "warden_instances_in_use",
                labels.clone(),
                f64::from(v.module.in_flight()),
            ));
        }
    }
    for s in node.host.backends.sql.status() {
        let l = format!("backend=\"{}\"", super::metrics::escape(&s.id));
        gauges.push(("warden_sql_pool_size", l.clone(), f64::from(s.size)));
        gauges.push(("warden_sql_pool_idle", l.clone(), f64::from(s.idle)));
        gauges.push(("warden_sql_pool_in_use", l.clone(), f64::from(s.in_use)));
        gauges.push(("warden_sql_pool_waits", l.clone(), s.waits as f64));
        gauges.push(("warden_sql_pool_errors", l, s.errors as f64));
    }
    gauges.push((
        "warden_audit_dropped",
        String::new(),
        node.audit.dropped() as f64,
    ));
    gauges.sort_by(|a, b| a.0.cmp(b.0));
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        node.metrics.render(&gauges),
    ))
}
