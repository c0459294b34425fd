//! The server's audit sink: every denial, trap and limit breach of a module
//! (plus uploads and state changes, recorded by the node) goes to the
//! registry's audit log.
//!
//! Guests and anonymous clients can provoke these at will, so they are
//! aggregated per module, kind and rule: the first [`FIRST_PER_WINDOW`] of
//! a [`WINDOW`] are stored and logged, the rest are counted and stored as
//! one "N more suppressed" entry when the window ends. The log shows every
//! kind of event with its count and the disk does not pay for the flood.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use warden_capability::{AuditEvent, AuditKind, AuditSink};

use super::metrics::Metrics;
use super::registry::{NewAudit, Registry};

const QUEUE: usize = 4096;

/// How long an aggregation window lasts.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Events of one module, kind and rule stored in full per window.
pub const FIRST_PER_WINDOW: u32 = 20;

/// Bytes of an event's detail that are kept.
pub const MAX_DETAIL: usize = 1024;

/// Cuts `text` to at most `max` bytes (on a character boundary), saying so.
pub fn truncate(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let total = text.len();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!("… ({total} bytes, cut)"));
}

/// Kinds a guest or a client can repeat at will.
const FLOODABLE: [&str; 3] = ["denied", "limit-exceeded", "trap"];

type Key = (String, String, String);

struct Window {
    started: Instant,
    stored: u32,
    suppressed: u64,
    version: Option<String>,
    last: String,
}

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
    windows: Arc<Mutex<HashMap<Key, Window>>>,
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
        let log = Self {
            tx,
            metrics,
            dropped: Arc::default(),
            windows: Arc::default(),
        };
        let closer = log.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WINDOW / 4);
            loop {
                tick.tick().await;
                closer.close_windows(false);
            }
        });
        log
    }

    /// Records an event; a repeated guest- or client-caused one is counted
    /// into its window instead once the window has stored its first few.
    pub fn record(&self, mut event: NewAudit) {
        // A detail carries guest-chosen text (names, keys, SQL): its size
        // is the host's to bound, not the guest's.
        truncate(&mut event.detail, MAX_DETAIL);
        if event.kind == AuditKind::Denied.to_string() {
            self.metrics.denial(&event.module, &event.rule);
        } else if event.kind == AuditKind::LimitExceeded.to_string() {
            self.metrics.limit_breach(&event.module, &event.rule);
        }
        if FLOODABLE.contains(&event.kind.as_str()) && !self.admit(&event) {
            return;
        }
        self.store(event);
    }

    /// True when `event` is among the first of its window.
    fn admit(&self, event: &NewAudit) -> bool {
        let key = (event.module.clone(), event.kind.clone(), event.rule.clone());
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let w = windows.entry(key.clone()).or_insert_with(|| Window {
            started: now,
            stored: 0,
            suppressed: 0,
            version: None,
            last: String::new(),
        });
        if now.duration_since(w.started) >= WINDOW {
            let ended = std::mem::replace(
                w,
                Window {
                    started: now,
                    stored: 0,
                    suppressed: 0,
                    version: None,
                    last: String::new(),
                },
            );
            if let Some(summary) = summary(&key, &ended) {
                drop(windows);
                self.store(summary);
                return self.admit(event);
            }
        }
        if w.stored < FIRST_PER_WINDOW {
            w.stored += 1;
            true
        } else {
            w.suppressed += 1;
            w.version.clone_from(&event.version);
            w.last.clone_from(&event.detail);
            false
        }
    }

    /// Stores the summaries of windows that ended (all of them with `all`,
    /// at shutdown) and forgets quiet ones.
    fn close_windows(&self, all: bool) {
        let now = Instant::now();
        let mut summaries = Vec::new();
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, w| {
                if !all && now.duration_since(w.started) < WINDOW {
                    return true;
                }
                summaries.extend(summary(key, w));
                false
            });
        for s in summaries {
            self.store(s);
        }
    }

    fn store(&self, event: NewAudit) {
        tracing::info!(target: "warden::audit", module = %event.module, version = ?event.version, kind = %event.kind, rule = %event.rule, "{}", event.detail);
        if self.tx.try_send(Entry::Event(event)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!("audit queue full: {n} events not stored (they were logged)");
            }
        }
    }

    /// Waits until every event recorded so far is stored (at shutdown).
    pub async fn flush(&self) {
        self.close_windows(true);
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

/// The "N more suppressed" entry of a window that suppressed any.
fn summary((module, kind, rule): &Key, w: &Window) -> Option<NewAudit> {
    (w.suppressed > 0).then(|| NewAudit {
        module: module.clone(),
        version: w.version.clone(),
        kind: kind.clone(),
        rule: rule.clone(),
        detail: format!(
            "{} more {kind} events ({rule}) suppressed in {}s; the last: {}",
            w.suppressed,
            w.started.elapsed().as_secs().max(1),
            w.last
        ),
    })
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

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn long_details_are_cut_on_a_character_boundary_and_say_so() {
        let mut short = "fine".to_string();
        truncate(&mut short, 10);
        assert_eq!(short, "fine");
        let mut long = "é".repeat(1000);
        truncate(&mut long, 11);
        assert!(long.starts_with("ééééé…"), "{long}");
        assert!(long.ends_with("(2000 bytes, cut)"), "{long}");
    }
}
