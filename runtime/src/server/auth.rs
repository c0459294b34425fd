//! Bearer tokens of the management API. Only sha256 hashes are kept; a
//! token itself is never stored by the server nor logged.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use warden_net::{EndpointHost, canonical, is_internal_address};

use sha2::{Digest, Sha256};

use crate::host_config::{Role, TokenConfig};
use crate::manifest::Manifest;

pub struct Tokens {
    known: Vec<([u8; 32], Caller)>,
}

/// Who is calling the API: the token's name, role and limits.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// Module-name globs; None: every module.
    pub modules: Option<Vec<String>>,
    /// Storage quota in bytes for the versions it uploads.
    pub quota: Option<u64>,
    /// `<kind>.<id>` backends its modules may be granted; None: all.
    pub backends: Option<Vec<String>>,
}

impl Caller {
    /// Whether this token is limited to some modules or backends: its
    /// modules reach only the outside world over the network.
    pub fn is_scoped(&self) -> bool {
        self.modules.is_some() || self.backends.is_some()
    }

    /// Whether this token may see and act on module `name`.
    pub fn may(&self, name: &str) -> bool {
        self.modules.as_ref().is_none_or(|globs| {
            globs
                .iter()
                .any(|g| warden_capability::glob_matches(g, name))
        })
    }

    /// Why this token may not deploy `manifest`, if it may not: the module
    /// is outside its scope, a `[grants.fs]` host path starts outside it
    /// (a scoped token's modules get only directories named like modules
    /// it may deploy), or a grant names a backend it was not given.
    /// `backend_hosts`: every configured backend's host
    /// ([`crate::host_config::HostConfig::backend_hosts`]).
    pub fn refusals(&self, manifest: &Manifest, backend_hosts: &[String]) -> Vec<String> {
        let name = &manifest.module.name;
        let mut no = Vec::new();
        if !self.may(name) {
            no.push(format!(
                "token {:?} may not deploy module {name:?} (its modules: {})",
                self.name,
                self.modules.as_deref().unwrap_or_default().join(", ")
            ));
        }
        if self.modules.is_some()
            && let Some(http) = &manifest.http
        {
            // Routes are shared by every tenant: a scoped token claims only
            // paths named like its modules (`/` or `/api` would put every
            // other tenant's route under its own, where nesting is refused).
            let first = http.route.trim_start_matches('/').split('/').next();
            if !first.is_some_and(|segment| !segment.is_empty() && self.may(segment)) {
                no.push(format!(
                    "[http] route {:?}: token {:?} may claim only routes whose first segment is named like its modules ({})",
                    http.route,
                    self.name,
                    self.modules.as_deref().unwrap_or_default().join(", ")
                ));
            }
        }
        if self.modules.is_some() {
            for (guest, grant) in &manifest.grants.fs {
                let first = grant.host.trim_start_matches("./").split('/').next();
                if !first.is_some_and(|dir| self.may(dir)) {
                    no.push(format!(
                        "grants.fs.\"{guest}\": token {:?} may grant only directories named like its modules ({}), not {:?}",
                        self.name,
                        self.modules.as_deref().unwrap_or_default().join(", "),
                        grant.host
                    ));
                }
            }
        }
        if self.is_scoped() {
            no.extend(self.net_refusals(manifest, backend_hosts));
        }
        if let Some(allowed) = &self.backends {
            for (guest, grant) in &manifest.grants.fs {
                let root = grant.root.as_deref().unwrap_or(warden_fs::DEFAULT_ROOT);
                let key = format!("fs.{root}");
                if root != warden_fs::DEFAULT_ROOT && !allowed.contains(&key) {
                    no.push(format!(
                        "grants.fs.\"{guest}\": token {:?} may not use fs root {root:?} (its backends: {})",
                        self.name,
                        allowed.join(", ")
                    ));
                }
            }
            for (kind, grant, backend) in manifest.grants.backend_ids() {
                let key = format!("{kind}.{backend}");
                if !allowed.contains(&key) {
                    no.push(format!(
                        "grants.{kind}.{grant}: token {:?} may not grant backend {key} (its backends: {})",
                        self.name,
                        allowed.join(", ")
                    ));
                }
            }
        }
        no
    }
}

