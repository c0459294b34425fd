//! Kafka and AMQP from both sides, for the broker tests. Over HTTP
//! (route `/<module>`):
//!
//! - `POST …/kafka/<grant>/<topic>?n=&size=&headers=` sends the body (or
//!   `size` bytes) `n` times (`send-batch` when n > 1);
//! - `POST …/amqp/<grant>/<op>?…` with op `publish` (exchange, key),
//!   `declare-queue` (name, dlx), `declare-exchange` (name), `bind` (queue,
//!   exchange, key), `get` (queue, settle = ack | nack | none);
//!
//! answering 200, or 403/404/400/413/503/504 with the host's error. As a
//! subscriber it prints each message; `fail` returns an error, `trap`
//! panics (dead letters, which carry `warden-error`, are accepted).

use warden_sdk::amqp::{self, ExchangeKind, Properties, QueueOptions};
use warden_sdk::kafka::{self, Outgoing};
use warden_sdk::{Error, Message};
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct BrokerProbe;

impl wasi::exports::http::incoming_handler::Guest for BrokerProbe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (path, query) = path.split_once('?').unwrap_or((&path, ""));
        let q = |k: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        };
        let num = |k: &str| q(k).and_then(|v| v.parse::<usize>().ok());
        let segments: Vec<String> = path.split('/').skip(2).map(str::to_string).collect();
        let mut body = read_body(request);
        if let Some(size) = num("size") {
            body = vec![b'x'; size];
        }
        let headers: Vec<(String, String)> = (0..num("headers").unwrap_or(0))
            .map(|i| (format!("h{i}"), "v".repeat(num("header-size").unwrap_or(1))))
            .collect();
        let result = match segments.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["kafka", grant, topic] => {
                kafka_send(grant, topic, body, headers, num("n").unwrap_or(1))
            }
            ["amqp", grant, op] => amqp_op(grant, op, &q, body, headers),
            _ => Err(Error::Invalid(format!("unknown path {path}"))),
        };
        let (status, text) = match result {
            Ok(text) => (200, text),
            Err(Error::Denied(m)) => (403, m),
            Err(Error::NotFound(m)) => (404, m),
            Err(Error::Invalid(m)) => (400, m),
            Err(Error::LimitExceeded(m)) => (413, m),
            Err(Error::Timeout(m)) => (504, m),
            Err(Error::Unavailable(m)) => (503, m),
            Err(Error::Backend(m)) => (502, m),
        };
        respond(out, status, &text);
    }
}

fn kafka_send(
    grant: &str,
    topic: &str,
    payload: Vec<u8>,
    headers: Vec<(String, String)>,
    n: usize,
) -> Result<String, Error> {
    let producer = kafka::open(grant)?;
    let record = Outgoing {
        key: Some(b"k".to_vec()),
        payload,
        headers,
    };
    if n == 1 {
        let r = producer.send(topic, &record)?;
        return Ok(format!("sent {}:{}", r.partition, r.offset));
    }
    let receipts = producer.send_batch(topic, &vec![record; n])?;
    Ok(format!("sent {}", receipts.len()))
}

fn amqp_op(
    grant: &str,
    op: &str,
    q: &dyn Fn(&str) -> Option<String>,
    payload: Vec<u8>,
    headers: Vec<(String, String)>,
) -> Result<String, Error> {
    let channel = amqp::open(grant)?;
    let arg = |k: &str| q(k).unwrap_or_default();
    match op {
        "publish" => {
            let props = Properties {
                content_type: None,
                correlation_id: None,
                message_id: None,
                reply_to: None,
                persistent: q("persistent").is_some(),
                expiration_ms: None,
                headers,
            };
            channel.publish(&arg("exchange"), &arg("key"), &payload, &props)?;
            Ok("published".into())
        }
        "declare-exchange" => {
            channel.declare_exchange(&arg("name"), ExchangeKind::Direct, false)?;
            Ok("declared".into())
        }
        "declare-queue" => {
            let options = QueueOptions {
                durable: q("durable").is_some(),
                dead_letter_exchange: q("dlx"),
                message_ttl_ms: None,
                max_length: None,
            };
            channel.declare_queue(&arg("name"), &options)?;
            Ok("declared".into())
        }
        "bind" => {
            channel.bind_queue(&arg("queue"), &arg("exchange"), &arg("key"))?;
            Ok("bound".into())
        }
        "get" => match channel.get(&arg("queue"))? {
            None => Ok("empty".into()),
            Some((message, delivery)) => {
                match arg("settle").as_str() {
                    "ack" => delivery.ack()?,
                    "nack" => delivery.nack(true)?,
                    _ => {}
                }
                Ok(String::from_utf8_lossy(&message.payload).into_owned())
            }
        },
        _ => Err(Error::Invalid(format!("unknown amqp op {op}"))),
    }
}

impl warden_sdk::MessageHandler for BrokerProbe {
    fn handle(message: Message) -> Result<(), String> {
        let payload = String::from_utf8_lossy(&message.payload).into_owned();
        let headers: Vec<String> = message
            .headers
            .iter()
            .filter(|(k, _)| k.starts_with("warden-"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "handled {} {} {payload} attempt {} [{}]",
            message.source,
            message.topic,
            message.attempt,
            headers.join(",")
        );
        if message.headers.iter().any(|(k, _)| k == "warden-error") {
            return Ok(());
        }
        match payload.as_str() {
            "fail" => Err("asked to fail".into()),
            "trap" => panic!("asked to trap"),
            _ => Ok(()),
        }
    }
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let response = OutgoingResponse::new(Fields::new());
    response.set_status_code(status).expect("valid status");
    let body = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("stream taken once");
    for chunk in text.as_bytes().chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .expect("writing the body");
    }
    drop(stream);
    OutgoingBody::finish(body, None).expect("finishing the body");
}

fn read_body(request: IncomingRequest) -> Vec<u8> {
    let mut data = Vec::new();
    let Ok(body) = request.consume() else {
        return data;
    };
    let Ok(stream) = body.stream() else {
        return data;
    };
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        data.extend_from_slice(&chunk);
    }
    data
}

wasi::http::proxy::export!(BrokerProbe);
warden_sdk::export_message_handler!(BrokerProbe);
