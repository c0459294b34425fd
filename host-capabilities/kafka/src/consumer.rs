//! Consumers for message triggers: one per subscription, in the consumer
//! group `warden.<module>` so every node serving the module shares the
//! partitions. Offsets are committed only by [`Subscription::commit`], which
//! the runtime calls after the handler succeeded (or the record was
//! dead-lettered): a crash before that redelivers the record.

use std::sync::Arc;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use warden_capability::CapabilityError;

use crate::backend::KafkaBackend;

/// One consumed record.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// Header values as text (lossy for binary values).
    pub headers: Vec<(String, String)>,
}

pub struct Subscription {
    consumer: Arc<StreamConsumer>,
    backend: String,
}

impl KafkaBackend {
    /// Joins `group` and subscribes to `topic`. A group with no committed
    /// offset starts at the earliest record, so nothing sent before the
    /// module's first start is skipped.
    pub fn subscribe(&self, group: &str, topic: &str) -> Result<Subscription, CapabilityError> {
        // librdkafka reads a name starting with `^` as a regex over every
        // topic: only a plain topic name may be subscribed.
        crate::limits::check_topic(topic)?;
        let consumer: StreamConsumer = self
            .config()
            .client_config(&self.id)
            .map_err(CapabilityError::Invalid)?
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // A node that died gives its partitions up within seconds.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "2000")
            .create()
            .map_err(|e| CapabilityError::Unavailable(format!("kafka backend {}: {e}", self.id)))?;
        consumer.subscribe(&[topic]).map_err(|e| {
            CapabilityError::Unavailable(format!(
                "kafka backend {}: subscribe {topic:?}: {e}",
                self.id
            ))
        })?;
        Ok(Subscription {
            consumer: Arc::new(consumer),
            backend: self.id.clone(),
        })
    }
}

impl Subscription {
    /// The next record (waits for one).
    pub async fn next(&self) -> Result<Incoming, CapabilityError> {
        let m = self.consumer.recv().await.map_err(|e| {
            CapabilityError::Unavailable(format!("kafka backend {}: {e}", self.backend))
        })?;
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                        (h.key.to_string(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Incoming {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
        })
    }

    /// Commits the group's position past `record`; returns once the broker
    /// has stored it.
    pub async fn commit(&self, record: &Incoming) -> Result<(), CapabilityError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(
            &record.topic,
            record.partition,
            Offset::Offset(record.offset + 1),
        )
        .map_err(|e| CapabilityError::Invalid(e.to_string()))?;
        let consumer = self.consumer.clone();
        let backend = self.backend.clone();
        // A synchronous commit blocks its thread for a broker round trip.
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
            .await
            .map_err(|e| CapabilityError::Unavailable(e.to_string()))?
            .map_err(|e| {
                CapabilityError::Unavailable(format!("kafka backend {backend}: commit: {e}"))
            })
    }
}