impl Caller {
    /// A scoped token's modules reach the outside world only: no loopback,
    /// private, link-local or metadata address, and no host of a
    /// configured backend (its database, Redis, brokers), which they must
    /// use through their capability grants and its scoping.
    fn net_refusals(&self, manifest: &Manifest, backend_hosts: &[String]) -> Vec<String> {
        let Some(net) = &manifest.grants.net else {
            return Vec::new();
        };
        let Ok(endpoints) = net.endpoints() else {
            return Vec::new(); // the manifest check names the bad entry
        };
        let mut no = Vec::new();
        for (entry, endpoint) in net.allow.iter().zip(endpoints) {
            let why = match &endpoint.host {
                EndpointHost::Ip(ip) if is_internal_address(*ip) => Some("an internal address"),
                EndpointHost::Name(n) if n == "localhost" || n.ends_with(".localhost") => {
                    Some("a loopback name")
                }
                _ => None,
            };
            let host = match &endpoint.host {
                EndpointHost::Ip(ip) => canonical(*ip).to_string(),
                EndpointHost::Name(n) => n.clone(),
            };
            let backend = backend_hosts.iter().any(|b| host_key(b) == host);
            let why = why.or(backend.then_some("the host of a configured backend"));
            if let Some(why) = why {
                no.push(format!(
                    "grants.net.allow {entry:?}: token {:?} is scoped, and its modules may not reach {why}",
                    self.name
                ));
            }
        }
        no
    }
}

/// A host as [`Caller::net_refusals`] compares them: addresses canonical.
fn host_key(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) => canonical(ip).to_string(),
        Err(_) => host.to_ascii_lowercase(),
    }
}

pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Tokens {
    pub fn new(configured: &[TokenConfig]) -> Result<Self, String> {
        let mut known = Vec::new();
        for (i, t) in configured.iter().enumerate() {
            let hash: [u8; 32] = hex::decode(&t.sha256)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| {
                    format!(
                        "server.tokens[{i}] ({}): sha256 must be 64 hex digits",
                        t.name
                    )
                })?;
            if let Some(globs) = &t.modules {
                warden_capability::check_globs(globs)
                    .map_err(|e| format!("server.tokens[{i}] ({}): modules: {e}", t.name))?;
            }
            known.push((
                hash,
                Caller {
                    name: t.name.clone(),
                    role: t.role,
                    modules: t.modules.clone(),
                    quota: t.quota.map(|q| q.0),
                    backends: t.backends.clone(),
                },
            ));
        }
        Ok(Self { known })
    }

    /// With no configured tokens: one admin token in `<data-dir>/admin.token`
    /// (mode 0600), generated on first start and kept across restarts.
    pub fn local_admin(data_dir: &Path) -> Result<(Self, std::path::PathBuf), String> {
        let file = data_dir.join("admin.token");
        let token = match std::fs::read_to_string(&file) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                let mut raw = [0u8; 32];
                getrandom::fill(&mut raw).map_err(|e| format!("no randomness for a token: {e}"))?;
                let token = format!("wdn_{}", hex::encode(raw));
                write_private(&file, &token)
                    .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
                token
            }
        };
        let tokens = Self::new(&[TokenConfig {
            name: "local-admin".into(),
            sha256: sha256_hex(&token),
            role: Role::Admin,
            modules: None,
            quota: None,
            backends: None,
        }])?;
        Ok((tokens, file))
    }

    /// The caller whose token is in an `Authorization` header value.
    pub fn check(&self, authorization: Option<&str>) -> Option<&Caller> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.known
            .iter()
            .find(|(known, _)| *known == hash)
            .map(|(_, caller)| caller)
    }

    /// Every configured token (never the secrets).
    pub fn all(&self) -> impl Iterator<Item = &Caller> {
        self.known.iter().map(|(_, c)| c)
    }
}

fn write_private(file: &Path, token: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(file)?;
    f.write_all(token.as_bytes())?;
    f.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoped() -> Caller {
        Caller {
            name: "team".into(),
            role: Role::Deployer,
            modules: Some(vec!["orders-*".into()]),
            quota: None,
            backends: None,
        }
    }

    fn with_net(allow: &str) -> Manifest {
        Manifest::parse(&format!(
            "[module]\nname = \"orders-a\"\nversion = \"1.0.0\"\n[grants.net]\nallow = [{allow}]\n"
        ))
        .unwrap()
    }

    #[test]
    fn scoped_tokens_reach_neither_backend_hosts_nor_internal_addresses() {
        let hosts = vec!["db.corp.example".to_string(), "203.0.113.9".to_string()];
        for entry in [
            "\"db.corp.example:5432\"",
            "\"DB.corp.example.:22\"",
            "\"203.0.113.9:6379\"",
            "\"[::ffff:203.0.113.9]:6379\"",
            "\"10.1.2.3:80\"",
            "\"[fd00::1]:80\"",
            "\"100.64.0.1:80\"",
            "\"app.localhost:80\"",
        ] {
            let refused = scoped().refusals(&with_net(entry), &hosts);
            assert_eq!(refused.len(), 1, "{entry}: {refused:?}");
        }
        let fine = with_net("\"api.example.com:443\", \"198.51.100.1:443\"");
        assert!(scoped().refusals(&fine, &hosts).is_empty());
        let unscoped = Caller {
            modules: None,
            ..scoped()
        };
        assert!(
            unscoped
                .refusals(&with_net("\"127.0.0.1:6379\""), &hosts)
                .is_empty()
        );
    }
}
