//! Filesystem capability: `[grants.fs]` entries become wasi:filesystem
//! preopens, and nothing else is reachable.
//!
//! Confinement inside a granted directory is cap-std's (used by wasmtime-wasi):
//! `..`, absolute paths and symlinks that leave the directory are refused by
//! the openat-style resolution, not by string checks here.

mod grant;

pub use grant::{Access, FsError, FsGrant, FsGrants, HostPaths, ResolvedDir};

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Adds one preopen per resolved grant. With no grants the guest sees no
/// directories at all, so every path it opens fails.
pub fn add_preopens(builder: &mut WasiCtxBuilder, dirs: &[ResolvedDir]) -> Result<(), FsError> {
    for dir in dirs {
        let perms = match dir.access {
            Access::ReadOnly => FsPerms::ReadOnly,
            Access::ReadWrite => FsPerms::ReadWrite,
        };
        builder
            .preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|e| FsError::Open {
                guest: dir.guest.clone(),
                host: dir.host.display().to_string(),
                reason: e.to_string(),
            })?;
    }
    Ok(())
}
