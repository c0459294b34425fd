//! Message triggers on external brokers: one task per `[[subscribe]]` with
//! a `kafka:`, `amqp:` or `redis:` source of every installed module. A task
//! consumes only while its module serves; a message is acknowledged to the
//! broker (Kafka offset commit, AMQP ack) only after the handler succeeded
//! or the message was dead-lettered, so a crash or trap redelivers it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use warden_amqp::{AmqpBackend, Inbound, Properties};
use warden_kafka::{Incoming, KafkaBackend, Outgoing};

use super::delivery::{
    Outcome, RECONNECT, WhenResting, connect_when_serving, dead_letter_headers,
    handle_with_retries, record_dead_letter, retries, while_serving,
};
use super::deployments::Deployed;
use super::node::Node;
use crate::manifest::{Source, Subscription};
use crate::message::Message;

/// What one consumer task serves. A new version with the same key keeps
/// the running consumer (no rebalance on a hot swap); a changed one
/// restarts it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    module: String,
    source: String,
    topic: String,
    max_retries: Option<u32>,
    dead_letter: Option<String>,
    /// Redis: the kv prefix the channels live under.
    prefix: Option<String>,
}

#[derive(Default)]
pub struct Consumers {
    running: Mutex<HashMap<Key, JoinHandle<()>>>,
    /// The deployments' generation the running set was made for.
    seen: AtomicU64,
}

impl Consumers {
    /// Starts the consumers installed modules need and stops the others.
    /// Cheap when nothing was installed since the last call.
    pub fn reconcile(&self, node: &Arc<Node>) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let generation = node.deployments.generation();
        let crashed = running.values().any(JoinHandle::is_finished);
        if self.seen.swap(generation, Ordering::Relaxed) == generation && !crashed {
            return;
        }
        let mut wanted: HashMap<Key, (Arc<Deployed>, Subscription)> = HashMap::new();
        for deployed in node.deployments.all() {
            let Some(version) = deployed.current() else {
                continue;
            };
            let manifest = version.module.manifest();
            for sub in &manifest.subscribe {
                let prefix = match Source::parse(&sub.source) {
                    Ok(Source::Events) | Err(_) => continue,
                    Ok(Source::Redis(id)) => manifest.redis_prefix(id).ok().map(str::to_string),
                    Ok(_) => None,
                };
                let key = Key {
                    module: deployed.name.clone(),
                    source: sub.source.clone(),
                    topic: sub.topic.clone(),
                    max_retries: sub.max_retries,
                    dead_letter: sub.dead_letter.clone(),
                    prefix,
                };
                wanted.insert(key, (deployed.clone(), sub.clone()));
            }
        }
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
            if let Some(task) = start(node, deployed, sub, key.prefix.clone()) {
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

fn start(
    node: &Arc<Node>,
    deployed: Arc<Deployed>,
    sub: Subscription,
    prefix: Option<String>,
) -> Option<JoinHandle<()>> {
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
            tokio::spawn(super::redis_trigger::redis(
                node, deployed, sub, backend, prefix?,
            ))
        }
        Source::Events => return None,
    };
    Some(task)
}

/// Kafka: each partition has its own worker, so the partitions are
/// handled side by side (as many at once as `max-instances` admits) while
/// the records of one partition are handled in order, one at a time; a
/// partition's offset is committed after each success or dead-letter.
async fn kafka(
    node: Arc<Node>,
    deployed: Arc<Deployed>,
    sub: Subscription,
    backend: Arc<KafkaBackend>,
) {
    let group = format!("warden.{}", deployed.name);
    let what = format!("kafka consumer for {:?}", sub.topic);
    loop {
        let consumer = connect_when_serving(&deployed, &what, || {
            std::future::ready(backend.subscribe(&group, &sub.topic))
        })
        .await;
        let kafka = KafkaTrigger {
            node: node.clone(),
            deployed: deployed.clone(),
            sub: sub.clone(),
            backend: backend.clone(),
            consumer: Arc::new(consumer),
        };
        kafka.dispatch(&what).await;
        // Dropping the consumer leaves the group; uncommitted records are
        // redelivered to whoever consumes next.
    }
}

/// Records a partition's worker may hold before the dispatcher waits:
/// backpressure on a slow partition, bounded memory.
const PARTITION_BACKLOG: usize = 16;

#[derive(Clone)]
struct KafkaTrigger {
    node: Arc<Node>,
    deployed: Arc<Deployed>,
    sub: Subscription,
    backend: Arc<KafkaBackend>,
    consumer: Arc<warden_kafka::Subscription>,
}

