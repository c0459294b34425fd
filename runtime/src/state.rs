//! What a store holds for one invocation of one module.

use std::sync::Arc;

use warden_net::{GrantedHttpHooks, NetPolicy, NetView};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capabilities::CapabilityCtxs;
use crate::limits::Limiter;

pub struct ModuleState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) http_hooks: GrantedHttpHooks,
    pub(crate) config: Arc<WasiConfigVariables>,
    pub(crate) net: Arc<NetPolicy>,
    pub(crate) limiter: Limiter,
    /// Every capability's state (`capabilities.rs`).
    pub(crate) caps: CapabilityCtxs,
    /// Denials of this invocation, for `max-denials` (see `module::Denials`).
    pub(crate) denials: Arc<std::sync::atomic::AtomicU32>,
}

impl WasiView for ModuleState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ModuleState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl NetView for ModuleState {
    fn net_policy(&self) -> Arc<NetPolicy> {
        self.net.clone()
    }
}
