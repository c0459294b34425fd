//! Bearer tokens of the management API. Only sha256 hashes are kept; a
//! token itself is never stored by the server nor logged.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::host_config::{Role, TokenConfig};

pub struct Tokens {
    known: Vec<(String, [u8; 32], Role)>,
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
            known.push((t.name.clone(), hash, t.role));
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
        }])?;
        Ok((tokens, file))
    }

    /// The name and role of the token in an `Authorization` header value.
    pub fn check(&self, authorization: Option<&str>) -> Option<(&str, Role)> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.known
            .iter()
            .find(|(_, known, _)| *known == hash)
            .map(|(name, _, role)| (name.as_str(), *role))
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
