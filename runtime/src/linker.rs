//! The one linker every module is instantiated against. What a module can
//! actually reach is decided per store (preopens, socket checks, HTTP hooks);
//! what it may import is decided by the contract check before linking.

use wasmtime_wasi_config::WasiConfig;

use crate::engine::WardenEngine;
use crate::state::ModuleState;

pub use wasmtime::component::Linker;

pub fn build_linker(engine: &WardenEngine) -> wasmtime::Result<Linker<ModuleState>> {
    let mut linker = Linker::new(engine.engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, |s: &mut ModuleState| {
        WasiConfig::from(&*s.config)
    })?;
    warden_net::add_guarded_lookup_to_linker(&mut linker)?;
    warden_capability::wit::add_types_to_linker(&mut linker)?;
    crate::capabilities::add_to_linker(&mut linker)?;
    Ok(linker)
}
