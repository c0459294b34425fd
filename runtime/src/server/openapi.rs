//! `/v1/openapi.json`, built from [`ROUTES`]: the same table a test walks
//! against the live router, so the document cannot drift from the code.

use serde_json::{Map, Value, json};

use crate::host_config::Role;

pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    /// `None`: no token needed.
    pub role: Option<Role>,
    pub summary: &'static str,
}

pub const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: "post",
        path: "/v1/modules",
        role: Some(Role::Deployer),
        summary: "Upload a version: multipart form with `component` (.wasm) and `manifest` (warden.toml); `?activate=true` activates it. Validated before anything is stored; 422 lists every problem.",
    },
    RouteDoc {
        method: "get",
        path: "/v1/modules",
        role: Some(Role::Viewer),
        summary: "Modules with state and active version.",
    },
    RouteDoc {
        method: "get",
        path: "/v1/modules/{name}",
        role: Some(Role::Viewer),
        summary: "One module: state, active version, grants, triggers, stats.",
    },
    RouteDoc {
        method: "delete",
        path: "/v1/modules/{name}",
        role: Some(Role::Admin),
        summary: "Delete a module and its versions (admin only).",
    },
    RouteDoc {
        method: "get",
        path: "/v1/tokens",
        role: Some(Role::Admin),
        summary: "Configured tokens: name, role, module scope, storage quota and bytes stored (admin only; never the secrets).",
    },
    RouteDoc {
        method: "get",
        path: "/v1/modules/{name}/versions",
        role: Some(Role::Viewer),
        summary: "Stored versions (sha256, upload time).",
    },
    RouteDoc {
        method: "post",
        path: "/v1/modules/{name}/activate",
        role: Some(Role::Deployer),
        summary: "Body {\"version\": \"...\"}. Hot swap: new invocations go to this version, in-flight ones finish on the old one.",
    },
    RouteDoc {
        method: "post",
        path: "/v1/modules/{name}/pause",
        role: Some(Role::Deployer),
        summary: "Stop taking invocations, keep the version loaded.",
    },
    RouteDoc {
        method: "post",
        path: "/v1/modules/{name}/resume",
        role: Some(Role::Deployer),
        summary: "Serve again after pause.",
    },
    RouteDoc {
        method: "post",
        path: "/v1/modules/{name}/stop",
        role: Some(Role::Deployer),
        summary: "Unload; activate a version to serve again.",
    },
    RouteDoc {
        method: "get",
        path: "/v1/modules/{name}/health",
        role: Some(Role::Viewer),
        summary: "200 when the module serves, 503 otherwise.",
    },
    RouteDoc {
        method: "get",
        path: "/v1/backends",
        role: Some(Role::Viewer),
        summary: "Pool status per SQL backend, connection status per KV backend.",
    },
    RouteDoc {
        method: "get",
        path: "/v1/audit",
        role: Some(Role::Viewer),
        summary: "Denials, traps, limit breaches, uploads, activations; `?module=&since=<ms>&limit=`.",
    },
    RouteDoc {
        method: "get",
        path: "/metrics",
        role: Some(Role::Viewer),
        summary: "Prometheus text format.",
    },
    RouteDoc {
        method: "get",
        path: "/v1/openapi.json",
        role: None,
        summary: "This document.",
    },
];

pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        let mut op = json!({
            "summary": r.summary,
            "responses": {
                "200": {"description": "success"},
                "401": {"description": "no or unknown bearer token"},
                "403": {"description": "the token's role is too low"},
            },
        });
        if let Some(role) = r.role {
            op["security"] = json!([{"bearer": []}]);
            op["x-warden-role"] = json!(format!("{role:?}").to_lowercase());
        }
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Warden management API", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    })
}
