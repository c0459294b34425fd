//! Kafka through `warden serve` against the real broker (tansu on
//! 127.0.0.1:9092, started by tests/services.sh): sends through guests,
//! grants, message triggers with retries and dead letters, consumer-group
//! resume after a restart, and redelivery of what a crash left uncommitted.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

const KAFKA: &str = "127.0.0.1:9092";

/// tansu does not create topics on demand.
async fn create_topics(topics: &[&str]) {
    create_partitioned(KAFKA, topics, 1).await;
}

async fn create_partitioned(broker: &str, topics: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .unwrap();
    let new: Vec<_> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    for result in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap_or_else(|e| panic!("the Kafka broker on {broker} (run tests/services.sh): {e}"))
    {
        result.expect("topic created");
    }
}

async fn produce(topic: &str, payload: &str) {
    produce_to(topic, None, payload).await;
}

async fn produce_to(topic: &str, partition: Option<i32>, payload: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::<(), _> {
                partition,
                ..FutureRecord::to(topic).payload(payload)
            },
            Duration::from_secs(5),
        )
        .await
        .expect("native produce");
}

/// Broker round trips (group joins, commits) take longer than the
/// default wait.
async fn slowly<F: AsyncFn() -> bool>(what: &str, f: F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn host_config() -> String {
    host_config_for(KAFKA)
}

fn host_config_for(broker: &str) -> String {
    // Inside [server]: traps must not mark the crash module failed.
    format!(
        "failure-threshold = 1000\n[kafka.k]\nbootstrap-servers = \"{broker}\"\ndelivery-timeout = \"2s\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_send_within_their_grant_and_handlers_get_each_record_at_least_once() {
    let id = unique();
    let (topic, dlq, crash) = (
        format!("wt{id}.orders"),
        format!("wt{id}.dlq"),
        format!("wt{id}.crash"),
    );
    create_topics(&[&topic, &dlq, &crash]).await;
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), &host_config());
    let probe = guest("kafka-probe");
    s.deploy(&probe, "kpub", &format!("[limits]\ntimeout = \"5s\"\n[grants.kafka.ev]\nbackend = \"k\"\nproduce = [\"wt{id}.*\"]\n")).await;
    s.deploy(&probe, "ksub", &format!(
            "[grants.kafka.ev]\nbackend = \"k\"\nproduce = [\"{dlq}\"]\nconsume = [\"{topic}\"]\n\
             [[subscribe]]\nsource = \"kafka:k\"\ntopic = \"{topic}\"\nmax-retries = 1\ndead-letter = \"{dlq}\"\n"
        ),
    )
    .await;
    s.deploy(&probe, "kdlq", &format!("[grants.kafka.ev]\nbackend = \"k\"\nconsume = [\"{dlq}\"]\n[[subscribe]]\nsource = \"kafka:k\"\ntopic = \"{dlq}\"\n"),
    )
    .await;

    // Round trip: guest → Kafka → guest.
    let (status, body) = http(
        &s.ingress,
        "POST",
        &format!("/kpub/ev/{topic}"),
        None,
        b"hello",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("sent 0:"), "{body}");
    slowly("the subscriber handled it", async || {
        s.stderr()
            .contains(&format!("handled kafka:k {topic} hello attempt 1 []"))
    })
    .await;
    // A batch, all acknowledged.
    let (status, body) = http(
        &s.ingress,
        "POST",
        &format!("/kpub/ev/{topic}?n=20"),
        None,
        b"batch",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "sent 20"));

    // A failing handler: 1 + max-retries attempts, then the dead-letter topic with the error.
    let (status, _) = http(
        &s.ingress,
        "POST",
        &format!("/kpub/ev/{topic}"),
        None,
        b"fail",
    )
    .await;
    assert_eq!(status, 200);
    slowly("retries and the dead letter", async || {
        let log = s.stderr();
        log.contains(&format!("handled kafka:k {topic} fail attempt 2"))
            && log.contains(&format!(
                "handled kafka:k {dlq} fail attempt 1 [warden-error=failed: asked to fail,warden-original-topic={topic},warden-failed-module=ksub]"
            ))
    })
    .await;
    assert!(
        !s.stderr()
            .contains(&format!("handled kafka:k {topic} fail attempt 3"))
    );

    // Outside the grant, oversize, floods, bad names: refused before the broker.
    for (path, expected, what) in [
        (
            format!("/kpub/other/{topic}"),
            403,
            "kafka grant \"other\" not in manifest",
        ),
        (
            "/kpub/ev/payments".to_string(),
            403,
            "not in grants.kafka.ev.produce",
        ),
        (
            format!("/kpub/ev/{topic}?size=2000000"),
            413,
            "payload is 2000000 bytes",
        ),
        (format!("/kpub/ev/{topic}?headers=100"), 413, "100 headers"),
        (
            format!("/kpub/ev/{topic}?headers=10&header-size=4000"),
            413,
            "headers is",
        ),
        (
            format!("/kpub/ev/{topic}?n=1001"),
            413,
            "a batch of 1001 records",
        ),
        (
            format!("/kpub/ev/wt{id}.bad$name"),
            400,
            "is not a Kafka topic name",
        ),
        (
            format!("/kpub/ev/wt{id}.missing"),
            504,
            "no acknowledgement within 2s",
        ),
    ] {
        let (status, body) = http(&s.ingress, "POST", &path, None, b"x").await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(body.contains(what), "{path}: {body}");
    }
    // Consuming a topic outside the grant cannot even be uploaded.
    let err = s
        .upload(
            &probe,
            &probe_manifest(
                "thief",
                &format!("[grants.kafka.ev]\nbackend = \"k\"\nconsume = [\"{dlq}\"]\n[[subscribe]]\nsource = \"kafka:k\"\ntopic = \"{topic}\"\n"),
            ),
            true,
        )
        .await
        .unwrap_err();
    assert!(err.contains("subscribe[0].topic"), "{err}");
    slowly("the denials in the audit log", async || {
        let kinds = audit_kinds(&s, "").await;
        kinds.contains(&("kpub".into(), "denied".into()))
            && kinds.contains(&("ksub".into(), "dead-letter".into()))
    })
    .await;

    // Resume from the committed offset: what was handled is not handled
    // again; what was sent while warden was down is.
    let dir = s.stop();
    produce(&topic, "while-down").await;
    let s = Server::start(&dir, &host_config());
    slowly("the record sent while down", async || {
        s.stderr()
            .contains(&format!("handled kafka:k {topic} while-down attempt 1"))
    })
    .await;
    let log = s.stderr();
    assert!(!log.contains("hello attempt"), "handled twice: {log}");
    assert!(
        !log.contains(&format!("{topic} fail attempt")),
        "handled twice: {log}"
    );

    // A handler that keeps trapping is retried, never committed: after a
    // crash (SIGKILL) the next node gets the record again.
    let probe = guest("kafka-probe");
    s.deploy(&probe, "kcrash", &format!("[grants.kafka.ev]\nbackend = \"k\"\nconsume = [\"{crash}\"]\n[[subscribe]]\nsource = \"kafka:k\"\ntopic = \"{crash}\"\nmax-retries = 100\n")).await;
    produce(&crash, "trap").await;
    slowly("the trapping handler retried", async || {
        s.stderr()
            .contains(&format!("handled kafka:k {crash} trap attempt 2"))
    })
    .await;
    let dir = s.dir.clone();
    drop(s); // SIGKILL
    let s = Server::start(&dir, &host_config());
    slowly("the uncommitted record redelivered", async || {
        s.stderr()
            .contains(&format!("handled kafka:k {crash} trap attempt 1"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_stuck_on_a_failing_record_does_not_hold_up_the_others() {
    let id = unique();
    let topic = format!("wt{id}.parts");
    create_partitioned(KAFKA, &[&topic], 2).await;
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), &host_config());
    let probe = guest("kafka-probe");
    s.deploy(&probe, "kparts", &format!("[limits]\nmax-instances = 2\n[grants.kafka.ev]\nbackend = \"k\"\nconsume = [\"{topic}\"]\n[[subscribe]]\nsource = \"kafka:k\"\ntopic = \"{topic}\"\nmax-retries = 100\n")).await;
    // Partition 0: a record whose handler traps, retried for minutes.
    produce_to(&topic, Some(0), "trap").await;
    slowly("partition 0 retrying", async || {
        s.stderr()
            .contains(&format!("handled kafka:k {topic} trap attempt 2"))
    })
    .await;
    // Partition 1 is handled meanwhile, not after the retries.
    produce_to(&topic, Some(1), "hello").await;
    slowly("partition 1 handled", async || {
        s.stderr()
            .contains(&format!("handled kafka:k {topic} hello attempt 1"))
    })
    .await;
    assert!(
        !s.stderr()
            .contains(&format!("handled kafka:k {topic} trap attempt 100")),
        "partition 1 waited for partition 0's retries"
    );
}

/// A tansu broker of the test's own, on a free port: it can be frozen
/// without touching the shared one. Killed on drop.
struct OwnBroker {
    child: std::process::Child,
    addr: String,
}

impl OwnBroker {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let child = std::process::Command::new("tansu")
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tansu on PATH (tests/services.sh installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(std::time::Instant::now() < deadline, "tansu on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnBroker { child, addr }
    }

    /// SIGSTOP: connections stay open and nothing answers, like a hung
    /// broker or a network partition. SIGCONT resumes it with its state.
    fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The group's committed offset for partition 0 of `topic`, if any.
fn committed(broker: &str, group: &str, topic: &str) -> Option<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let list = consumer
        .committed_offsets(list, Duration::from_secs(5))
        .ok()?;
    match list.find_partition(topic, 0)?.offset() {
        Offset::Offset(n) => Some(n),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_times_sends_out_and_both_sides_resume_when_it_answers_again() {
    let broker = OwnBroker::start();
    let id = unique();
    let topic = format!("wf{id}.events");
    create_partitioned(&broker.addr, &[&topic], 1).await;
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), &host_config_for(&broker.addr));
    let probe = guest("kafka-probe");
    s.deploy(&probe, "kfpub", &format!("[limits]\ntimeout = \"5s\"\n[grants.kafka.ev]\nbackend = \"k\"\nproduce = [\"{topic}\"]\n")).await;
    s.deploy(&probe, "kfsub", &format!("[grants.kafka.ev]\nbackend = \"k\"\nconsume = [\"{topic}\"]\n[[subscribe]]\nsource = \"kafka:k\"\ntopic = \"{topic}\"\n")).await;
    let send = async |payload: &str| {
        http(
            &s.ingress,
            "POST",
            &format!("/kfpub/ev/{topic}"),
            None,
            payload.as_bytes(),
        )
        .await
    };
    assert_eq!(send("before").await.0, 200);
    slowly("the record handled and committed", async || {
        committed(&broker.addr, "warden.kfsub", &topic) == Some(1)
    })
    .await;

    broker.freeze(true);
    let (status, body) = send("frozen").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("no acknowledgement within 2s"), "{body}");
    // Shorter than the consumer's session timeout (6 s): tansu keeps an
    // expired member as the group's leader, so a longer freeze leaves the
    // group unable to rebalance on that broker (seen with librdkafka's
    // cgrp debug log), a broker defect this test cannot cover.

    // Back: sends are acknowledged again and the same consumer (no warden
    // restart) handles new records, without handling the committed one again.
    broker.freeze(false);
    slowly("a send acknowledged after the freeze", async || {
        send("after").await.0 == 200
    })
    .await;
    slowly("the record sent after the freeze handled", async || {
        s.stderr()
            .contains(&format!("handled kafka:k {topic} after attempt 1"))
    })
    .await;
    let log = s.stderr();
    assert_eq!(
        log.matches(&format!("handled kafka:k {topic} before attempt"))
            .count(),
        1,
        "the committed record was handled again: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_to_a_frozen_broker_fail_fast_grow_nothing_and_come_back_within_a_second() {
    let broker = OwnBroker::start();
    let topic = format!("wo{}.events", unique());
    create_partitioned(&broker.addr, &[&topic], 1).await;
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), &host_config_for(&broker.addr));
    let grant = format!(
        "[limits]\ntimeout = \"5s\"\n[grants.kafka.ev]\nbackend = \"k\"\nproduce = [\"{topic}\"]\n"
    );
    s.deploy(&guest("kafka-probe"), "kfout", &grant).await;
    let send = async |payload: &str| {
        http(
            &s.ingress,
            "POST",
            &format!("/kfout/ev/{topic}"),
            None,
            payload.as_bytes(),
        )
        .await
    };
    assert_eq!(send("before").await.0, 200);
    broker.freeze(true);
    // The first send finds out: no acknowledgement within the delivery timeout.
    let (status, body) = send("frozen").await;
    assert_eq!(status, 504, "{body}");
    // Known down now: thousands of sends fail at once with `unavailable`,
    // queue nothing and grow nothing.
    let rss_before = rss_kib(&s);
    let flood = (0..8).map(|_| async {
        let mut slowest = Duration::ZERO;
        for _ in 0..400 {
            let started = std::time::Instant::now();
            let (status, body) = send("flood").await;
            slowest = slowest.max(started.elapsed());
            assert_eq!(status, 503, "{body}");
            assert!(
                body.contains("kafka backend k: cluster unreachable"),
                "{body}"
            );
        }
        slowest
    });
    let slowest = futures_util::future::join_all(flood)
        .await
        .into_iter()
        .max()
        .unwrap();
    let grown = rss_kib(&s).saturating_sub(rss_before);
    println!(
        "RSS: {rss_before} KiB before 3200 failed sends, +{grown} KiB after; slowest {slowest:?}"
    );
    assert!(
        grown < 10 << 10,
        "3200 failed sends grew the server by {grown} KiB"
    );
    // One send per probe (every 250 ms) may wait for the probe's 500 ms.
    assert!(
        slowest < Duration::from_secs(1),
        "a failed send took {slowest:?}"
    );
    broker.freeze(false);
    let thawed = std::time::Instant::now();
    while send("after").await.0 != 200 {
        assert!(
            thawed.elapsed() < Duration::from_secs(1),
            "sends not back {:?} after the broker",
            thawed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("back {:?} after the broker", thawed.elapsed());
    // Acknowledged sends are all on the topic: before, after (and the
    // frozen one, which librdkafka still delivers once the broker answers).
    let produced = high_watermark(&broker.addr, &topic);
    assert!(produced >= 2, "{produced} records on the topic");
}

/// The number of records in partition 0 of `topic`.
fn high_watermark(broker: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .unwrap();
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(5))
        .unwrap()
        .1
}
