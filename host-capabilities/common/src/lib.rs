//! Pieces every Warden capability shares: the denial/limit errors that the
//! runtime reports with the rule they broke, and the audit sink.

mod audit;
mod error;
mod units;
pub mod wit;

pub use audit::{AuditEvent, AuditKind, AuditSink, LogAudit, MemoryAudit};
pub use error::{CapabilityError, LimitExceeded};
pub use units::{ByteSize, HumanDuration, Rate};
