//! KV capability: `[kv.<id>]` Redis backends of the host config, one
//! multiplexed connection manager each; `[grants.kv.<name>]` gives a module
//! a store confined to a key prefix. Keys, channels and scan patterns are
//! built by the host; guests never send raw commands.

mod backend;
mod capability;
mod host;
mod key;
mod pubsub;

pub use backend::{KvBackend, KvBackendConfig, KvBackendStatus, KvBackends};
pub use capability::Kv;
pub use host::{KvCtx, KvGrant, KvHost, KvModule};
pub use key::Confined;
pub use pubsub::KvSubscription;
