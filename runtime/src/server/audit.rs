//! The server's audit sink: every denial, trap and limit breach of a module
//! (plus uploads and state changes, recorded by the node) goes to the
//! registry's audit log. Guests can provoke denials at will, so the queue
//! to the writer is bounded and overflow is counted, never buffered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use warden_capability::{AuditEvent, AuditKind, AuditSink};

use super::metrics::Metrics;
use super::registry::{NewAudit, Registry};

const QUEUE: usize = 4096;

enum Entry {
    Event(NewAudit),
    /// Answered once everything queued before it is stored.
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Entry>,
    metrics: Arc<Metrics>,
    dropped: Arc<AtomicU64>,
}

impl AuditLog {
    /// Starts the writer task.
    pub fn start(registry: Registry, metrics: Arc<Metrics>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Entry>(QUEUE);
        tokio::spawn(async move {
            while let Some(entry) = rx.recv().await {
                match entry {
                    Entry::Event(event) => {
                        if let Err(e) = registry.record_audit(&event).await {
                            tracing::error!(module = %event.module, kind = %event.kind, "audit event not stored: {e}");
                        }
                    }
                    Entry::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Self {
            tx,
            metrics,
            dropped: Arc::default(),
        }
    }

    pub fn record(&self, event: NewAudit) {
        tracing::info!(target: "warden::audit", module = %event.module, version = ?event.version, kind = %event.kind, rule = %event.rule, "{}", event.detail);
        if event.kind == AuditKind::Denied.to_string() {
            self.metrics.denial(&event.module, &event.rule);
        } else if event.kind == AuditKind::LimitExceeded.to_string() {
            self.metrics.limit_breach(&event.module, &event.rule);
        }
        if self.tx.try_send(Entry::Event(event)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!("audit queue full: {n} events not stored (they were logged)");
            }
        }
    }

    /// Waits until every event recorded so far is stored (at shutdown).
    pub async fn flush(&self) {
        let (done, stored) = oneshot::channel();
        if self.tx.send(Entry::Flush(done)).await.is_ok() {
            let _ = stored.await;
        }
    }

    /// Events not stored because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A sink for one loaded version of a module.
    pub fn for_version(&self, version: &str) -> Arc<dyn AuditSink> {
        Arc::new(VersionAudit {
            log: self.clone(),
            version: version.to_string(),
        })
    }
}

struct VersionAudit {
    log: AuditLog,
    version: String,
}

impl AuditSink for VersionAudit {
    fn record(&self, e: AuditEvent) {
        self.log.record(NewAudit {
            module: e.module,
            version: Some(self.version.clone()),
            kind: e.kind.to_string(),
            rule: e.rule,
            detail: e.detail,
        });
    }
}
