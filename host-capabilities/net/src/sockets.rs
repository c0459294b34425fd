use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use crate::NetPolicy;

/// Configures wasi:sockets for `policy`. Without grants, TCP, UDP and name
/// lookups stay disabled (wasmtime-wasi's defaults).
pub fn configure_sockets(builder: &mut WasiCtxBuilder, policy: Arc<NetPolicy>) {
    if policy.is_empty() {
        return;
    }
    builder
        .allow_tcp(true)
        .allow_udp(false)
        .allow_ip_name_lookup(true);
    builder.socket_addr_check(move |addr, usage| {
        let policy = policy.clone();
        Box::pin(async move { check(&policy, addr, usage).await })
    });
}

async fn check(policy: &NetPolicy, addr: SocketAddr, usage: SocketAddrUse) -> bool {
    let allowed = match usage {
        SocketAddrUse::TcpConnect => policy.permits(addr).await,
        // The implicit bind of a connect: any local interface, ephemeral port.
        SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
        // Modules are clients: no listening, accepting or UDP.
        _ => false,
    };
    if !allowed {
        policy.deny(format!("{usage:?} {addr} is not in grants.net.allow"));
    }
    allowed
}
