//! SQL on the runtime's capability seam.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use warden_capability::{AuditSink, BackendConfig, InvocationLimits, NamedCapability, url_host};
use wasmtime::component::{Linker, ResourceTable};

use crate::grant::SqlGrant;
use crate::host::{self, SqlCtx, SqlHost, SqlModule};
use crate::pool::{SqlBackend, SqlBackends};

/// `warden:host/sql`: connections to `[grants.sql.<name>]` databases, as their roles.
pub struct Sql;

impl NamedCapability for Sql {
    const KIND: &'static str = "sql";
    const GRANT: &'static str = "[grants.sql.<name>]";
    type Grant = SqlGrant;
    type Backend = SqlBackend;
    type Backends = SqlBackends;
    type Module = SqlModule;
    type Ctx = SqlCtx;
    type Host<'a> = SqlHost<'a>;

    fn backend_hosts(config: &BTreeMap<String, BackendConfig<Self>>) -> Vec<String> {
        let urls = config.values().flat_map(|b| {
            [
                Some(&b.url),
                b.read_only_url.as_ref(),
                b.control_url.as_ref(),
            ]
        });
        urls.flatten()
            .filter(|u| !u.starts_with("sqlite:"))
            .filter_map(|u| url_host(u))
            .collect()
    }

    /// A relative SQLite file is relative to the host config's directory.
    fn relative_to(config: &mut BTreeMap<String, BackendConfig<Self>>, dir: &Path) {
        for backend in config.values_mut() {
            if let Some(path) = backend.url.strip_prefix("sqlite://")
                && !path.starts_with('/')
                && !path.starts_with(":memory:")
            {
                backend.url = format!("sqlite://{}", dir.join(path).display());
            }
        }
    }

    fn resolve(
        module: &str,
        grants: &BTreeMap<String, SqlGrant>,
        backends: &SqlBackends,
        audit: Arc<dyn AuditSink>,
    ) -> Result<SqlModule, String> {
        SqlModule::new(module, grants, backends, audit)
    }

    fn ctx(module: &Arc<SqlModule>, limits: InvocationLimits) -> SqlCtx {
        SqlCtx::new(module.clone(), limits.max_output, limits.timeout)
    }

    fn host<'a>(ctx: &'a mut SqlCtx, table: &'a mut ResourceTable) -> SqlHost<'a> {
        SqlHost { ctx, table }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> SqlHost<'_>,
    ) -> wasmtime::Result<()> {
        host::add_to_linker(linker, get)
    }
}
