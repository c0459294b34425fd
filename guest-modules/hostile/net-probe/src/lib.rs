//! Reaches `[config] addr` (host:port) either over a raw TCP socket
//! (`via = "tcp"`, default) or with an outgoing wasi:http request
//! (`via = "http"`), printing the HTTP status line. The egress tests expect a
//! denial for everything the manifest does not grant.

use std::io::{Read, Write};
use std::net::TcpStream;

use warden_sdk::{Task, config};

struct NetProbe;

impl Task for NetProbe {
    fn run() -> Result<(), String> {
        let addr = config::require("addr")?;
        let status = match config::get("via")?.as_deref() {
            None | Some("tcp") => tcp_get(&addr)?,
            Some("http") => http_get(&addr)?,
            Some(other) => return Err(format!("unknown via {other}")),
        };
        println!("{status}");
        Ok(())
    }
}

fn tcp_get(addr: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    write!(stream, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| format!("send: {e}"))?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| format!("receive: {e}"))?;
    Ok(reply.lines().next().unwrap_or("").to_string())
}

fn http_get(authority: &str) -> Result<String, String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, OutgoingRequest, Scheme};

    let request = OutgoingRequest::new(Fields::new());
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "bad authority")?;
    request
        .set_path_with_query(Some("/"))
        .map_err(|()| "bad path")?;
    let pending =
        outgoing_handler::handle(request, None).map_err(|e| format!("http {authority}: {e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("response not ready")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("http {authority}: {e:?}"))?;
    Ok(format!("HTTP {}", response.status()))
}

warden_sdk::export_task!(NetProbe);
