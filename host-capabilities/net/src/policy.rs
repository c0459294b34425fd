use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use warden_capability::AuditSink;

use crate::grant::{Endpoint, EndpointHost, parse_name};

/// A module's egress policy, shared by its sockets and its HTTP client.
pub struct NetPolicy {
    module: String,
    endpoints: Vec<Endpoint>,
    audit: Arc<dyn AuditSink>,
    /// Set for modules of scoped tokens: the host's own backend addresses,
    /// which, like every internal address, no granted name may reach.
    outside_only: Option<Arc<[IpAddr]>>,
}

impl NetPolicy {
    pub fn new(
        module: impl Into<String>,
        endpoints: Vec<Endpoint>,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        Self {
            module: module.into(),
            endpoints,
            audit,
            outside_only: None,
        }
    }

    /// Confines the module to the outside world: no address of the
    /// operator's network ([`is_internal_address`]) nor of `backends` is
    /// reached, whatever a granted name resolves to (a tenant controls its
    /// own DNS, and can point a name at the database).
    pub fn outside_only(mut self, backends: Arc<[IpAddr]>) -> Self {
        self.outside_only = Some(backends);
        self
    }

    /// Whether the confinement, if any, lets `ip` through.
    fn outside(&self, ip: IpAddr) -> bool {
        self.outside_only
            .as_ref()
            .is_none_or(|backends| !is_internal_address(ip) && !backends.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Whether the guest may look this name up: only granted names resolve,
    /// so DNS cannot be used to probe or leak data.
    pub fn name_granted(&self, name: &str) -> bool {
        let Ok(name) = parse_name(name) else {
            return false;
        };
        self.endpoints
            .iter()
            .any(|e| e.host == EndpointHost::Name(name.clone()))
    }

    /// The connect-time check: `addr` is granted as a literal, or it is a
    /// non-special address that a granted name on the same port resolves to now.
    pub async fn permits(&self, addr: SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        if !self.outside(ip) {
            return false;
        }
        for e in self.endpoints.iter().filter(|e| e.port == addr.port()) {
            match &e.host {
                EndpointHost::Ip(granted) if canonical(*granted) == ip => return true,
                EndpointHost::Name(name) if !is_special_address(ip) => {
                    if let Ok(addrs) = tokio::net::lookup_host((name.as_str(), e.port)).await
                        && addrs.into_iter().any(|a| canonical(a.ip()) == ip)
                    {
                        return true;
                    }
                }
                _ => {}
            }
        }
        false
    }

    /// For HTTP: checks `host:port` against the grant, resolves it and returns
    /// the first address the policy permits. The caller connects to exactly
    /// that address, so a re-resolution cannot swap it.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        let endpoint = Endpoint::parse(&format!("{host}:{port}"))
            .map_err(|why| format!("{host}:{port}: {why}"))?;
        if !self.endpoints.contains(&endpoint) {
            return Err(format!("{endpoint} is not in grants.net.allow"));
        }
        let candidates: Vec<SocketAddr> = match endpoint.host {
            EndpointHost::Ip(ip) => vec![SocketAddr::new(ip, port)],
            EndpointHost::Name(ref name) => tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|e| format!("{endpoint}: name lookup failed: {e}"))?
                .collect(),
        };
        for addr in candidates {
            if self.permits(addr).await {
                return Ok(addr);
            }
        }
        Err(format!(
            "{endpoint} resolves only to addresses that are not granted (loopback, link-local or metadata addresses need their own grant)"
        ))
    }

    pub(crate) fn deny(&self, detail: String) {
        self.audit.deny(&self.module, "net", detail);
    }
}

