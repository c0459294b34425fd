//! The host's shared backends, one per `[sql|kv|kafka|amqp.<id>]` of the
//! host config, built once and handed to every module that is loaded.

use warden_amqp::AmqpBackends;
use warden_kafka::KafkaBackends;
use warden_kv::KvBackends;
use warden_sql::SqlBackends;

use crate::host_config::HostConfig;

#[derive(Default, Clone)]
pub struct Backends {
    pub sql: SqlBackends,
    pub kv: KvBackends,
    pub kafka: KafkaBackends,
    pub amqp: AmqpBackends,
}

impl Backends {
    /// Builds every backend; an invalid section is an error naming it.
    /// Nothing connects here: a service that is down does not stop the host.
    pub fn new(config: &HostConfig) -> Result<Self, String> {
        let invalid = |e: String| format!("invalid host config: {e}");
        Ok(Self {
            sql: SqlBackends::new(&config.sql).map_err(invalid)?,
            kv: KvBackends::new(&config.kv).map_err(invalid)?,
            kafka: KafkaBackends::new(&config.kafka).map_err(invalid)?,
            amqp: AmqpBackends::new(&config.amqp).map_err(invalid)?,
        })
    }
}
