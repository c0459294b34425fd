//! Consumers for message triggers: a dedicated channel per subscription
//! with `prefetch` unacked messages at most (the module's `max-instances`),
//! so a slow module holds back the broker instead of filling memory.

use std::sync::Arc;

use futures_util::StreamExt;
use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use warden_capability::CapabilityError;

use crate::backend::AmqpBackend;
use crate::message::Properties;

pub struct AmqpSubscription {
    backend: Arc<AmqpBackend>,
    consumer: Consumer,
    channel: Channel,
}

/// One consumed message; settle it with [`Inbound::ack`] or [`Inbound::nack`].
pub struct Inbound {
    pub exchange: String,
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub properties: Properties,
    pub redelivered: bool,
    acker: Acker,
    backend: Arc<AmqpBackend>,
}

impl AmqpBackend {
    pub async fn consume(
        self: &Arc<Self>,
        queue: &str,
        consumer_tag: &str,
        prefetch: u16,
    ) -> Result<AmqpSubscription, CapabilityError> {
        let channel = self.new_channel(false).await?;
        channel
            .basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(|e| self.error("basic.qos", e))?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                consumer_tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.error(&format!("consume {queue:?}"), e))?;
        Ok(AmqpSubscription {
            backend: self.clone(),
            consumer,
            channel,
        })
    }
}

impl AmqpSubscription {
    /// The next message; an error (or the end) means the channel or the
    /// connection is gone and the caller should subscribe again.
    pub async fn next(&mut self) -> Result<Inbound, CapabilityError> {
        match self.consumer.next().await {
            Some(Ok(d)) => Ok(Inbound {
                exchange: d.exchange.as_str().to_string(),
                routing_key: d.routing_key.as_str().to_string(),
                payload: d.data,
                properties: Properties::from_amqp(&d.properties),
                redelivered: d.redelivered,
                acker: d.acker,
                backend: self.backend.clone(),
            }),
            Some(Err(e)) => Err(self.backend.error("consume", e)),
            None => Err(self
                .backend
                .unavailable("the consumer was cancelled".into())),
        }
    }
}

impl Inbound {
    pub async fn ack(&self) -> Result<(), CapabilityError> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(|e| self.backend.error("basic.ack", e))
    }

    /// Rejects the message; without `requeue` the broker dead-letters it
    /// through the queue's own `x-dead-letter-exchange`, if it has one.
    pub async fn nack(&self, requeue: bool) -> Result<(), CapabilityError> {
        let options = BasicNackOptions {
            requeue,
            ..Default::default()
        };
        self.acker
            .nack(options)
            .await
            .map(drop)
            .map_err(|e| self.backend.error("basic.nack", e))
    }
}

impl AmqpSubscription {
    /// Closes the consumer's channel: the broker requeues what it had
    /// delivered and was not settled.
    pub async fn close(self) {
        let _ = self
            .channel
            .close(200, "warden: consumer stopped".into())
            .await;
    }
}
