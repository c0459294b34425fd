//! A RabbitMQ worker. At activation (`init`) it declares its topology: the
//! `jobs` exchange, the `jobs.work` queue bound to it with key `work`, and
//! `jobs.dead` (exchange + queue) for poison messages. Each job consumed
//! from `jobs.work` is a number to add to a total in Redis; anything else
//! is poison: the handler fails, the runtime retries, then dead-letters it
//! to `jobs.dead` with the error in a header. `POST /jobs` publishes a job,
//! `GET /jobs/stats` shows the total and the dead letters waiting.

use warden_sdk::amqp::{self, Channel, ExchangeKind, Properties, QueueOptions};
use warden_sdk::http::{read_body, respond};
use warden_sdk::kv::Store;
use warden_sdk::{Error, Lifecycle, Message, MessageHandler};
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

struct Worker;

fn channel() -> Result<Channel, Error> {
    amqp::open("bus")
}

fn queue(_name: &str, dlx: Option<&str>) -> QueueOptions {
    QueueOptions {
        durable: true,
        dead_letter_exchange: dlx.map(str::to_string),
        message_ttl_ms: None,
        max_length: None,
    }
}

fn properties(headers: Vec<(String, String)>) -> Properties {
    Properties {
        content_type: Some("text/plain".into()),
        correlation_id: None,
        message_id: None,
        reply_to: None,
        persistent: true,
        expiration_ms: None,
        headers,
    }
}

impl Lifecycle for Worker {
    fn init() -> Result<(), String> {
        let declare = || -> Result<(), Error> {
            let c = channel()?;
            c.declare_exchange("jobs", ExchangeKind::Direct, true)?;
            c.declare_exchange("jobs.dead", ExchangeKind::Direct, true)?;
            c.declare_queue("jobs.work", &queue("jobs.work", Some("jobs.dead")))?;
            c.declare_queue("jobs.dead.q", &queue("jobs.dead.q", None))?;
            c.bind_queue("jobs.work", "jobs", "work")?;
            // Dead letters are published with the queue name as routing key.
            c.bind_queue("jobs.dead.q", "jobs.dead", "jobs.work")?;
            Ok(())
        };
        declare().map_err(|e| format!("declaring the topology: {e:?}"))
    }

    fn health() -> Result<(), String> {
        channel().map(drop).map_err(|e| format!("{e:?}"))
    }

    fn shutdown() {}
}

impl MessageHandler for Worker {
    fn handle(message: Message) -> Result<(), String> {
        let text = String::from_utf8_lossy(&message.payload);
        let amount: i64 = text
            .trim()
            .parse()
            .map_err(|_| format!("poison job {text:?}: not a number"))?;
        let store = Store::open("cache").map_err(|e| format!("{e:?}"))?;
        store.incr("total", amount).map_err(|e| format!("{e:?}"))?;
        store.incr("done", 1).map_err(|e| format!("{e:?}"))?;
        Ok(())
    }
}

impl wasi::exports::http::incoming_handler::Guest for Worker {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let result = match (request.method(), path.as_str()) {
            (Method::Post, "/jobs") => {
                let body = read_body(request, 1 << 20);
                channel()
                    .and_then(|c| c.publish("jobs", "work", &body, &properties(Vec::new())))
                    .map(|()| (202, "queued\n".to_string()))
            }
            (Method::Get, "/jobs/stats") => stats(),
            _ => Ok((404, "POST /jobs or GET /jobs/stats\n".into())),
        };
        let (status, text) = result.unwrap_or_else(|e| (503, format!("{e:?}\n")));
        respond(out, status, &text);
    }
}

/// The total, the jobs done, and the dead letters (taken and put back).
fn stats() -> Result<(u16, String), Error> {
    let store = Store::open("cache")?;
    let read = |k: &str| -> Result<String, Error> {
        Ok(store
            .get(k)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|| "0".into()))
    };
    let c = channel()?;
    let mut dead = Vec::new();
    // Peek at up to 10 dead letters: taken without ack, requeued when this
    // invocation ends.
    for _ in 0..10 {
        match c.get("jobs.dead.q")? {
            Some((m, _delivery)) => {
                let error = m
                    .properties
                    .headers
                    .iter()
                    .find(|(k, _)| k == "warden-error")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                dead.push(format!(
                    "{:?} ({error})",
                    String::from_utf8_lossy(&m.payload)
                ));
            }
            None => break,
        }
    }
    Ok((
        200,
        format!(
            "done {} total {} dead [{}]\n",
            read("done")?,
            read("total")?,
            dead.join(", ")
        ),
    ))
}

wasi::http::proxy::export!(Worker);
warden_sdk::export_message_handler!(Worker);
warden_sdk::export_lifecycle!(Worker);
