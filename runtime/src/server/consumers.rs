//! Message triggers on external brokers: one task per `[[subscribe]]` with
//! a `kafka:`, `amqp:` or `redis:` source of every installed module. A task
//! consumes only while its module serves; a message is acknowledged to the
//! broker (Kafka offset commit, AMQP ack) only after the handler succeeded
//! or the message was dead-lettered, so a crash or trap redelivers it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use warden_amqp::{AmqpBackend, Inbound, Properties};
use warden_kafka::{Incoming, KafkaBackend, Outgoing};

use super::delivery::{
    Outcome, WhenResting, dead_letter_headers, handle_with_retries, record_dead_letter, retries,
    until_resting, until_serving,
};
use super::deployments::Deployed;
use super::node::Node;
use crate::manifest::{Source, Subscription};
use crate::message::Message;

/// Pause before reconnecting a consumer whose broker went away.
const RECONNECT: Duration = Duration::from_secs(1);

/// A running consumer is identified by its module and its whole
/// subscription: a new version with the same subscription keeps it (no
/// rebalance on a hot swap), a changed one restarts it.
type Key = (String, String, String, Option<u32>, Option<String>);

#[derive(Default)]
pub struct Consumers {
    running: Mutex<HashMap<Key, JoinHandle<()>>>,
}

impl Consumers {
    /// Starts the consumers installed modules need and stops the others.
    pub fn reconcile(&self, node: &Arc<Node>) {
        let mut wanted: HashMap<Key, (Arc<Deployed>, Subscription)> = HashMap::new();
        for deployed in node.deployments.all() {
            let Some(version) = deployed.current() else {
                continue;
            };
            for sub in &version.module.manifest().subscribe {
                if matches!(Source::parse(&sub.source), Ok(Source::Events) | Err(_)) {
                    continue;
                }
                let key = (
                    deployed.name.clone(),
                    sub.source.clone(),
                    sub.topic.clone(),
                    sub.max_retries,
                    sub.dead_letter.clone(),
                );
                wanted.insert(key, (deployed.clone(), sub.clone()));
            }
        }
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|key, task| {
            let keep = wanted.contains_key(key) && !task.is_finished();
            if !keep {
                // Whatever it was handling is not acknowledged: redelivered.
                task.abort();
            }
            keep
        });
        for (key, (deployed, sub)) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            if let Some(task) = start(node, deployed, sub) {
                running.insert(key, task);
            }
        }
    }

    pub fn stop_all(&self) {
        for (_, task) in self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
        {
            task.abort();
        }
    }
}

fn start(node: &Arc<Node>, deployed: Arc<Deployed>, sub: Subscription) -> Option<JoinHandle<()>> {
    let node = node.clone();
    let backends = &node.host.backends;
    // Backends exist: loading the module checked its grants against them.
    let task = match Source::parse(&sub.source).ok()? {
        Source::Kafka(id) => {
            let backend = backends.kafka.get(id)?;
            tokio::spawn(kafka(node, deployed, sub, backend))
        }
        Source::Amqp(id) => {
            let backend = backends.amqp.get(id)?;
            tokio::spawn(amqp(node, deployed, sub, backend))
        }
        Source::Redis(id) => {
            let backend = backends.kv.get(id)?;
            tokio::spawn(super::redis_trigger::redis(node, deployed, sub, backend))
        }
        Source::Events => return None,
    };
    Some(task)
}

/// Kafka: records of a partition are handled in order, one at a time; the
/// offset is committed after each success or dead-letter.
async fn kafka(
    node: Arc<Node>,
    deployed: Arc<Deployed>,
    sub: Subscription,
    backend: Arc<KafkaBackend>,
) {
    let group = format!("warden.{}", deployed.name);
    let retries = retries(&sub);
    loop {
        until_serving(&deployed).await;
        let consumer = match backend.subscribe(&group, &sub.topic) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(module = %deployed.name, "kafka consumer for {:?}: {e}", sub.topic);
                tokio::time::sleep(RECONNECT).await;
                continue;
            }
        };
        loop {
            let record = tokio::select! {
                r = consumer.next() => r,
                () = until_resting(&deployed) => break,
            };
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(module = %deployed.name, "kafka {:?}: {e}", sub.topic);
                    tokio::time::sleep(RECONNECT).await;
                    continue;
                }
            };
            let mut message = kafka_message(&sub, &record);
            let outcome = handle_with_retries(
                &node,
                &deployed,
                &mut message,
                retries,
                "kafka",
                WhenResting::GiveBack,
            )
            .await;
            let settled = match outcome {
                Outcome::Handled => true,
                // Not committed: the group resumes here when it serves again.
                Outcome::Resting => break,
                Outcome::Failed(error) => {
                    kafka_dead_letter(&node, &deployed, &sub, &backend, &message, &record, &error)
                        .await
                }
            };
            if settled && let Err(e) = consumer.commit(&record).await {
                tracing::warn!(module = %deployed.name, "kafka {:?}: {e} (the record may be handled again)", sub.topic);
            }
        }
        // Dropping the consumer leaves the group; uncommitted records are
        // redelivered to whoever consumes next.
    }
}

fn kafka_message(sub: &Subscription, record: &Incoming) -> Message {
    let mut headers = record.headers.clone();
    if let Some(key) = &record.key {
        headers.push((
            "kafka-key".into(),
            String::from_utf8_lossy(key).into_owned(),
        ));
    }
    headers.push(("kafka-partition".into(), record.partition.to_string()));
    headers.push(("kafka-offset".into(), record.offset.to_string()));
    Message {
        source: sub.source.clone(),
        topic: record.topic.clone(),
        payload: record.payload.clone(),
        headers,
        attempt: 1,
    }
}

