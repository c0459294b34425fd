use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{
    Host, HostResolveAddressStream, ResolveAddressStream,
};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode, HostNetwork, IpAddress, Network,
};
use wasmtime_wasi::p2::{DynPollable, SocketError};
use wasmtime_wasi::sockets::{WasiSocketsCtxView, WasiSocketsView};

use crate::NetPolicy;

/// Store state that carries a module's egress policy.
pub trait NetView: WasiView {
    fn net_policy(&self) -> Arc<NetPolicy>;
}

/// Replaces wasmtime-wasi's `ip-name-lookup` so that only granted names
/// resolve. Call after adding WASI to `linker`.
pub fn add_guarded_lookup_to_linker<T: NetView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::add_to_linker::<
        T,
        GuardedLookupData,
    >(linker, |t| {
        let policy = t.net_policy();
        GuardedLookup {
            inner: t.sockets(),
            policy,
        }
    });
    linker.allow_shadowing(false);
    result
}

struct GuardedLookupData;

impl HasData for GuardedLookupData {
    type Data<'a> = GuardedLookup<'a>;
}

struct GuardedLookup<'a> {
    inner: WasiSocketsCtxView<'a>,
    policy: Arc<NetPolicy>,
}

impl Host for GuardedLookup<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ResolveAddressStream>, SocketError> {
        if !self.policy.name_granted(&name) {
            self.policy
                .deny(format!("name lookup of {name:?}: not in grants.net.allow"));
            return Err(ErrorCode::PermanentResolverFailure.into());
        }
        self.inner.resolve_addresses(network, name)
    }
}

impl HostResolveAddressStream for GuardedLookup<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        self.inner.resolve_next_address(stream)
    }

    fn subscribe(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        HostResolveAddressStream::subscribe(&mut self.inner, stream)
    }

    fn drop(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        HostResolveAddressStream::drop(&mut self.inner, stream)
    }
}

// `ip-name-lookup`'s bindings also need the `network` interface; plain delegation.
impl network::Host for GuardedLookup<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.inner, error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<network::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.inner, err)
    }
}

impl HostNetwork for GuardedLookup<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        HostNetwork::drop(&mut self.inner, this)
    }
}
