//! Events from both sides, for server tests. HTTP `POST …/<topic>` publishes
//! the body to `<topic>` and answers 200, or 403/429/503 with the host's
//! error. As a subscriber it prints each message; a payload of `fail`
//! returns an error and `trap` panics (to exercise retries and dead
//! letters), except in dead letters, which it accepts; `slow` takes 5 s.

use warden_sdk::{Error, Message};
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct EventProbe;

impl wasi::exports::http::incoming_handler::Guest for EventProbe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let topic = path.rsplit('/').next().unwrap_or_default().to_string();
        let body = read_body(request);
        let (status, text) = match warden_sdk::events::publish(&topic, &body) {
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

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let response = OutgoingResponse::new(Fields::new());
    response.set_status_code(status).expect("valid status");
    let body = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("stream taken once");
    stream
        .blocking_write_and_flush(text.as_bytes())
        .expect("writing the body");
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

wasi::http::proxy::export!(EventProbe);
warden_sdk::export_message_handler!(EventProbe);
