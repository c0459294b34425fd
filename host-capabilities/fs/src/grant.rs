use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::walk;

/// `[grants.fs]`: guest path → host directory.
pub type FsGrants = BTreeMap<String, FsGrant>;

/// The root a grant names when it names none (`<data-dir>/files` by default).
pub const DEFAULT_ROOT: &str = "files";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsGrant {
    pub host: String,
    #[serde(default)]
    pub access: Access,
    /// One of the server's `[fs] roots`; [`DEFAULT_ROOT`] when absent.
    /// Only meaningful under `warden serve`.
    pub root: Option<String>,
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
    /// The server: host paths are relative to one of the operator's roots
    /// (name → directory) and are opened from it by handle, one component
    /// at a time, never through a symlink.
    Roots(BTreeMap<String, PathBuf>),
}

/// A grant checked against the host. Under [`HostPaths::Roots`] it is
/// re-opened from its root for every instance ([`ResolvedDir::open`]), so a
/// directory swapped for a symlink after the check is refused, not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDir {
    pub guest: String,
    pub access: Access,
    place: Place,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// A developer's own path, opened as given.
    Ambient(PathBuf),
    /// `root` (trusted, the operator's) joined with `parts`, each a plain name.
    UnderRoot { root: PathBuf, parts: Vec<String> },
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
        let host_err = |reason: String| FsError::HostPath {
            guest: guest.to_string(),
            host: self.host.clone(),
            reason,
        };
        let place = match paths {
            HostPaths::RelativeTo(base) => {
                if self.root.is_some() {
                    return Err(host_err(
                        "names a root; roots exist only under `warden serve`".into(),
                    ));
                }
                Place::Ambient(base.join(&self.host))
            }
            HostPaths::Roots(roots) => {
                let name = self.root.as_deref().unwrap_or(DEFAULT_ROOT);
                let root = roots.get(name).ok_or_else(|| {
                    let known: Vec<_> = roots.keys().map(String::as_str).collect();
                    host_err(format!(
                        "names the root {name:?}, which this server does not have (its [fs] roots: {})",
                        known.join(", ")
                    ))
                })?;
                let parts = plain_parts(&self.host).ok_or_else(|| {
                    host_err("must be relative and stay inside the server's file root".into())
                })?;
                Place::UnderRoot {
                    root: root.clone(),
                    parts,
                }
            }
        };
        let dir = ResolvedDir {
            guest: guest.to_string(),
            access: self.access,
            place,
        };
        dir.open_checked(self.access == Access::ReadWrite)
            .map_err(host_err)?;
        Ok(dir)
    }
}

impl ResolvedDir {
    /// The host directory, for messages.
    pub fn host_display(&self) -> String {
        match &self.place {
            Place::Ambient(p) => p.display().to_string(),
            Place::UnderRoot { root, parts } => root.join(parts.join("/")).display().to_string(),
        }
    }

    /// Opens the directory for one instance: from its root, by handle, each
    /// component refused if it is a symlink.
    pub fn open(&self) -> Result<File, FsError> {
        self.open_checked(false).map_err(|reason| FsError::Open {
            guest: self.guest.clone(),
            host: self.host_display(),
            reason,
        })
    }

    fn open_checked(&self, create: bool) -> Result<File, String> {
        match &self.place {
            Place::Ambient(path) => {
                if create && !path.exists() {
                    std::fs::create_dir_all(path)
                        .map_err(|e| format!("could not be created: {e}"))?;
                }
                match std::fs::metadata(path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err("is not a directory".into()),
                    Err(e) => return Err(format!("is not usable: {e}")),
                }
                walk::open_ambient(path).map_err(|e| format!("is not usable: {e}"))
            }
            Place::UnderRoot { root, parts } => walk::open_beneath(root, parts, create),
        }
    }
}

/// The `Normal` components of a relative path, or None if it has any other
/// kind (`..`, a root, a prefix) or none at all.
fn plain_parts(host: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    for c in Path::new(host).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then_some(parts)
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
            root: None,
        }
    }

    fn roots(dir: &Path) -> HostPaths {
        HostPaths::Roots([(DEFAULT_ROOT.to_string(), dir.to_path_buf())].into())
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
        let paths = roots(tmp.path());
        for bad in ["/etc", "../x", "a/../../x", "", "."] {
            let err = grant(bad, Access::ReadWrite)
                .resolve("/d", &paths)
                .unwrap_err();
            assert!(matches!(err, FsError::HostPath { .. }), "{bad}: {err}");
        }
        grant("mod/data", Access::ReadWrite)
            .resolve("/d", &paths)
            .unwrap();
        assert!(tmp.path().join("mod/data").is_dir());
    }

    #[test]
    fn a_grant_through_a_symlink_is_refused_even_one_that_stays_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("files");
        std::fs::create_dir_all(root.join("a/real")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("a/up")).unwrap();
        std::os::unix::fs::symlink("real", root.join("a/inside")).unwrap();
        let paths = roots(&root);
        for (host, access) in [
            ("a/up/etc", Access::ReadOnly),
            ("a/up", Access::ReadOnly),
            ("a/up/new", Access::ReadWrite),
            ("a/inside", Access::ReadOnly),
        ] {
            let err = grant(host, access).resolve("/d", &paths).unwrap_err();
            assert!(err.to_string().contains("symlink"), "{host}: {err}");
        }
        assert!(!tmp.path().join("new").exists());
    }

    #[test]
    fn a_checked_grant_swapped_for_a_symlink_is_refused_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("files");
        std::fs::create_dir_all(root.join("b")).unwrap();
        let dir = grant("b", Access::ReadOnly)
            .resolve("/d", &roots(&root))
            .unwrap();
        dir.open().unwrap();
        std::fs::remove_dir(root.join("b")).unwrap();
        std::os::unix::fs::symlink("..", root.join("b")).unwrap();
        let err = dir.open().unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
    }

    #[test]
    fn unknown_roots_and_roots_outside_serve_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let mut g = grant("x", Access::ReadWrite);
        g.root = Some("media".into());
        let err = g.resolve("/d", &roots(tmp.path())).unwrap_err();
        assert!(err.to_string().contains("\"media\""), "{err}");
        let err = g
            .resolve("/d", &HostPaths::RelativeTo(tmp.path().into()))
            .unwrap_err();
        assert!(err.to_string().contains("warden serve"), "{err}");
    }

    #[test]
    fn read_only_dirs_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = HostPaths::RelativeTo(tmp.path().into());
        let err = grant("missing", Access::ReadOnly)
            .resolve("/d", &paths)
            .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let err = grant("missing", Access::ReadOnly)
            .resolve("/d", &roots(tmp.path()))
            .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
