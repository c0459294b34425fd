//! Sending records on a backend's shared producer: pipelined, each awaited
//! until the broker acknowledged it.

use futures_util::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use warden_capability::CapabilityError;

use crate::backend::KafkaBackend;
use crate::limits::Outgoing;

/// Where the broker stored a record: partition and offset.
pub type Receipt = (i32, i64);

impl KafkaBackend {
    /// Sends `records` to `topic` (already checked against the grant and
    /// the size caps); receipts come back in order.
    ///
    /// While the cluster is known to be down, fails at once with
    /// `unavailable` (see [`warden_capability::Health`]): otherwise every
    /// send would wait out the delivery timeout with its records queued in
    /// librdkafka, holding the caller and host memory for the outage.
    pub async fn send(
        &self,
        topic: &str,
        records: &[Outgoing],
    ) -> Result<Vec<Receipt>, CapabilityError> {
        if let Err(e) = self.health.check().await {
            self.count(0, records.len() as u64);
            return Err(e);
        }
        let queue_timeout = Timeout::After(self.config().delivery_timeout.0);
        let sends = records.iter().map(|r| {
            let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(&r.payload);
            // No header list at all when there are none (librdkafka allocates one).
            if !r.headers.is_empty() {
                let headers = r.headers.iter().fold(
                    OwnedHeaders::new_with_capacity(r.headers.len()),
                    |h, (k, v)| {
                        h.insert(Header {
                            key: k,
                            value: Some(v.as_bytes()),
                        })
                    },
                );
                record = record.headers(headers);
            }
            if let Some(key) = &r.key {
                record = record.key(key);
            }
            self.producer().send(record, queue_timeout)
        });
        // Polled together: every record is queued before the first is awaited.
        let results = join_all(sends).await;
        let mut receipts = Vec::with_capacity(results.len());
        let mut first_error = None;
        for result in results {
            match result {
                Ok(delivery) => receipts.push((delivery.partition, delivery.offset)),
                Err((e, _)) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let errors = records.len() - receipts.len();
        self.count(receipts.len() as u64, errors as u64);
        match first_error {
            None => {
                self.health.recovered();
                Ok(receipts)
            }
            Some(e) => {
                let err = self.error(topic, e, errors, records.len());
                // This call keeps its own (precise) error; the probe
                // records an outage for the calls after it.
                if matches!(
                    err,
                    CapabilityError::Timeout(_) | CapabilityError::Unavailable(_)
                ) {
                    let _ = self.health.after_trouble().await;
                } else {
                    // The broker answered (no such topic, too large).
                    self.health.recovered();
                }
                Err(err)
            }
        }
    }

    fn error(&self, topic: &str, e: KafkaError, failed: usize, of: usize) -> CapabilityError {
        let what = if of == 1 {
            format!("send to {topic:?} on kafka backend {}", self.id)
        } else {
            format!(
                "{failed} of {of} records to {topic:?} on kafka backend {} were not acknowledged",
                self.id
            )
        };
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::MessageTimedOut) => CapabilityError::Timeout(format!(
                "{what}: no acknowledgement within {} (broker down, or no such topic)",
                self.config().delivery_timeout
            )),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                CapabilityError::NotFound(format!("{what}: no such topic"))
            }
            Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
                CapabilityError::LimitExceeded(format!("{what}: the broker refused the size: {e}"))
            }
            Some(
                RDKafkaErrorCode::QueueFull
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::NotEnoughReplicas
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition,
            ) => CapabilityError::Unavailable(format!("{what}: {e}")),
            _ => CapabilityError::Backend(format!("{what}: {e}")),
        }
    }
}
