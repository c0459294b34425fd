//! Prometheus counters, kept in memory and rendered in the text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::RunError;

/// Upper bounds (seconds) of the invocation duration histogram.
const BUCKETS: [f64; 10] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (module, trigger, outcome) → count
    invocations: BTreeMap<(String, &'static str, String), u64>,
    /// module → histogram
    durations: BTreeMap<String, Histogram>,
    /// (module, rule) → count
    denials: BTreeMap<(String, String), u64>,
    /// (module, limit) → count: limits that stopped a host call (a
    /// cancelled statement, a result cap), whether or not the guest failed.
    limit_breaches: BTreeMap<(String, String), u64>,
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// How an invocation ended, as a metric label.
pub fn outcome(result: &Result<(), &RunError>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(RunError::Refused(l)) => format!("refused:{}", l.limit),
        Err(RunError::Limit(l)) => format!("limit:{}", l.limit),
        Err(RunError::Trap(_)) => "trap".into(),
        Err(RunError::Failed(_)) => "failed".into(),
        Err(RunError::Host(_)) => "host-error".into(),
    }
}

impl Metrics {
    pub fn invocation(&self, module: &str, trigger: &'static str, outcome: String, took: Duration) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *m.invocations
            .entry((module.to_string(), trigger, outcome))
            .or_default() += 1;
        let h = m.durations.entry(module.to_string()).or_default();
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    pub fn denial(&self, module: &str, rule: &str) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *m.denials
            .entry((module.to_string(), rule.to_string()))
            .or_default() += 1;
    }

    pub fn limit_breach(&self, module: &str, limit: &str) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *m.limit_breaches
            .entry((module.to_string(), limit.to_string()))
            .or_default() += 1;
    }

    /// The counters plus `gauges` (name, labels, value) measured by the caller.
    pub fn render(&self, gauges: &[(&str, String, f64)]) -> String {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str("# TYPE warden_invocations_total counter\n");
        for ((module, trigger, outcome), n) in &m.invocations {
            let _ = writeln!(
                out,
                "warden_invocations_total{{module=\"{}\",trigger=\"{trigger}\",outcome=\"{}\"}} {n}",
                escape(module),
                escape(outcome)
            );
        }
        out.push_str("# TYPE warden_invocation_duration_seconds histogram\n");
        for (module, h) in &m.durations {
            let module = escape(module);
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "warden_invocation_duration_seconds_bucket{{module=\"{module}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "warden_invocation_duration_seconds_bucket{{module=\"{module}\",le=\"+Inf\"}} {}\n\
                 warden_invocation_duration_seconds_sum{{module=\"{module}\"}} {}\n\
                 warden_invocation_duration_seconds_count{{module=\"{module}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        out.push_str("# TYPE warden_denials_total counter\n");
        for ((module, rule), n) in &m.denials {
            let _ = writeln!(
                out,
                "warden_denials_total{{module=\"{}\",rule=\"{}\"}} {n}",
                escape(module),
                escape(rule)
            );
        }
        out.push_str("# TYPE warden_limit_breaches_total counter\n");
        for ((module, limit), n) in &m.limit_breaches {
            let _ = writeln!(
                out,
                "warden_limit_breaches_total{{module=\"{}\",limit=\"{}\"}} {n}",
                escape(module),
                escape(limit)
            );
        }
        let mut last = "";
        for (name, labels, value) in gauges {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} gauge");
                last = name;
            }
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
        out
    }
}

/// Label values are quoted strings: escape what would end them.
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_breaches_are_counted_per_module_and_limit() {
        let m = Metrics::default();
        m.limit_breach("orders", "statement-timeout");
        m.limit_breach("orders", "statement-timeout");
        m.limit_breach("orders", "max-output");
        let text = m.render(&[]);
        assert!(
            text.contains("# TYPE warden_limit_breaches_total counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "warden_limit_breaches_total{module=\"orders\",limit=\"statement-timeout\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("warden_limit_breaches_total{module=\"orders\",limit=\"max-output\"} 1"),
            "{text}"
        );
    }
}
