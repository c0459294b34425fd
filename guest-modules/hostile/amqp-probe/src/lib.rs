//! RabbitMQ from both sides, for the broker tests. `POST /<module>/<grant>/
//! <op>?…` with op `publish` (exchange, key, persistent), `declare-queue`
//! (name, dlx, durable), `declare-exchange` (name), `bind` (queue,
//! exchange, key), `get` (queue, settle = ack | nack | ack-twice | none),
//! `channels` (n: hold that many channels at once); answers 200,
//! or the status that names the host's error. As a subscriber it prints
//! each message; `fail` fails, `trap` panics.

use probe_common::{Request, respond};
use warden_sdk::amqp::{self, ExchangeKind, Properties, QueueOptions};
use warden_sdk::{Error, Message};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct AmqpProbe;

impl wasi::exports::http::incoming_handler::Guest for AmqpProbe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let r = Request::read(request);
        let result = match &r.segments[..] {
            [grant, op] => run(&r, grant, op),
            _ => Err(Error::Invalid("POST /<module>/<grant>/<op>".into())),
        };
        respond(out, result);
    }
}

fn run(r: &Request, grant: &str, op: &str) -> Result<String, Error> {
    let channel = amqp::open(grant)?;
    let arg = |k: &str| r.q(k).unwrap_or_default();
    match op {
        "publish" => {
            let props = Properties {
                content_type: None,
                correlation_id: None,
                message_id: None,
                reply_to: None,
                persistent: r.q("persistent").is_some(),
                expiration_ms: None,
                headers: r.headers(),
            };
            channel.publish(&arg("exchange"), &arg("key"), &r.body, &props)?;
            Ok("published".into())
        }
        "declare-exchange" => {
            channel.declare_exchange(&arg("name"), ExchangeKind::Direct, false)?;
            Ok("declared".into())
        }
        "declare-queue" => {
            let options = QueueOptions {
                durable: r.q("durable").is_some(),
                dead_letter_exchange: r.q("dlx"),
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
        "channels" => {
            // This one plus n - 1 more, all held until the call ends.
            let more: Vec<_> = (1..r.num("n").unwrap_or(1))
                .map(|_| amqp::open(grant))
                .collect::<Result<_, _>>()?;
            Ok(format!("opened {}", more.len() + 1))
        }
        "get" => match channel.get(&arg("queue"))? {
            None => Ok("empty".into()),
            Some((message, delivery)) => {
                match arg("settle").as_str() {
                    "ack" => delivery.ack()?,
                    "nack" => delivery.nack(true)?,
                    "ack-twice" => {
                        delivery.ack()?;
                        delivery.ack()?
                    }
                    _ => {}
                }
                Ok(String::from_utf8_lossy(&message.payload).into_owned())
            }
        },
        _ => Err(Error::Invalid(format!("unknown amqp op {op}"))),
    }
}

impl warden_sdk::MessageHandler for AmqpProbe {
    fn handle(message: Message) -> Result<(), String> {
        probe_common::handle(message)
    }
}

wasi::http::proxy::export!(AmqpProbe);
warden_sdk::export_message_handler!(AmqpProbe);
