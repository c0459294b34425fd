//! Orders through Kafka. `POST /orders` with an order amount in cents as
//! the body sends it to the `orders.created` topic and answers with where
//! Kafka stored it; the module's own `[[subscribe]]` on that topic adds
//! each order to a summary in Redis; `GET /orders/summary` reads it.
//! Delivery is at-least-once: a handler that fails is retried and the
//! offset is committed only after it succeeded.

use warden_sdk::http::{read_body, respond};
use warden_sdk::kafka::{self, Outgoing};
use warden_sdk::kv::Store;
use warden_sdk::{Error, Message, MessageHandler};
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

const TOPIC: &str = "orders.created";

struct Orders;

impl wasi::exports::http::incoming_handler::Guest for Orders {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (status, text) = match (request.method(), path.as_str()) {
            (Method::Post, "/orders") => place(read_body(request, 1 << 20)),
            (Method::Get, "/orders/summary") => summary(),
            _ => Ok((404, "POST /orders or GET /orders/summary\n".into())),
        }
        .unwrap_or_else(|e| (503, format!("{e:?}\n")));
        respond(out, status, &text);
    }
}

fn place(body: Vec<u8>) -> Result<(u16, String), Error> {
    let text = String::from_utf8_lossy(&body).trim().to_string();
    if text.parse::<u64>().is_err() {
        return Ok((400, "the body must be an amount in cents\n".into()));
    }
    let producer = kafka::open("events")?;
    let receipt = producer.send(
        TOPIC,
        &Outgoing {
            key: None,
            payload: text.into_bytes(),
            headers: vec![("content-type".into(), "text/plain".into())],
        },
    )?;
    Ok((
        202,
        format!(
            "order accepted: partition {} offset {}\n",
            receipt.partition, receipt.offset
        ),
    ))
}

fn summary() -> Result<(u16, String), Error> {
    let store = Store::open("cache")?;
    let count = store.get("count")?.unwrap_or_default();
    let total = store.get("total-cents")?.unwrap_or_default();
    let text = |b: Vec<u8>| {
        let s = String::from_utf8_lossy(&b).into_owned();
        if s.is_empty() { "0".to_string() } else { s }
    };
    Ok((
        200,
        format!("orders {} total-cents {}\n", text(count), text(total)),
    ))
}

impl MessageHandler for Orders {
    fn handle(message: Message) -> Result<(), String> {
        let cents: i64 = String::from_utf8_lossy(&message.payload)
            .trim()
            .parse()
            .map_err(|e| format!("not an order amount: {e}"))?;
        let store = Store::open("cache").map_err(|e| format!("{e:?}"))?;
        store.incr("count", 1).map_err(|e| format!("{e:?}"))?;
        store
            .incr("total-cents", cents)
            .map_err(|e| format!("{e:?}"))?;
        Ok(())
    }
}

wasi::http::proxy::export!(Orders);
warden_sdk::export_message_handler!(Orders);
