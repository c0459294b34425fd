use std::fmt;

/// A failure of a capability call, in the shape of `warden:host/types.error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("denied: {0}")]
    Denied(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("timeout: {0}")]
    Timeout(String),
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("backend: {0}")]
    Backend(String),
}

/// A sandbox limit was hit. Raised as the error of a trap so the runtime can
/// report exactly which limit stopped the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    /// The manifest key of the limit, e.g. `memory` or `max-output`.
    pub limit: &'static str,
    /// The configured value, human readable (`16 MiB`, `2s`).
    pub allowed: String,
    /// What the guest tried, when known.
    pub attempted: Option<String>,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "limit exceeded: {} ({})", self.limit, self.allowed)?;
        if let Some(attempted) = &self.attempted {
            write!(f, ", attempted {attempted}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LimitExceeded {}
