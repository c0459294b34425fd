//! AMQP capability: `[amqp.<id>]` backends of the host config become one
//! shared lapin connection with a channel pool each; `[grants.amqp.<name>]`
//! decides what a module may publish, declare and consume. The runtime's
//! message triggers consume through [`AmqpBackend::consume`].

mod backend;
mod capability;
mod consumer;
mod grant;
mod host;
mod message;

pub use backend::{AmqpBackend, AmqpBackendConfig, AmqpBackendStatus, AmqpBackends};
pub use capability::Amqp;
pub use consumer::{AmqpSubscription, Inbound};
pub use grant::AmqpGrant;
pub use host::{AmqpCtx, AmqpHost, AmqpModule};
pub use message::{MAX_HEADERS, MAX_PAYLOAD, Properties};
