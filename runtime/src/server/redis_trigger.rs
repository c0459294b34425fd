//! Redis pub/sub triggers: `[[subscribe]] source = "redis:<id>"` listens on
//! the channel `<kv prefix><topic>`, so a module hears only its own
//! namespace. Pub/sub keeps nothing: a message that arrives while the
//! module is not serving, or while Redis is down, is not delivered; failed
//! messages go to `<kv prefix><dead-letter>` (payload only: Redis messages
//! carry no headers; the error is in the audit log).

use std::sync::Arc;
use std::time::Duration;

use warden_kv::{Confined, KvBackend};

use super::delivery::{
    Outcome, WhenResting, handle_with_retries, record_dead_letter, retries, until_resting,
    until_serving,
};
use super::deployments::Deployed;
use super::node::Node;
use crate::manifest::Subscription;
use crate::message::Message;

pub async fn redis(
    node: Arc<Node>,
    deployed: Arc<Deployed>,
    sub: Subscription,
    backend: Arc<KvBackend>,
) {
    let retries = retries(&sub);
    loop {
        until_serving(&deployed).await;
        let Some(version) = deployed.current() else {
            continue;
        };
        // Validated at upload: exactly one kv grant on this backend.
        let confined = version
            .module
            .manifest()
            .redis_prefix(&backend.id)
            .and_then(Confined::new);
        drop(version);
        let (channel, dead_letter) = match confined.and_then(|c| {
            let dl = sub.dead_letter.as_deref().map(|d| c.key(d)).transpose()?;
            Ok((c.key(&sub.topic)?, dl))
        }) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(module = %deployed.name, "redis subscription {:?}: {e}", sub.topic);
                return;
            }
        };
        let mut subscription = match backend.subscribe(&channel).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(module = %deployed.name, "redis subscription {:?}: {e}", sub.topic);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let payload = tokio::select! {
                r = subscription.next() => r,
                () = until_resting(&deployed) => break,
            };
            let payload = match payload {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(module = %deployed.name, "redis {:?}: {e}; resubscribing", sub.topic);
                    tokio::time::sleep(Duration::from_secs(1)).await;
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
