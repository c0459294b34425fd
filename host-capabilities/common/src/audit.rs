use std::fmt;
use std::sync::{Arc, Mutex};

use crate::CapabilityError;

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

    /// Records that the `rule` capability's grant refused `module`, and
    /// returns the error the guest sees.
    fn deny(&self, module: &str, rule: &str, detail: String) -> CapabilityError {
        self.record(AuditEvent {
            module: module.to_string(),
            kind: AuditKind::Denied,
            rule: rule.to_string(),
            detail: detail.clone(),
        });
        CapabilityError::Denied(detail)
    }
}

/// Logs events through `tracing` (target `warden::audit`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogAudit;

impl AuditSink for LogAudit {
    fn record(&self, e: AuditEvent) {
        tracing::info!(target: "warden::audit", module = %e.module, kind = %e.kind, rule = %e.rule, "{}", e.detail);
    }
}

/// Keeps events in memory (the CLI reports them; tests inspect them), and
/// logs them too.
#[derive(Debug, Default, Clone)]
pub struct MemoryAudit(Arc<Mutex<Vec<AuditEvent>>>);

impl MemoryAudit {
    pub fn events(&self) -> Vec<AuditEvent> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, event: AuditEvent) {
        LogAudit.record(event.clone());
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(event);
    }
}

impl<T: AuditSink + ?Sized> AuditSink for Arc<T> {
    fn record(&self, event: AuditEvent) {
        (**self).record(event)
    }
}
