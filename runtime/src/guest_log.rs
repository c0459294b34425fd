//! What guests print reaches the server's log through a per-module budget:
//! a module printing in a loop costs itself lines, not the host's disk.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines a module may log per [`PER`], beyond which they are counted only.
pub const LINES: u32 = 200;
/// Bytes a module may log per [`PER`].
pub const BYTES: usize = 64 << 10;
/// Longest line logged; longer ones are cut.
pub const LINE_BYTES: usize = 1024;
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
    bytes: usize,
    suppressed: u64,
}

impl GuestLog {
    pub fn new(module: &str) -> Self {
        Self {
            module: module.to_string(),
            window: Mutex::new(Window {
                started: Instant::now(),
                logged: 0,
                bytes: 0,
                suppressed: 0,
            }),
        }
    }

    /// Logs each line of `text` while the budget lasts; says how many were
    /// suppressed when a new period starts.
    pub fn lines(&self, text: &str) {
        for line in text.lines() {
            let line = cut(line);
            if self.admit(line.len()) {
                tracing::info!(target: "warden::guest", module = %self.module, "{line}");
            }
        }
    }

    /// Whether a line of `bytes` fits this period's budget; counts it as
    /// suppressed if not. Host lines that carry guest-chosen text (its
    /// error messages) are taken from the same budget.
    pub fn admit(&self, bytes: usize) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if w.started.elapsed() >= PER {
            if w.suppressed > 0 {
                tracing::warn!(target: "warden::guest", module = %self.module, "{} guest log lines suppressed (over {LINES} lines or {BYTES} bytes per {}s)", w.suppressed, PER.as_secs());
            }
            *w = Window {
                started: Instant::now(),
                logged: 0,
                bytes: 0,
                suppressed: 0,
            };
        }
        let bytes = bytes.min(LINE_BYTES);
        if w.logged >= LINES || w.bytes + bytes > BYTES {
            w.suppressed += 1;
            return false;
        }
        w.logged += 1;
        w.bytes += bytes;
        true
    }
}

/// At most [`LINE_BYTES`] of `line`, on a character boundary.
pub fn cut(line: &str) -> &str {
    if line.len() <= LINE_BYTES {
        return line;
    }
    let mut end = LINE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}
