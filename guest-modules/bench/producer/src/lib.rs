//! The broker benchmark's guest: one Kafka `send-batch`, or `count` AMQP
//! publishes with confirms, per invocation.

use warden_sdk::amqp::{self, Properties};
use warden_sdk::kafka::{self, Outgoing};

wit_bindgen::generate!({
    inline: r#"
        package warden-bench:producer;
        interface producer {
            kafka-batch: func(topic: string, count: u32, size: u32) -> result<u32, string>;
            amqp-publish: func(queue: string, count: u32, size: u32) -> result<u32, string>;
        }
        world bench { export producer; }
    "#,
});

struct Producer;

impl exports::warden_bench::producer::producer::Guest for Producer {
    fn kafka_batch(topic: String, count: u32, size: u32) -> Result<u32, String> {
        let producer = kafka::open("events").map_err(|e| format!("{e:?}"))?;
        let record = Outgoing {
            key: None,
            payload: vec![b'x'; size as usize],
            headers: Vec::new(),
        };
        let records = vec![record; count as usize];
        let receipts = producer
            .send_batch(&topic, &records)
            .map_err(|e| format!("{e:?}"))?;
        Ok(receipts.len() as u32)
    }

    fn amqp_publish(queue: String, count: u32, size: u32) -> Result<u32, String> {
        let channel = amqp::open("bus").map_err(|e| format!("{e:?}"))?;
        let payload = vec![b'x'; size as usize];
        let props = Properties {
            content_type: None,
            correlation_id: None,
            message_id: None,
            reply_to: None,
            persistent: false,
            expiration_ms: None,
            headers: Vec::new(),
        };
        for _ in 0..count {
            channel
                .publish("", &queue, &payload, &props)
                .map_err(|e| format!("{e:?}"))?;
        }
        Ok(count)
    }
}

export!(Producer);