/// The operator's own network: [`is_special_address`] plus private
/// (10/8, 172.16/12, 192.168/16), shared (100.64/10), unique-local
/// (fc00::/7), site-local (fec0::/10) and NAT64 (64:ff9b::/96, which
/// reaches the IPv4 address it carries) addresses.
pub fn is_internal_address(ip: IpAddr) -> bool {
    if is_special_address(ip) {
        return true;
    }
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_private() || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] & 0xfe00 == 0xfc00
                || s[0] & 0xffc0 == 0xfec0
                || (s[0] == 0x64 && s[1] == 0xff9b)
                || (s[0] == 0x2002 && is_internal_address(six_to_four(s[1], s[2])))
                || v6
                    .to_ipv4()
                    .is_some_and(|v4| is_internal_address(IpAddr::V4(v4)))
        }
    }
}

/// The IPv4 address a 6to4 address (2002:AABB:CCDD::/48) carries.
fn six_to_four(high: u16, low: u16) -> IpAddr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Addresses a name grant never reaches: loopback, unspecified, link-local
/// (which includes 169.254.169.254), multicast, broadcast and the metadata
/// services that live elsewhere (AWS IPv6, Alibaba).
pub fn is_special_address(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets()[0] == 0
                || v4 == Ipv4Addr::new(100, 100, 100, 200)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_capability::LogAudit;

    fn policy(entries: &[&str]) -> NetPolicy {
        let endpoints = entries
            .iter()
            .map(|e| Endpoint::parse(e).unwrap())
            .collect();
        NetPolicy::new("t", endpoints, Arc::new(LogAudit))
    }

    #[test]
    fn special_addresses() {
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "fd00:ec2::254",
            "100.100.100.200",
        ] {
            assert!(is_special_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.1.2.3", "93.184.216.34", "2001:db8::1"] {
            assert!(!is_special_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn internal_addresses() {
        for ip in [
            "10.0.0.7",
            "172.16.1.1",
            "192.168.0.1",
            "100.64.0.1",
            "fd00::1",
            "fec0::1",
            "64:ff9b::a00:7",
            "::ffff:10.0.0.7",
            "::10.0.0.7",
            "2002:a00:7::1",
            "127.0.0.1",
        ] {
            assert!(is_internal_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_internal_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn confined_modules_reach_no_internal_or_backend_address_by_any_grant() {
        // localhost resolves to 127.0.0.1; the literal 203.0.113.9 stands for
        // a backend's public address.
        let backend: IpAddr = "203.0.113.9".parse().unwrap();
        let p = policy(&["203.0.113.9:5432", "198.51.100.1:443", "10.0.0.7:80"])
            .outside_only(Arc::from(vec![backend]));
        assert!(!p.permits("203.0.113.9:5432".parse().unwrap()).await);
        assert!(!p.permits("10.0.0.7:80".parse().unwrap()).await);
        assert!(p.permits("198.51.100.1:443".parse().unwrap()).await);
        let unconfined = policy(&["10.0.0.7:80"]);
        assert!(unconfined.permits("10.0.0.7:80".parse().unwrap()).await);
    }

    #[tokio::test]
    async fn name_resolving_to_loopback_is_refused() {
        let p = policy(&["localhost:8080"]);
        assert!(!p.permits("127.0.0.1:8080".parse().unwrap()).await);
        assert!(p.resolve("localhost", 8080).await.is_err());
        assert!(p.name_granted("LOCALHOST"));
        assert!(!p.name_granted("example.com"));
    }

    #[tokio::test]
    async fn literal_grants_match_exactly() {
        let p = policy(&["127.0.0.1:8080"]);
        assert!(p.permits("127.0.0.1:8080".parse().unwrap()).await);
        assert!(p.permits("[::ffff:127.0.0.1]:8080".parse().unwrap()).await);
        assert!(!p.permits("127.0.0.1:8081".parse().unwrap()).await);
        assert!(!p.permits("127.0.0.2:8080".parse().unwrap()).await);
        assert_eq!(
            p.resolve("127.0.0.1", 8080).await.unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(p.resolve("127.0.0.1", 9090).await.is_err());
    }
}
