use std::time::Duration;

use serde::Deserialize;
use warden_capability::HumanDuration;

/// `[grants.sql.<name>]` of a module manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqlGrant {
    /// The `[sql.<id>]` backend of the host config.
    pub backend: String,
    #[serde(default)]
    pub access: SqlAccess,
    /// Connections this module may hold at once from the shared pool.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout: HumanDuration,
    #[serde(default = "default_max_rows")]
    pub max_rows: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SqlAccess {
    #[default]
    ReadOnly,
    ReadWrite,
}

fn default_max_connections() -> u32 {
    2
}

fn default_statement_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

fn default_max_rows() -> u32 {
    10_000
}

impl warden_capability::NamedGrant for SqlGrant {
    fn backend(&self) -> &str {
        &self.backend
    }
}