impl KafkaTrigger {
    /// Hands records to their partition's worker until the module stops
    /// serving or a worker meets a record it could not settle; then lets
    /// the workers finish what they are handling.
    async fn dispatch(&self, what: &str) {
        // One topic per subscription: a partition number names a worker.
        let mut workers: HashMap<i32, mpsc::Sender<Incoming>> = HashMap::new();
        let mut running = JoinSet::new();
        loop {
            let next = tokio::select! {
                r = while_serving(&self.deployed, self.consumer.next()) => r,
                // Only a worker that stopped short ends: nothing after its
                // record may be committed, so this consumer is done.
                _ = running.join_next(), if !running.is_empty() => None,
            };
            let record = match next {
                None => break,
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    tracing::warn!(module = %self.deployed.name, "{what}: {e}");
                    tokio::time::sleep(RECONNECT).await;
                    continue;
                }
            };
            let worker = workers.entry(record.partition).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(PARTITION_BACKLOG);
                running.spawn(self.clone().partition(rx));
                tx
            });
            let sent = tokio::select! {
                r = worker.send(record) => r.is_ok(),
                _ = running.join_next() => false,
            };
            if !sent {
                break;
            }
        }
        // Workers drain what they were given (a module no longer serving
        // gives each record back unhandled) and stop.
        workers.clear();
        let settle = async { while running.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(30), settle).await;
    }

    /// One partition's records in order; returns at the first record that
    /// is not settled (a commit covers every earlier offset).
    async fn partition(self, mut records: mpsc::Receiver<Incoming>) {
        while let Some(record) = records.recv().await {
            let settled = kafka_handle(
                &self.node,
                &self.deployed,
                &self.sub,
                &self.backend,
                &record,
            )
            .await;
            if !settled {
                return;
            }
            if let Err(e) = self.consumer.commit(&record).await {
                tracing::warn!(module = %self.deployed.name, "kafka {:?}: {e} (the record may be handled again)", self.sub.topic);
            }
        }
    }
}

/// Handles one record with retries; true when it is settled (handled, or
/// dead-lettered) and may be committed.
async fn kafka_handle(
    node: &Node,
    deployed: &Deployed,
    sub: &Subscription,
    backend: &KafkaBackend,
    record: &Incoming,
) -> bool {
    let mut message = kafka_message(sub, record);
    let retries = retries(sub);
    let outcome = handle_with_retries(
        node,
        deployed,
        &mut message,
        retries,
        "kafka",
        WhenResting::GiveBack,
    )
    .await;
    let error = match outcome {
        Outcome::Handled => return true,
        Outcome::Resting => return false,
        Outcome::Failed(error) => error,
    };
    let Some(dl) = &sub.dead_letter else {
        let went_to = "dropped (no dead-letter topic)";
        record_dead_letter(node, deployed, &message, retries, &error, went_to);
        return true;
    };
    let out = Outgoing {
        key: record.key.clone(),
        payload: record.payload.clone(),
        headers: dead_letter_headers(&record.headers, &record.topic, &error, &deployed.name),
    };
    // A dead-letter topic that cannot be written to is retried, never
    // skipped: the record must not be lost.
    loop {
        match backend.send(dl, std::slice::from_ref(&out)).await {
            Ok(_) => {
                let went_to = format!("sent to {dl:?}");
                record_dead_letter(node, deployed, &message, retries, &error, &went_to);
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
    let what = format!("amqp consumer for {:?}", sub.topic);
    loop {
        let (d, b, q, t) = (&deployed, &backend, &sub.topic, &tag);
        let (mut consumer, prefetch) = connect_when_serving(d, &what, || async move {
            let instances = d.current().map_or(1, |v| v.module.limits().max_instances);
            let prefetch = instances.clamp(1, u16::MAX as u32) as u16;
            let consumer = b.consume(q, t, prefetch).await?;
            Ok((consumer, prefetch))
        })
        .await;
        let in_flight = Arc::new(tokio::sync::Semaphore::new(prefetch as usize));
        while let Some(inbound) = while_serving(&deployed, consumer.next()).await {
            let inbound = match inbound {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(module = %deployed.name, "{what}: {e}; reconnecting");
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
    let outcome = handle_with_retries(
        node,
        deployed,
        &mut message,
        retries,
        "amqp",
        WhenResting::GiveBack,
    )
    .await;
    let settled = match outcome {
        Outcome::Handled => inbound.ack().await,
        Outcome::Resting => inbound.nack(true).await,
        Outcome::Failed(error) => {
            let Some(dlx) = &sub.dead_letter else {
                let went_to = "rejected (nack) to the queue's own dead-letter exchange, if any";
                record_dead_letter(node, deployed, &message, retries, &error, went_to);
                return log_unsettled(deployed, sub, inbound.nack(false).await);
            };
            let props = Properties {
                headers: dead_letter_headers(
                    &inbound.properties.headers,
                    &sub.topic,
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
                    let went_to = format!("sent to exchange {dlx:?}");
                    record_dead_letter(node, deployed, &message, retries, &error, &went_to);
                    inbound.ack().await
                }
                Err(e) => {
                    // Not lost: back to the queue, tried again later.
                    tracing::error!(module = %deployed.name, "dead-letter exchange {dlx:?}: {e}; requeued");
                    inbound.nack(true).await
                }
            }
        }
    };
    log_unsettled(deployed, sub, settled);
}

/// A failed ack/nack means the channel is gone: the broker redelivers.
fn log_unsettled(
    deployed: &Deployed,
    sub: &Subscription,
    settled: Result<(), warden_capability::CapabilityError>,
) {
    if let Err(e) = settled {
        tracing::warn!(module = %deployed.name, "amqp {:?}: {e}", sub.topic);
    }
}
