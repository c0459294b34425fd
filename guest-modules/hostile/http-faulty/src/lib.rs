//! An HTTP module that misbehaves on request, for server tests:
//! `…/slow?ms=N` answers after N ms, `…/trap` panics (a trap), anything
//! else answers with its `[config] greeting` (which tells versions apart).
//! Lifecycle hooks fail when `[config] fail-init` / `unhealthy` are set.

use std::time::Duration;

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct HttpFaulty;

impl wasi::exports::http::incoming_handler::Guest for HttpFaulty {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let greeting = warden_sdk::config::get("greeting")
            .ok()
            .flatten()
            .unwrap_or_else(|| "none".into());
        if path.contains("/trap") {
            panic!("asked to trap");
        }
        if let Some(ms) = path.split("ms=").nth(1) {
            let ms: u64 = ms.parse().unwrap_or(0);
            std::thread::sleep(Duration::from_millis(ms));
        }
        warden_sdk::http::respond(out, 200, &greeting);
    }
}

impl warden_sdk::Lifecycle for HttpFaulty {
    fn init() -> Result<(), String> {
        match warden_sdk::config::get("fail-init").ok().flatten() {
            Some(why) => Err(format!("refusing to start: {why}")),
            None => Ok(()),
        }
    }

    fn health() -> Result<(), String> {
        match warden_sdk::config::get("unhealthy").ok().flatten() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    fn shutdown() {
        println!("shutting down");
    }
}

wasi::http::proxy::export!(HttpFaulty);
warden_sdk::export_lifecycle!(HttpFaulty);
