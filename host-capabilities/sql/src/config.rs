use serde::Deserialize;

/// One `[sql.<id>]` entry of the host config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqlBackendConfig {
    /// `postgres://…`, `mysql://…` or `sqlite://path` (`sqlite::memory:` for tests).
    /// Read-write grants connect with it, and read-only ones too unless
    /// `read-only-url` is set.
    pub url: String,
    /// A separate credential for read-only grants (PostgreSQL, MySQL), so
    /// that the database's own permissions separate them from writers.
    #[serde(default)]
    pub read_only_url: Option<String>,
    /// The host's own credential for stopping guest statements
    /// (PostgreSQL, MySQL): cancel, watch and end the sessions of `url` and
    /// `read-only-url`. It must reach them (PostgreSQL: a member of their
    /// roles; MySQL: `PROCESS` and `CONNECTION ADMIN`) and must not be a role
    /// they can signal themselves, or a guest can end the host's control
    /// sessions and keep its statement running. Never handed to a module.
    /// Unset, the module credentials themselves are used (with a warning).
    #[serde(default)]
    pub control_url: Option<String>,
    /// Pool size shared by every module granted this backend (per credential).
    #[serde(default = "default_pool_size")]
    pub max_connections: u32,
    /// Lets a credential with server-wide privileges (superuser, file or
    /// program access, signalling other sessions, …) serve modules anyway.
    /// Refused by default: a module could reach the database host.
    #[serde(default)]
    pub allow_privileged: bool,
}

impl SqlBackendConfig {
    /// A backend at `url` with the default pool and no opt-ins.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            read_only_url: None,
            control_url: None,
            max_connections: default_pool_size(),
            allow_privileged: false,
        }
    }
}

fn default_pool_size() -> u32 {
    10
}
