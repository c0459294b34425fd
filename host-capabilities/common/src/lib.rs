//! Pieces every Warden capability shares: the denial/limit errors that the
//! runtime reports with the rule they broke, and the audit sink.

mod audit;
mod backends;
mod error;
mod glob;
mod grants;
pub mod health;
mod units;
pub mod wit;

pub use audit::{AuditEvent, AuditKind, AuditSink, LogAudit, MemoryAudit};
pub use backends::{Backend, BackendSet};
pub use error::{CapabilityError, LimitExceeded};
pub use glob::{check_globs, glob_matches};
pub use grants::{Granted, ModuleGrants, resolve_grants};
pub use health::{Health, PROBE_TIMEOUT, ProbeFn};
pub use units::{ByteSize, HumanDuration, Rate};
