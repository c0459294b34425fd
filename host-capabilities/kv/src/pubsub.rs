//! Redis pub/sub for message triggers: a dedicated connection per
//! subscription (pub/sub connections cannot carry other commands), on a
//! channel the runtime confined to the module's prefix.

use futures_util::StreamExt;
use warden_capability::CapabilityError;

use crate::backend::KvBackend;

pub struct KvSubscription {
    pubsub: redis::aio::PubSub,
    backend: String,
}

impl KvBackend {
    /// Subscribes to `channel` (already confined by the caller).
    pub async fn subscribe(&self, channel: &str) -> Result<KvSubscription, CapabilityError> {
        let unavailable = |e: redis::RedisError| {
            self.record_error();
            CapabilityError::Unavailable(format!("kv backend {}: {e}", self.id))
        };
        let mut pubsub = self
            .client()
            .get_async_pubsub()
            .await
            .map_err(unavailable)?;
        pubsub.subscribe(channel).await.map_err(unavailable)?;
        Ok(KvSubscription {
            pubsub,
            backend: self.id.clone(),
        })
    }

    /// Publishes on a confined channel (dead letters of Redis triggers).
    pub async fn publish_confined(
        &self,
        channel: &str,
        payload: &[u8],
    ) -> Result<(), CapabilityError> {
        let mut conn = self
            .connection()
            .await
            .map_err(|e| CapabilityError::Unavailable(format!("kv backend {}: {e}", self.id)))?;
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| {
                self.record_error();
                CapabilityError::Unavailable(format!("kv backend {}: {e}", self.id))
            })
    }
}

impl KvSubscription {
    /// The next message's payload; an error means the connection is gone.
    pub async fn next(&mut self) -> Result<Vec<u8>, CapabilityError> {
        match self.pubsub.on_message().next().await {
            Some(msg) => Ok(msg.get_payload_bytes().to_vec()),
            None => Err(CapabilityError::Unavailable(format!(
                "kv backend {}: the subscription connection closed",
                self.backend
            ))),
        }
    }
}
