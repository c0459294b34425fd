//! Filesystem capability: `[grants.fs]` entries become wasi:filesystem
//! preopens, and nothing else is reachable.
//!
//! Grant directories are opened by handle from the operator's roots, never
//! through a symlink ([`walk`]), at upload, activation and for every
//! instance. Confinement inside a granted directory is cap-std's (used by
//! wasmtime-wasi): `..`, absolute paths and symlinks that leave the
//! directory are refused by the openat-style resolution.

mod grant;
mod walk;

pub use grant::{Access, DEFAULT_ROOT, FsError, FsGrant, FsGrants, HostPaths, ResolvedDir};

use std::os::fd::AsRawFd;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Adds one preopen per resolved grant. With no grants the guest sees no
/// directories at all, so every path it opens fails.
pub fn add_preopens(builder: &mut WasiCtxBuilder, dirs: &[ResolvedDir]) -> Result<(), FsError> {
    for dir in dirs {
        let perms = match dir.access {
            Access::ReadOnly => FsPerms::ReadOnly,
            Access::ReadWrite => FsPerms::ReadWrite,
        };
        let handle = dir.open()?;
        // wasmtime-wasi preopens only by path. The kernel resolves
        // /proc/self/fd/N to the directory this handle holds, not to
        // whatever is at its path now, so the check above cannot be raced.
        let by_handle = format!("/proc/self/fd/{}", handle.as_raw_fd());
        builder
            .preopened_dir(&by_handle, &dir.guest, perms)
            .map_err(|e| FsError::Open {
                guest: dir.guest.clone(),
                host: dir.host_display(),
                reason: e.to_string(),
            })?;
    }
    Ok(())
}
