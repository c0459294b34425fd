//! HTTP plumbing and the message handler the broker probes share.

use warden_sdk::http::read_body;
use warden_sdk::{Error, Message};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

/// A parsed probe request: path segments after `/<module>/`, the query,
/// and the body (or `size` bytes of `x`).
pub struct Request {
    pub segments: Vec<String>,
    query: String,
    pub body: Vec<u8>,
}

impl Request {
    pub fn read(request: IncomingRequest) -> Self {
        let full = request.path_with_query().unwrap_or_default();
        let (path, query) = full.split_once('?').unwrap_or((&full, ""));
        let segments = path.split('/').skip(2).map(str::to_string).collect();
        let query = query.to_string();
        let mut r = Request {
            segments,
            query,
            body: read_body(request, 1 << 20),
        };
        if let Some(size) = r.num("size") {
            r.body = vec![b'x'; size];
        }
        r
    }

    pub fn q(&self, key: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    }

    pub fn num(&self, key: &str) -> Option<usize> {
        self.q(key).and_then(|v| v.parse().ok())
    }

    /// `headers=N` headers of `header-size` bytes each.
    pub fn headers(&self) -> Vec<(String, String)> {
        (0..self.num("headers").unwrap_or(0))
            .map(|i| {
                (
                    format!("h{i}"),
                    "v".repeat(self.num("header-size").unwrap_or(1)),
                )
            })
            .collect()
    }
}

/// Answers 200 with the text, or the status that names the host's error.
pub fn respond(out: ResponseOutparam, result: Result<String, Error>) {
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
    warden_sdk::http::respond(out, status, &text);
}

/// Prints each message (with the `warden-*` headers); `fail` returns an
/// error and `trap` panics, except in dead letters, which are accepted.
pub fn handle(message: Message) -> Result<(), String> {
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
