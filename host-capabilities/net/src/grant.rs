use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;

/// `[grants.net]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetGrant {
    /// `host:port` entries; IPv6 literals in brackets (`[::1]:443`).
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointHost {
    Ip(IpAddr),
    /// Lower-cased DNS name without a trailing dot.
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: EndpointHost,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            EndpointHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            EndpointHost::Ip(ip) => write!(f, "{ip}:{}", self.port),
            EndpointHost::Name(n) => write!(f, "{n}:{}", self.port),
        }
    }
}

impl NetGrant {
    /// Parses every entry; the error names the offending one.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>, String> {
        self.allow
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Endpoint::parse(e).map_err(|why| format!("grants.net.allow[{i}] {e:?}: {why}"))
            })
            .collect()
    }
}

impl Endpoint {
    pub fn parse(entry: &str) -> Result<Endpoint, String> {
        let (host, port) = entry
            .rsplit_once(':')
            .ok_or("expected host:port (wildcards and bare hosts are not allowed)")?;
        let port: u16 = port.parse().map_err(|_| "port must be a number 1-65535")?;
        if port == 0 {
            return Err("port must be a number 1-65535".into());
        }
        let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            EndpointHost::Ip(IpAddr::V6(v6.parse().map_err(|_| "invalid IPv6 address")?))
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            EndpointHost::Ip(ip)
        } else {
            EndpointHost::Name(parse_name(host)?)
        };
        Ok(Endpoint { host, port })
    }
}

pub(crate) fn parse_name(host: &str) -> Result<String, &'static str> {
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err("invalid host name");
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_literals() {
        let e = Endpoint::parse("API.Example.com.:443").unwrap();
        assert_eq!(e.host, EndpointHost::Name("api.example.com".into()));
        assert_eq!(e.port, 443);
        let e = Endpoint::parse("[::1]:8080").unwrap();
        assert_eq!(e.to_string(), "[::1]:8080");
        assert_eq!(
            Endpoint::parse("10.0.0.1:5432").unwrap().to_string(),
            "10.0.0.1:5432"
        );
    }

    #[test]
    fn rejects_wildcards_and_junk() {
        for bad in [
            "*.example.com:443",
            "example.com",
            "example.com:0",
            "example.com:99999",
            "ex ample.com:80",
            ":80",
            "a..b:80",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_entry() {
        let g = NetGrant {
            allow: vec!["ok.example:1".into(), "bad".into()],
        };
        let err = g.endpoints().unwrap_err();
        assert!(err.starts_with("grants.net.allow[1] \"bad\""), "{err}");
    }
}
