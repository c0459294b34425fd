use serde::Deserialize;

/// One `[sql.<id>]` entry of the host config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqlBackendConfig {
    /// `postgres://…`, `mysql://…` or `sqlite://path` (`sqlite::memory:` for tests).
    pub url: String,
    /// Pool size shared by every module granted this backend.
    #[serde(default = "default_pool_size")]
    pub max_connections: u32,
}

fn default_pool_size() -> u32 {
    10
}
