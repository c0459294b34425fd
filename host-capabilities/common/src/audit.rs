use std::fmt;
use std::sync::Arc;

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// A grant refused a guest request.
    Denied,
    /// A sandbox limit stopped the guest.
    LimitExceeded,
    /// The guest trapped.
    Trap,
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuditKind::Denied => "denied",
            AuditKind::LimitExceeded => "limit-exceeded",
            AuditKind::Trap => "trap",
        })
    }
}

/// One audit-worthy event: who, which capability, what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub module: String,
    pub kind: AuditKind,
    /// The capability or limit involved: `fs`, `net`, `memory`, ...
    pub rule: String,
    pub detail: String,
}

/// Where audit events go. The server stores them; the CLI logs them.
pub trait AuditSink: Send + Sync {
    fn record(&self, event: AuditEvent);
}

/// Logs events through `tracing` at warn level.
#[derive(Debug, Default, Clone, Copy)]
pub struct StderrAudit;

impl AuditSink for StderrAudit {
    fn record(&self, e: AuditEvent) {
        tracing::warn!(target: "warden::audit", module = %e.module, kind = %e.kind, rule = %e.rule, "{}", e.detail);
    }
}

impl<T: AuditSink + ?Sized> AuditSink for Arc<T> {
    fn record(&self, event: AuditEvent) {
        (**self).record(event)
    }
}
