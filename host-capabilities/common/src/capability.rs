//! The one seam between a capability crate and the runtime. The runtime
//! composes every capability from one list (`warden_core::capabilities`);
//! adding a capability is a crate implementing [`Capability`] plus one
//! line there.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::component::{HasData, Linker, ResourceTable};

use crate::{AuditSink, Backend, BackendSet};

/// What one invocation's limits leave to a capability's per-store state.
#[derive(Debug, Clone, Copy)]
pub struct InvocationLimits {
    /// Bytes the host may hand back to the guest in one invocation.
    pub max_output: u64,
    /// The invocation's wall-clock limit.
    pub timeout: Duration,
}

/// A capability, in the phases every one of them has (after Spin's
/// `Factor`): its manifest grant slice, its host-config section and the
/// shared backends built from it, a module's grants resolved against those
/// backends, the per-store ctx, and its WIT host functions.
///
/// ```
/// use warden_capability::Capability;
///
/// /// Everything the runtime knows of a capability is reachable from its type.
/// fn describe<C: Capability>() -> String {
///     format!("[grants.{}] provides {:?}", C::KIND, C::INTERFACES)
/// }
/// # let _ = describe::<warden_capability::NoCapability>;
/// ```
pub trait Capability: Sized + Send + Sync + 'static {
    /// Its key: `[grants.<KIND>]` in a manifest, `[<KIND>.<id>]` in the host
    /// config, and its entry in `/v1/backends` and a module's grant summary.
    const KIND: &'static str;
    /// The `warden:host/<name>` interfaces it provides. A component that
    /// imports one of them without a grant of this capability is refused.
    const INTERFACES: &'static [&'static str];
    /// How a manifest grants it, for messages: `[grants.sql.<name>]`.
    const GRANT: &'static str;

    /// Its slice of the manifest: `[grants.<KIND>]`, unknown keys refused.
    type Grants: DeserializeOwned + Default + Clone + Debug + Send + Sync;
    /// Its section of the host config, unknown keys refused.
    type Config: DeserializeOwned + Default + Clone + Debug + Send + Sync;
    /// The shared backends, built once from [`Self::Config`].
    type Backends: Default + Clone + Send + Sync;
    /// One module's grants resolved against the backends, at load time.
    type Module: Send + Sync + 'static;
    /// What one store (one invocation) holds.
    type Ctx: Send + 'static;
    /// The value its WIT host traits are implemented on.
    type Host<'a>: Send;
    /// One backend's entry in `/v1/backends`.
    type Status: Serialize;
    /// What a module's detail shows of its grants.
    type Summary: Serialize;

    /// Whether the manifest grants anything of this capability (which is
    /// what lets a component import its interfaces).
    fn is_granted(grants: &Self::Grants) -> bool;

    /// The grants' problems, as `(key path below [grants.<KIND>], message)`.
    fn check(grants: &Self::Grants) -> Vec<(String, String)>;

    /// The grant names (or globs) shown in a module's detail.
    fn summary(grants: &Self::Grants) -> Self::Summary;

    /// `(grant name, backend id)` of every grant that names a backend, so
    /// that a scoped token's backend allow-list can be enforced.
    fn backend_ids(grants: &Self::Grants) -> Vec<(String, String)>;

    /// Builds the shared backends; nothing connects here. The error names
    /// the entry (`kv.cache: invalid url`).
    fn backends(config: &Self::Config) -> Result<Self::Backends, String>;

    /// Each backend's status, ordered by id.
    fn status(backends: &Self::Backends) -> Vec<Self::Status>;

    /// The host names (lower-case, no port) its backends connect to: a
    /// scoped tenant's network grant may not reach them around the
    /// capability that guards them.
    fn backend_hosts(config: &Self::Config) -> Vec<String>;

    /// Makes paths in the config relative to the config file's directory.
    fn relative_to(_config: &mut Self::Config, _dir: &Path) {}

    /// Resolves a module's grants against the backends; a grant naming a
    /// backend the host lacks is an error naming both.
    fn resolve(
        module: &str,
        grants: &Self::Grants,
        backends: &Self::Backends,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self::Module, String>;

    /// The per-store state of one invocation.
    fn ctx(module: &Arc<Self::Module>, limits: InvocationLimits) -> Self::Ctx;

    /// The host-trait value for one call, borrowed from the store.
    fn host<'a>(ctx: &'a mut Self::Ctx, table: &'a mut ResourceTable) -> Self::Host<'a>;

    /// Adds its WIT host functions; `get` reaches its ctx in the store.
    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> Self::Host<'_>,
    ) -> wasmtime::Result<()>;
}

