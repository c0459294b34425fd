//! Events from both sides, for server tests. HTTP `POST …/<topic>` publishes
//! the body to `<topic>` and answers 200, or 403/429/503 with the host's
//! error. As a subscriber it prints each message; a payload of `fail`
//! returns an error and `trap` panics (to exercise retries and dead
//! letters), except in dead letters, which it accepts; `slow` takes 5 s.

use warden_sdk::http::{read_body, respond};
use warden_sdk::{Error, Message};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct EventProbe;

impl wasi::exports::http::incoming_handler::Guest for EventProbe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let full = request.path_with_query().unwrap_or_default();
        let (path, query) = full.split_once('?').unwrap_or((&full, ""));
        let topic = path.rsplit('/').next().unwrap_or_default().to_string();
        // `?repeat=N` publishes N times (a denial flood when not granted),
        // `?log=N` prints N lines first (a log flood).
        let param = |key: &str| -> usize {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0)
        };
        for i in 0..param("log") {
            println!("event-probe log line {i}");
        }
        let body = read_body(request, 1 << 20);
        let mut result = warden_sdk::events::publish(&topic, &body);
        for _ in 1..param("repeat") {
            result = warden_sdk::events::publish(&topic, &body);
        }
        let (status, text) = match result {
            Ok(()) => (200, "published".to_string()),
            Err(Error::Denied(m)) => (403, m),
            Err(Error::LimitExceeded(m)) => (429, m),
            Err(e) => (503, format!("{e:?}")),
        };
        respond(out, status, &text);
    }
}

impl warden_sdk::MessageHandler for EventProbe {
    fn handle(message: Message) -> Result<(), String> {
        let payload = String::from_utf8_lossy(&message.payload).into_owned();
        let headers: Vec<String> = message
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "handled {} {payload} attempt {} [{}]",
            message.topic,
            message.attempt,
            headers.join(",")
        );
        // Dead letters (they carry warden-error) are accepted.
        if message.headers.iter().any(|(k, _)| k == "warden-error") {
            return Ok(());
        }
        match payload.as_str() {
            "fail" => Err("asked to fail".into()),
            "trap" => panic!("asked to trap"),
            "slow" => {
                std::thread::sleep(std::time::Duration::from_secs(5));
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

wasi::http::proxy::export!(EventProbe);
warden_sdk::export_message_handler!(EventProbe);
