//! Pieces every Warden capability shares: the denial/limit error that the
//! runtime reports with the rule it broke, the audit sink, and a per-call
//! byte budget for data the host hands back to a guest.

mod audit;
mod budget;
mod error;

pub use audit::{AuditEvent, AuditKind, AuditSink, LogAudit, MemoryAudit};
pub use budget::ByteBudget;
pub use error::{CapabilityError, LimitExceeded};
