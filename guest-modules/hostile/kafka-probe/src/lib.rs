//! Kafka from both sides, for the broker tests. `POST /<module>/<grant>/
//! <topic>?n=&size=&headers=&header-size=` sends the body (or `size` bytes)
//! `n` times (`send-batch` when n > 1) and answers 200, or the status that
//! names the host's error (403, 413, 400, 504, …). As a subscriber it
//! prints each message; `fail` fails, `trap` panics.

use probe_common::{Request, respond};
use warden_sdk::kafka::{self, Outgoing};
use warden_sdk::{Error, Message};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct KafkaProbe;

impl wasi::exports::http::incoming_handler::Guest for KafkaProbe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let r = Request::read(request);
        let result = match &r.segments[..] {
            [grant, topic] => send(&r, grant, topic),
            _ => Err(Error::Invalid("POST /<module>/<grant>/<topic>".into())),
        };
        respond(out, result);
    }
}

fn send(r: &Request, grant: &str, topic: &str) -> Result<String, Error> {
    let producer = kafka::open(grant)?;
    let record = Outgoing {
        key: Some(b"k".to_vec()),
        payload: r.body.clone(),
        headers: r.headers(),
    };
    let n = r.num("n").unwrap_or(1);
    if n == 1 {
        let receipt = producer.send(topic, &record)?;
        return Ok(format!("sent {}:{}", receipt.partition, receipt.offset));
    }
    let receipts = producer.send_batch(topic, &vec![record; n])?;
    Ok(format!("sent {}", receipts.len()))
}

impl warden_sdk::MessageHandler for KafkaProbe {
    fn handle(message: Message) -> Result<(), String> {
        probe_common::handle(message)
    }
}

wasi::http::proxy::export!(KafkaProbe);
warden_sdk::export_message_handler!(KafkaProbe);
