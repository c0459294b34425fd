//! Connects to `[config] addr` (host:port) over a raw TCP socket and sends one
//! HTTP/1.0 GET, printing the status line. The egress tests expect a denial
//! for everything the manifest does not grant.

use std::io::{Read, Write};
use std::net::TcpStream;

use warden_sdk::{Task, config};

struct NetProbe;

impl Task for NetProbe {
    fn run() -> Result<(), String> {
        let addr = config::require("addr")?;
        let mut stream = TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(&addr);
        write!(stream, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| format!("send: {e}"))?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).map_err(|e| format!("receive: {e}"))?;
        println!("{}", reply.lines().next().unwrap_or(""));
        Ok(())
    }
}

warden_sdk::export_task!(NetProbe);