/// Sends a failed record to the dead-letter topic; true when it may be
/// committed (sent, or there is no dead-letter topic). A dead-letter topic
/// that cannot be written to is retried, never skipped: the record must not
/// be lost.
async fn kafka_dead_letter(
    node: &Node,
    deployed: &Deployed,
    sub: &Subscription,
    backend: &KafkaBackend,
    message: &Message,
    record: &Incoming,
    error: &str,
) -> bool {
    let retries = retries(sub);
    let Some(dl) = &sub.dead_letter else {
        record_dead_letter(
            node,
            deployed,
            message,
            retries,
            error,
            "dropped (no dead-letter topic)",
        );
        return true;
    };
    let out = Outgoing {
        key: record.key.clone(),
        payload: record.payload.clone(),
        headers: dead_letter_headers(
            &Message {
                headers: record.headers.clone(),
                ..message.clone()
            },
            error,
            &deployed.name,
        ),
    };
    loop {
        match backend.send(dl, std::slice::from_ref(&out)).await {
            Ok(_) => {
                record_dead_letter(
                    node,
                    deployed,
                    message,
                    retries,
                    error,
                    &format!("sent to {dl:?}"),
                );
                return true;
            }
            Err(e) => {
                tracing::error!(module = %deployed.name, "dead-letter topic {dl:?}: {e}; retrying");
                if deployed.serving().is_none() {
                    return false;
                }
                tokio::time::sleep(RECONNECT).await;
            }
        }
    }
}

/// AMQP: up to `max-instances` messages in flight (the channel's prefetch),
/// each acked after success; a failure is dead-lettered to the
/// subscription's exchange and acked, or nacked without requeue (the
/// queue's own dead-letter exchange, if any, takes it).
async fn amqp(
    node: Arc<Node>,
    deployed: Arc<Deployed>,
    sub: Subscription,
    backend: Arc<AmqpBackend>,
) {
    let tag = format!("warden.{}", deployed.name);
    loop {
        until_serving(&deployed).await;
        let Some(version) = deployed.current() else {
            continue;
        };
        let prefetch = version
            .module
            .limits()
            .max_instances
            .clamp(1, u16::MAX as u32) as u16;
        drop(version);
        let mut consumer = match backend.consume(&sub.topic, &tag, prefetch).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(module = %deployed.name, "amqp consumer for {:?}: {e}", sub.topic);
                tokio::time::sleep(RECONNECT).await;
                continue;
            }
        };
        let in_flight = Arc::new(tokio::sync::Semaphore::new(prefetch as usize));
        loop {
            let inbound = tokio::select! {
                r = consumer.next() => r,
                () = until_resting(&deployed) => break,
            };
            let inbound = match inbound {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(module = %deployed.name, "amqp {:?}: {e}; reconnecting", sub.topic);
                    tokio::time::sleep(RECONNECT).await;
                    break;
                }
            };
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let (node, deployed, sub, backend) =
                (node.clone(), deployed.clone(), sub.clone(), backend.clone());
            tokio::spawn(async move {
                amqp_handle(&node, &deployed, &sub, &backend, inbound).await;
                drop(permit);
            });
        }
        // Let handlers in flight settle before the channel goes away
        // (anything unsettled is requeued by the broker when it closes).
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            in_flight.acquire_many(prefetch as u32),
        )
        .await;
        consumer.close().await;
    }
}

async fn amqp_handle(
    node: &Node,
    deployed: &Deployed,
    sub: &Subscription,
    backend: &Arc<AmqpBackend>,
    inbound: Inbound,
) {
    let mut headers = inbound.properties.headers.clone();
    headers.push(("amqp-exchange".into(), inbound.exchange.clone()));
    headers.push(("amqp-routing-key".into(), inbound.routing_key.clone()));
    headers.push(("amqp-redelivered".into(), inbound.redelivered.to_string()));
    let mut message = Message {
        source: sub.source.clone(),
        topic: sub.topic.clone(),
        payload: inbound.payload.clone(),
        headers,
        attempt: 1,
    };
    let retries = retries(sub);
    let settled = match handle_with_retries(
        node,
        deployed,
        &mut message,
        retries,
        "amqp",
        WhenResting::GiveBack,
    )
    .await
    {
        Outcome::Handled => inbound.ack().await,
        Outcome::Resting => inbound.nack(true).await,
        Outcome::Failed(error) => match &sub.dead_letter {
            Some(dlx) => {
                let props = Properties {
                    headers: dead_letter_headers(
                        &Message {
                            headers: inbound.properties.headers.clone(),
                            ..message.clone()
                        },
                        &error,
                        &deployed.name,
                    ),
                    ..inbound.properties.clone()
                };
                match backend
                    .publish(dlx, &sub.topic, &inbound.payload, &props)
                    .await
                {
                    Ok(()) => {
                        record_dead_letter(
                            node,
                            deployed,
                            &message,
                            retries,
                            &error,
                            &format!("sent to exchange {dlx:?}"),
                        );
                        inbound.ack().await
                    }
                    Err(e) => {
                        // Not lost: back to the queue, tried again later.
                        tracing::error!(module = %deployed.name, "dead-letter exchange {dlx:?}: {e}; requeued");
                        inbound.nack(true).await
                    }
                }
            }
            None => {
                record_dead_letter(
                    node,
                    deployed,
                    &message,
                    retries,
                    &error,
                    "rejected (nack) to the queue's own dead-letter exchange, if any",
                );
                inbound.nack(false).await
            }
        },
    };
    if let Err(e) = settled {
        // The channel is gone; the broker redelivers the message.
        tracing::warn!(module = %deployed.name, "amqp {:?}: {e}", sub.topic);
    }
}
