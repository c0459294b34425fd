//! The module's `[config]` table from its manifest, read through `wasi:config`.

use crate::bindings::wasi::config::store;

/// The value of `key`, or `None` when the manifest does not set it.
pub fn get(key: &str) -> Result<Option<String>, String> {
    store::get(key).map_err(describe)
}

/// Every `[config]` entry.
pub fn all() -> Result<Vec<(String, String)>, String> {
    store::get_all().map_err(describe)
}

/// The value of `key`, or an error naming the missing key.
pub fn require(key: &str) -> Result<String, String> {
    get(key)?.ok_or_else(|| format!("config key `{key}` is not set in the manifest"))
}

fn describe(err: store::Error) -> String {
    match err {
        store::Error::Upstream(msg) => format!("config store: {msg}"),
        store::Error::Io(msg) => format!("config store I/O: {msg}"),
    }
}