/// A capability whose grants are `[grants.<KIND>.<name>]` entries, each
/// naming a `[<KIND>.<id>]` backend of the host config (sql, kv, kafka,
/// amqp). Implementing it gives the whole [`Capability`]; what is left is
/// what differs between them.
pub trait NamedCapability: Sized + Send + Sync + 'static {
    /// [`Capability::KIND`].
    const KIND: &'static str;
    /// [`Capability::GRANT`]: `[grants.<KIND>.<name>]`.
    const GRANT: &'static str;
    /// One `[grants.<KIND>.<name>]`.
    type Grant: NamedGrant + DeserializeOwned + Clone + Debug + Send + Sync;
    /// One shared backend, built from one `[<KIND>.<id>]`.
    type Backend: Backend<Config: DeserializeOwned + Clone + Debug + Send + Sync, Status: Serialize>
        + Send
        + Sync;
    /// Every backend; usually `BackendSet<Self::Backend>` itself.
    type Backends: Default
        + Clone
        + Send
        + Sync
        + From<BackendSet<Self::Backend>>
        + AsRef<BackendSet<Self::Backend>>;
    /// [`Capability::Module`].
    type Module: Send + Sync + 'static;
    /// [`Capability::Ctx`].
    type Ctx: Send + 'static;
    /// [`Capability::Host`].
    type Host<'a>: Send;

    /// [`Capability::backend_hosts`].
    fn backend_hosts(config: &BTreeMap<String, BackendConfig<Self>>) -> Vec<String>;
    /// [`Capability::relative_to`].
    fn relative_to(_config: &mut BTreeMap<String, BackendConfig<Self>>, _dir: &Path) {}
    /// [`Capability::resolve`].
    fn resolve(
        module: &str,
        grants: &BTreeMap<String, Self::Grant>,
        backends: &Self::Backends,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self::Module, String>;
    /// [`Capability::ctx`].
    fn ctx(module: &Arc<Self::Module>, limits: InvocationLimits) -> Self::Ctx;
    /// [`Capability::host`].
    fn host<'a>(ctx: &'a mut Self::Ctx, table: &'a mut ResourceTable) -> Self::Host<'a>;
    /// [`Capability::add_to_linker`].
    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> Self::Host<'_>,
    ) -> wasmtime::Result<()>;
}

/// The host-config entry of a [`NamedCapability`]'s backend.
pub type BackendConfig<C> = <<C as NamedCapability>::Backend as Backend>::Config;

impl<C: NamedCapability> Capability for C {
    const KIND: &'static str = C::KIND;
    const INTERFACES: &'static [&'static str] = &[C::KIND];
    const GRANT: &'static str = C::GRANT;
    type Grants = BTreeMap<String, C::Grant>;
    type Config = BTreeMap<String, BackendConfig<C>>;
    type Backends = C::Backends;
    type Module = C::Module;
    type Ctx = C::Ctx;
    type Host<'a> = C::Host<'a>;
    type Status = <C::Backend as Backend>::Status;
    type Summary = Vec<String>;

    fn is_granted(grants: &Self::Grants) -> bool {
        !grants.is_empty()
    }

    fn check(grants: &Self::Grants) -> Vec<(String, String)> {
        grants
            .iter()
            .filter_map(|(name, g)| g.check().err().map(|e| (name.clone(), e)))
            .collect()
    }

    fn summary(grants: &Self::Grants) -> Vec<String> {
        grants.keys().cloned().collect()
    }

    fn backend_ids(grants: &Self::Grants) -> Vec<(String, String)> {
        let ids = grants
            .iter()
            .map(|(name, g)| (name.clone(), g.backend().to_string()));
        ids.collect()
    }

    fn backends(config: &Self::Config) -> Result<C::Backends, String> {
        BackendSet::new(config).map(Into::into)
    }

    fn status(backends: &C::Backends) -> Vec<Self::Status> {
        backends.as_ref().status()
    }

    fn backend_hosts(config: &Self::Config) -> Vec<String> {
        <C as NamedCapability>::backend_hosts(config)
    }

    fn relative_to(config: &mut Self::Config, dir: &Path) {
        <C as NamedCapability>::relative_to(config, dir)
    }

    fn resolve(
        module: &str,
        grants: &Self::Grants,
        backends: &C::Backends,
        audit: Arc<dyn AuditSink>,
    ) -> Result<C::Module, String> {
        <C as NamedCapability>::resolve(module, grants, backends, audit)
    }

    fn ctx(module: &Arc<C::Module>, limits: InvocationLimits) -> C::Ctx {
        <C as NamedCapability>::ctx(module, limits)
    }

    fn host<'a>(ctx: &'a mut C::Ctx, table: &'a mut ResourceTable) -> C::Host<'a> {
        <C as NamedCapability>::host(ctx, table)
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> C::Host<'_>,
    ) -> wasmtime::Result<()> {
        <C as NamedCapability>::add_to_linker(linker, get)
    }
}

