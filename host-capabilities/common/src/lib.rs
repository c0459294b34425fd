//! Pieces every Warden capability shares: the [`Capability`] trait that is
//! the seam to the runtime, the denial/limit errors that the runtime reports
//! with the rule they broke, the audit sink, and shared backend helpers.

mod audit;
mod backends;
mod capability;
mod error;
mod glob;
mod grants;
pub mod health;
mod units;
pub mod wit;

pub use audit::{AuditEvent, AuditKind, AuditSink, LogAudit, MemoryAudit};
pub use backends::{Backend, BackendSet};
pub use capability::{
    BackendConfig, Capability, HostOf, InvocationLimits, NamedCapability, NamedGrant, NoCapability,
    NoConfig, unbracket, url_host,
};
pub use error::{CapabilityError, LimitExceeded};
pub use glob::{check_globs, glob_matches};
pub use grants::{Granted, ModuleGrants, resolve_grants};
pub use health::{Health, PROBE_TIMEOUT, ProbeFn};
pub use units::{ByteSize, HumanDuration, Rate};
