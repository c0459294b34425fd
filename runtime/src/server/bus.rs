//! The in-process event bus: `warden:host/events` publishes go to every
//! active module subscribed to the topic (`[[subscribe]] source = "events"`).
//! Delivery is retried with backoff up to `max-retries`, then the message
//! goes to the subscription's `dead-letter` topic with the error in a
//! header. Each subscriber has a bounded backlog: a slow module makes
//! publishers see `limit-exceeded`, never unbounded memory.
//! Node-local: events published on one node are handled on that node.

use std::sync::{Arc, OnceLock, Weak};

use tokio::sync::OwnedSemaphorePermit;
use warden_capability::CapabilityError;
use warden_events::EventBus;

use super::delivery::{
    Outcome, WhenResting, dead_letter_headers, handle_with_retries, record_dead_letter,
};
use super::deployments::Deployed;
use super::node::Node;
use crate::message::Message;

/// Undelivered events per subscribing module.
pub const BACKLOG: usize = 1024;

pub const SOURCE: &str = "events";

#[derive(Default)]
pub struct Bus {
    node: OnceLock<Weak<Node>>,
}

impl Bus {
    pub fn attach(&self, node: &Arc<Node>) {
        let _ = self.node.set(Arc::downgrade(node));
    }
}

impl EventBus for Bus {
    fn kind(&self) -> &'static str {
        "in-process"
    }

    fn publish(&self, from: &str, topic: &str, payload: Vec<u8>) -> Result<(), CapabilityError> {
        let node =
            self.node.get().and_then(Weak::upgrade).ok_or_else(|| {
                CapabilityError::Unavailable("the event bus is shutting down".into())
            })?;
        let message = Message {
            source: SOURCE.into(),
            topic: topic.into(),
            payload,
            headers: vec![("warden-from".into(), from.into())],
            attempt: 1,
        };
        deliver(&node, message).map(drop)
    }
}

/// Queues `message` for every subscriber, or for none when any backlog is
/// full; returns how many subscribers got it.
fn deliver(node: &Arc<Node>, message: Message) -> Result<usize, CapabilityError> {
    let mut queued = Vec::new();
    for deployed in node.deployments.subscribers(&message.topic) {
        let Some(version) = deployed.serving() else {
            continue;
        };
        let subscriptions = version
            .module
            .manifest()
            .subscribe
            .iter()
            .filter(|s| s.source == SOURCE && s.topic == message.topic);
        for sub in subscriptions {
            let permit = deployed.backlog.clone().try_acquire_owned().map_err(|_| {
                CapabilityError::LimitExceeded(format!(
                    "subscriber {} has {BACKLOG} undelivered events on {:?}",
                    deployed.name, message.topic
                ))
            })?;
            queued.push((
                deployed.clone(),
                sub.max_retries,
                sub.dead_letter.clone(),
                permit,
            ));
        }
    }
    let count = queued.len();
    for (deployed, retries, dead_letter, permit) in queued {
        let delivery = Delivery {
            node: node.clone(),
            deployed,
            retries: retries.unwrap_or(super::delivery::DEFAULT_RETRIES),
            dead_letter,
            _permit: permit,
        };
        tokio::spawn(delivery.run(message.clone()));
    }
    Ok(count)
}

struct Delivery {
    node: Arc<Node>,
    deployed: Arc<Deployed>,
    retries: u32,
    dead_letter: Option<String>,
    _permit: OwnedSemaphorePermit,
}

impl Delivery {
    async fn run(self, mut message: Message) {
        let outcome = handle_with_retries(
            &self.node,
            &self.deployed,
            &mut message,
            self.retries,
            "event",
            WhenResting::Fail,
        )
        .await;
        if let Outcome::Failed(error) = outcome {
            self.give_up(message, error);
        }
    }

    fn give_up(self, mut message: Message, error: String) {
        let name = &self.deployed.name;
        let went_to = match &self.dead_letter {
            Some(dl) => format!("sent to {dl:?}"),
            None => "dropped (no dead-letter topic)".into(),
        };
        record_dead_letter(
            &self.node,
            &self.deployed,
            &message,
            self.retries,
            &error,
            &went_to,
        );
        let Some(dead_letter) = self.dead_letter.clone() else {
            return;
        };
        message.headers = dead_letter_headers(&message.headers, &message.topic, &error, name);
        message.topic = dead_letter;
        message.attempt = 1;
        let topic = message.topic.clone();
        match deliver(&self.node, message) {
            Ok(0) => {
                tracing::error!(module = %name, "dead-letter topic {topic:?} has no subscriber: the event is lost")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(module = %name, "dead-letter delivery refused: {e}"),
        }
    }
}
