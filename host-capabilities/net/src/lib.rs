//! Network capability: egress only to the `host:port` entries of
//! `[grants.net] allow`, for wasi:sockets TCP and outgoing wasi:http.
//!
//! Names are checked twice: the name must be granted, and every address it
//! resolves to is re-checked at connect time, so a granted name pointing at
//! loopback, link-local or a cloud metadata address is refused unless that
//! address itself is granted. UDP, listening and accepting are never allowed.

mod grant;
mod http;
mod lookup;
mod policy;
mod sockets;

pub use grant::{Endpoint, EndpointHost, NetGrant};
pub use http::GrantedHttpHooks;
pub use lookup::{NetView, add_guarded_lookup_to_linker};
pub use policy::{NetPolicy, canonical, is_internal_address, is_special_address};
pub use sockets::configure_sockets;
