//! Broker throughput, guest against the native driver in the same run:
//! Kafka produce of 1 KiB records in batches (guest `send-batch` vs
//! rdkafka's FutureProducer, same settings: acks=all), and RabbitMQ publish
//! with confirms (guest vs lapin on a confirm channel). Every guest batch is
//! a full invocation (instantiate, open the handle, send, drop). Needs
//! tansu on 127.0.0.1:9092 and RabbitMQ (`tests/services.sh`) and the
//! guests (`just build-guests`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use warden_amqp::{AmqpBackendConfig, AmqpBackends};
use warden_capability::LogAudit;
use warden_fs::HostPaths;
use warden_kafka::{KafkaBackendConfig, KafkaBackends};
use warden_runtime::linker::build_linker;
use warden_runtime::{
    Backends, EngineOptions, Limits, LoadContext, LoadedModule, Manifest, WardenEngine,
};

mod common;

const KAFKA: &str = "127.0.0.1:9092";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const SIZE: usize = 1024;
const BATCH: usize = 500;
const BATCHES: usize = 40;
const PUBLISHES: usize = 50;
const AMQP_CALLS: usize = 40;
const CONCURRENCY: usize = 4;
const ROUNDS: usize = 5;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let topic = format!("warden-bench-{}", std::process::id());
    let queue = topic.clone();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .create()
        .unwrap();
    for r in admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap()
    {
        r.unwrap();
    }
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .unwrap();
    let setup = conn.create_channel().await.unwrap();
    setup
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                auto_delete: false,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let backends = Backends {
        kafka: KafkaBackends::new(&BTreeMap::from([(
            "events".to_string(),
            toml::from_str::<KafkaBackendConfig>(&format!("bootstrap-servers = \"{KAFKA}\""))
                .unwrap(),
        )]))
        .unwrap(),
        amqp: AmqpBackends::new(&BTreeMap::from([(
            "rabbit".to_string(),
            toml::from_str::<AmqpBackendConfig>(&format!("url = \"{AMQP}\"")).unwrap(),
        )]))
        .unwrap(),
        ..Backends::default()
    };
    let module = Arc::new(load(&backends, &topic));

    let native_producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("acks", "all")
        .create()
        .unwrap();
    let native_kafka = {
        let (p, topic) = (native_producer.clone(), topic.clone());
        move |_| {
            let (p, topic) = (p.clone(), topic.clone());
            async move {
                let payload = vec![b'x'; SIZE];
                let sends = (0..BATCH).map(|_| {
                    p.send(
                        FutureRecord::<(), _>::to(&topic).payload(&payload),
                        Duration::from_secs(5),
                    )
                });
                for r in join_all(sends).await {
                    r.unwrap();
                }
            }
        }
    };
    let guest_kafka = {
        let (module, topic) = (module.clone(), topic.clone());
        move |_| {
            let (module, topic) = (module.clone(), topic.clone());
            async move {
                let (r, _) = module
                    .invoke("kafka-batch", &[json!(topic), json!(BATCH), json!(SIZE)])
                    .await
                    .unwrap();
                assert_eq!(r[0]["ok"], json!(BATCH), "{r:?}");
            }
        }
    };
    // One confirm channel per worker, as the guest's pool gives it.
    let mut channels = Vec::new();
    for _ in 0..CONCURRENCY {
        let c = conn.create_channel().await.unwrap();
        c.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        channels.push(c);
    }
    let channels = Arc::new(channels);
    let native_amqp = {
        let (channels, queue) = (channels.clone(), queue.clone());
        move |i: usize| {
            let (channels, queue) = (channels.clone(), queue.clone());
            async move {
                let channel = &channels[i / AMQP_CALLS % CONCURRENCY];
                let payload = vec![b'x'; SIZE];
                for _ in 0..PUBLISHES {
                    let confirm = channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            BasicPublishOptions {
                                mandatory: true,
                                ..Default::default()
                            },
                            &payload,
                            BasicProperties::default(),
                        )
                        .await
                        .unwrap()
                        .await
                        .unwrap();
                    assert!(confirm.is_ack());
                }
            }
        }
    };
    let guest_amqp = {
        let (module, queue) = (module.clone(), queue.clone());
        move |_| {
            let (module, queue) = (module.clone(), queue.clone());
            async move {
                let (r, _) = module
                    .invoke(
                        "amqp-publish",
                        &[json!(queue), json!(PUBLISHES), json!(SIZE)],
                    )
                    .await
                    .unwrap();
                assert_eq!(r[0]["ok"], json!(PUBLISHES), "{r:?}");
            }
        }
    };

    println!(
        "| workload ({CONCURRENCY} concurrent, 1 KiB messages; median of {ROUNDS} alternating rounds) | native | through a guest | ratio |"
    );
    println!("|---|---|---|---|");
    let (n, g, r) = common::rounds(ROUNDS, BATCHES, CONCURRENCY, native_kafka, guest_kafka).await;
    let per = BATCH as f64;
    println!(
        "| Kafka produce, batches of {BATCH} (acks=all) | {:.0} msg/s | {:.0} msg/s | {r:.2}× |",
        n * per,
        g * per
    );
    let (n, g, r) = common::rounds(ROUNDS, AMQP_CALLS, CONCURRENCY, native_amqp, guest_amqp).await;
    let per = PUBLISHES as f64;
    println!(
        "| RabbitMQ publish with confirm, {PUBLISHES} per call | {:.0} msg/s | {:.0} msg/s | {r:.2}× |",
        n * per,
        g * per
    );

    let _ = setup
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
}

fn load(backends: &Backends, topic: &str) -> LoadedModule {
    let engine = Box::leak(Box::new(
        WardenEngine::new(EngineOptions {
            max_instances: 64,
            cache_dir: None,
            ..EngineOptions::default()
        })
        .unwrap(),
    ));
    let linker = build_linker(engine).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-modules/target/wasm32-wasip2/release/producer.wasm");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `just build-guests`)", path.display()));
    let manifest = Manifest::parse(&format!(
        "[module]\nname = \"producer\"\nversion = \"0.1.0\"\n[limits]\nmax-instances = {CONCURRENCY}\ntimeout = \"30s\"\n\
         [grants.kafka.events]\nbackend = \"events\"\nproduce = [\"{topic}\"]\n\
         [grants.amqp.bus]\nbackend = \"rabbit\"\npublish = [\"/{topic}\"]\n"
    ))
    .unwrap();
    let cx = LoadContext {
        engine,
        linker: &linker,
        host_paths: HostPaths::RelativeTo(".".into()),
        defaults: &Limits::default(),
        audit: Arc::new(LogAudit),
        backends,
        outside_only: None,
    };
    LoadedModule::load(&cx, &bytes, manifest).expect("load producer")
}
