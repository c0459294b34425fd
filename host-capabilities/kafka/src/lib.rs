//! Kafka capability: `[kafka.<id>]` backends of the host config become one
//! shared rdkafka producer each; `[grants.kafka.<name>]` gives a module a
//! producer limited to its `produce` topic globs. The runtime's message
//! triggers consume through [`KafkaBackend::subscribe`].

mod backend;
mod capability;
mod consumer;
mod grant;
mod host;
mod limits;
mod send;

pub use backend::{KafkaBackend, KafkaBackendConfig, KafkaBackendStatus, KafkaBackends};
pub use capability::Kafka;
pub use consumer::{Incoming, Subscription};
pub use grant::KafkaGrant;
pub use host::{KafkaCtx, KafkaHost, KafkaModule};
pub use limits::{MAX_BATCH, MAX_HEADERS, MAX_PAYLOAD, Outgoing, check_topic};
