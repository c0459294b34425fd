//! What guests print reaches the server's log through a per-module budget:
//! a module printing in a loop costs itself lines, not the host's disk.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines a module may log per [`PER`], beyond which they are counted only.
pub const LINES: u32 = 200;
/// The budget's period.
pub const PER: Duration = Duration::from_secs(1);

/// One module's log budget.
pub struct GuestLog {
    module: String,
    window: Mutex<Window>,
}

struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

impl GuestLog {
    pub fn new(module: &str) -> Self {
        Self {
            module: module.to_string(),
            window: Mutex::new(Window {
                started: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Logs each line of `text` while the budget lasts; says how many were
    /// suppressed when a new period starts.
    pub fn lines(&self, text: &str) {
        for line in text.lines() {
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            if w.started.elapsed() >= PER {
                if w.suppressed > 0 {
                    tracing::warn!(target: "warden::guest", module = %self.module, "{} guest log lines suppressed (over {LINES} per {}s)", w.suppressed, PER.as_secs());
                }
                *w = Window {
                    started: Instant::now(),
                    logged: 0,
                    suppressed: 0,
                };
            }
            if w.logged >= LINES {
                w.suppressed += 1;
                continue;
            }
            w.logged += 1;
            drop(w);
            tracing::info!(target: "warden::guest", module = %self.module, "{line}");
        }
    }
}
