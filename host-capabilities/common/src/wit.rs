//! Host bindings of `warden:host/types`, shared by every capability crate
//! (their own `bindgen!` maps the interface here with `with:`).

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "warden:host/types-capability",
    });
}

pub use bindings::warden::host::types;

use crate::CapabilityError;

impl From<CapabilityError> for types::Error {
    fn from(err: CapabilityError) -> Self {
        match err {
            CapabilityError::Denied(m) => types::Error::Denied(m),
            CapabilityError::NotFound(m) => types::Error::NotFound(m),
            CapabilityError::Invalid(m) => types::Error::Invalid(m),
            CapabilityError::Unavailable(m) => types::Error::Unavailable(m),
            CapabilityError::Timeout(m) => types::Error::Timeout(m),
            CapabilityError::LimitExceeded(m) => types::Error::LimitExceeded(m),
            CapabilityError::Backend(m) => types::Error::Backend(m),
        }
    }
}

/// Defines the (function-less) `warden:host/types` instance once.
pub fn add_types_to_linker<T: 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    linker.instance("warden:host/types@0.1.0")?;
    Ok(())
}