/// The `HasData` of capability `C`, for its `bindgen!` `add_to_linker`.
pub struct HostOf<C>(PhantomData<C>);

impl<C: Capability> HasData for HostOf<C> {
    type Data<'a> = C::Host<'a>;
}

/// One `[grants.<kind>.<name>]` entry of a [`NamedCapability`].
pub trait NamedGrant {
    /// The `[<kind>.<id>]` of the host config it uses.
    fn backend(&self) -> &str;
    /// Its problems, beyond what deserializing it checked.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A host-config section for a capability that has none: any `[<kind>]`
/// table is refused by name.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoConfig;

impl<'de> serde::Deserialize<'de> for NoConfig {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "this capability has no host-config section",
        ))
    }
}

/// A capability that grants nothing; the doctest's and unit tests' stand-in.
pub struct NoCapability;

impl Capability for NoCapability {
    const KIND: &'static str = "none";
    const INTERFACES: &'static [&'static str] = &[];
    const GRANT: &'static str = "[grants.none]";
    type Grants = Option<()>;
    type Config = NoConfig;
    type Backends = ();
    type Module = ();
    type Ctx = ();
    type Host<'a> = ();
    type Status = ();
    type Summary = ();

    fn is_granted(grants: &Option<()>) -> bool {
        grants.is_some()
    }
    fn check(_: &Option<()>) -> Vec<(String, String)> {
        Vec::new()
    }
    fn summary(_: &Option<()>) {}
    fn backend_ids(_: &Option<()>) -> Vec<(String, String)> {
        Vec::new()
    }
    fn backends(_: &NoConfig) -> Result<(), String> {
        Ok(())
    }
    fn status(_: &()) -> Vec<()> {
        Vec::new()
    }
    fn backend_hosts(_: &NoConfig) -> Vec<String> {
        Vec::new()
    }
    fn resolve(_: &str, _: &Option<()>, _: &(), _: Arc<dyn AuditSink>) -> Result<(), String> {
        Ok(())
    }
    fn ctx(_: &Arc<()>, _: InvocationLimits) {}
    fn host<'a>(_: &'a mut (), _: &'a mut ResourceTable) {}
    fn add_to_linker<T: Send + 'static>(
        _: &mut Linker<T>,
        _: fn(&mut T) -> Self::Host<'_>,
    ) -> wasmtime::Result<()> {
        Ok(())
    }
}

/// The host of `scheme://[user[:password]@]host[:port][/path][?query]`,
/// lower-case and without brackets, for [`Capability::backend_hosts`].
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next()?
    } else {
        host_port.split(':').next()?
    };
    Some(unbracket(host))
}

/// `[::1]` → `::1`, lower-cased.
pub fn unbracket(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn url_hosts_ignore_credentials_ports_and_paths() {
        for (url, host) in [
            ("postgres://u:p@db.Example:6432/app?x=1", "db.example"),
            ("redis://127.0.0.1:6379/0", "127.0.0.1"),
            ("amqp://guest:guest@[::1]:5672/%2f", "::1"),
            ("mysql://root@localhost/test", "localhost"),
            ("postgres://a:b@c@db2", "db2"),
        ] {
            assert_eq!(url_host(url).as_deref(), Some(host), "{url}");
        }
        assert_eq!(url_host("sqlite://x.db").as_deref(), Some("x.db"));
    }
}
