//! Redis pub/sub triggers: `[[subscribe]] source = "redis:<id>"` listens on
//! the channel `<kv prefix><topic>`, so a module hears only its own
//! namespace. Pub/sub keeps nothing: a message that arrives while the
//! module is not serving, or while Redis is down, is not delivered; failed
//! messages go to `<kv prefix><dead-letter>` (payload only: Redis messages
//! carry no headers; the error is in the audit log).

use std::sync::Arc;

use warden_kv::{Confined, KvBackend};

use super::delivery::{
    Outcome, RECONNECT, WhenResting, connect_when_serving, handle_with_retries, record_dead_letter,
    retries, while_serving,
};
use super::deployments::Deployed;
use super::node::Node;
use crate::manifest::Subscription;
use crate::message::Message;

/// `prefix`: the kv prefix of the module's grant on this backend (the
/// consumer is restarted when a version changes it).
pub async fn redis(
    node: Arc<Node>,
    deployed: Arc<Deployed>,
    sub: Subscription,
    backend: Arc<KvBackend>,
    prefix: String,
) {
    // Validated at upload: a usable prefix and channel names.
    let channels = Confined::new(&prefix).and_then(|c| {
        let dl = sub.dead_letter.as_deref().map(|d| c.key(d)).transpose()?;
        Ok((c.key(&sub.topic)?, dl))
    });
    let (channel, dead_letter) = match channels {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(module = %deployed.name, "redis subscription {:?}: {e}", sub.topic);
            return;
        }
    };
    let what = format!("redis subscription {:?}", sub.topic);
    let retries = retries(&sub);
    loop {
        let mut subscription =
            connect_when_serving(&deployed, &what, || backend.subscribe(&channel)).await;
        while let Some(payload) = while_serving(&deployed, subscription.next()).await {
            let payload = match payload {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(module = %deployed.name, "{what}: {e}; resubscribing");
                    tokio::time::sleep(RECONNECT).await;
                    break;
                }
            };
            let mut message = Message {
                source: sub.source.clone(),
                topic: sub.topic.clone(),
                payload,
                headers: Vec::new(),
                attempt: 1,
            };
            let outcome = handle_with_retries(
                &node,
                &deployed,
                &mut message,
                retries,
                "redis",
                WhenResting::Fail,
            )
            .await;
            let Outcome::Failed(error) = outcome else {
                continue;
            };
            let went_to = match &dead_letter {
                Some(dl) => match backend.publish_confined(dl, &message.payload).await {
                    Ok(()) => format!(
                        "published to {:?}",
                        sub.dead_letter.as_deref().unwrap_or_default()
                    ),
                    Err(e) => format!("lost: the dead-letter publish failed: {e}"),
                },
                None => "dropped (no dead-letter channel)".into(),
            };
            record_dead_letter(&node, &deployed, &message, retries, &error, &went_to);
        }
    }
}
