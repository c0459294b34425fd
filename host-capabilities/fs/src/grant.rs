use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

/// `[grants.fs]`: guest path → host directory.
pub type FsGrants = BTreeMap<String, FsGrant>;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsGrant {
    pub host: String,
    #[serde(default)]
    pub access: Access,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    #[default]
    ReadOnly,
    ReadWrite,
}

/// Where host paths of grants may point.
#[derive(Debug, Clone)]
pub enum HostPaths {
    /// `warden run` on a developer machine: relative paths are taken from the
    /// manifest's directory, absolute paths are allowed.
    RelativeTo(PathBuf),
    /// The server: host paths must be relative and stay under this root, so an
    /// uploaded manifest cannot grant itself `/etc`.
    ConfinedTo(PathBuf),
}

/// A grant checked against the host: the directory exists and is a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDir {
    pub guest: String,
    pub host: PathBuf,
    pub access: Access,
}

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("grants.fs.\"{guest}\": guest path must be absolute and normalized (like /data)")]
    GuestPath { guest: String },
    #[error("grants.fs.\"{guest}\": host path {host:?} {reason}")]
    HostPath {
        guest: String,
        host: String,
        reason: String,
    },
    #[error("grants.fs.\"{guest}\": cannot open {host}: {reason}")]
    Open {
        guest: String,
        host: String,
        reason: String,
    },
}

impl FsGrant {
    /// Checks the guest path, confines the host path and makes sure the
    /// directory exists (read-write grants get it created).
    pub fn resolve(&self, guest: &str, paths: &HostPaths) -> Result<ResolvedDir, FsError> {
        if !is_clean_absolute(guest) {
            return Err(FsError::GuestPath {
                guest: guest.to_string(),
            });
        }
        let host_err = |reason: &str| FsError::HostPath {
            guest: guest.to_string(),
            host: self.host.clone(),
            reason: reason.to_string(),
        };
        let host = Path::new(&self.host);
        let full = match paths {
            HostPaths::RelativeTo(base) => base.join(host),
            HostPaths::ConfinedTo(root) => {
                let confined = host
                    .components()
                    .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
                if !confined || self.host.is_empty() {
                    return Err(host_err(
                        "must be relative and stay inside the server's file root",
                    ));
                }
                root.join(host)
            }
        };
        if self.access == Access::ReadWrite && !full.exists() {
            std::fs::create_dir_all(&full)
                .map_err(|e| host_err(&format!("could not be created: {e}")))?;
        }
        match std::fs::metadata(&full) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(host_err("is not a directory")),
            Err(e) => return Err(host_err(&format!("is not usable: {e}"))),
        }
        Ok(ResolvedDir {
            guest: guest.to_string(),
            host: full,
            access: self.access,
        })
    }
}

fn is_clean_absolute(p: &str) -> bool {
    if p == "/" {
        return true;
    }
    match p.strip_prefix('/') {
        Some(rest) => rest
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\0')),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(host: &str, access: Access) -> FsGrant {
        FsGrant {
            host: host.into(),
            access,
        }
    }

    #[test]
    fn guest_paths_must_be_clean_and_absolute() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = HostPaths::RelativeTo(tmp.path().into());
        for bad in ["data", "/data/../etc", "/data/", "//data", "/./data", ""] {
            let err = grant(".", Access::ReadOnly)
                .resolve(bad, &paths)
                .unwrap_err();
            assert!(matches!(err, FsError::GuestPath { .. }), "{bad}: {err}");
        }
        grant(".", Access::ReadOnly)
            .resolve("/data", &paths)
            .unwrap();
    }

    #[test]
    fn confined_host_paths_cannot_leave_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = HostPaths::ConfinedTo(tmp.path().into());
        for bad in ["/etc", "../x", "a/../../x", ""] {
            let err = grant(bad, Access::ReadWrite)
                .resolve("/d", &paths)
                .unwrap_err();
            assert!(matches!(err, FsError::HostPath { .. }), "{bad}: {err}");
        }
        let ok = grant("mod/data", Access::ReadWrite)
            .resolve("/d", &paths)
            .unwrap();
        assert!(ok.host.starts_with(tmp.path()) && ok.host.is_dir());
    }

    #[test]
    fn read_only_dirs_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = HostPaths::RelativeTo(tmp.path().into());
        let err = grant("missing", Access::ReadOnly)
            .resolve("/d", &paths)
            .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
