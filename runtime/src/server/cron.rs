//! `[[cron]]` triggers: one scheduler loop per node checks every active
//! module's schedules; a run that is due while the previous run of the same
//! module is still going is skipped and logged (runs never overlap).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Year};

use super::node::Node;
use super::registry::NewAudit;

/// Parses a schedule: 5 fields (min hour day month weekday), or 6 with
/// seconds first.
pub fn parse_schedule(schedule: &str) -> Result<Cron, String> {
    let fields = schedule.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "{schedule:?} must have 5 fields (min hour day month weekday), or 6 with seconds first"
        ));
    }
    let cron = CronParser::builder()
        .year(Year::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|e| format!("{schedule:?}: {e}"))?;
    // `0 0 30 2 *` parses but never fires: refuse it instead of scheduling
    // a run that is never (or, worse, always) due.
    let now = Utc::now();
    match next_after(&cron, &now) {
        Some(next) if next - now <= chrono::Duration::days(HORIZON_DAYS) => Ok(cron),
        _ => Err(format!(
            "{schedule:?} has no occurrence in the next {} years",
            HORIZON_DAYS / 365
        )),
    }
}

/// How far ahead a schedule must have a run to be accepted.
const HORIZON_DAYS: i64 = 4 * 365 + 1;

/// The next run after `now`; None when the schedule has none (croner gives
/// up searching after some years).
fn next_after(cron: &Cron, now: &DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(now, false).ok()
}

/// Runs until the process ends.
pub async fn run_scheduler(node: Arc<Node>) {
    // (module, schedule index) → when it is next due
    let mut next: HashMap<(String, usize), Option<DateTime<Utc>>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = Utc::now();
        let mut seen = HashSet::new();
        for deployed in node.deployments.all() {
            let Some(version) = deployed.serving() else {
                continue;
            };
            for (i, (schedule, cron)) in version.schedules.iter().enumerate() {
                let key = (deployed.name.clone(), i);
                seen.insert(key.clone());
                // No next occurrence is "never", not "now".
                let Some(due) = next
                    .entry(key.clone())
                    .or_insert_with(|| next_after(cron, &now))
                    .to_owned()
                else {
                    continue;
                };
                if now < due {
                    continue;
                }
                next.insert(key, next_after(cron, &now));
                let Ok(guard) = deployed.cron_running.clone().try_lock_owned() else {
                    tracing::warn!(module = %deployed.name, schedule = %schedule, "cron run skipped: the previous run is still going");
                    node.audit.record(NewAudit {
                        module: deployed.name.clone(),
                        version: Some(version.version.clone()),
                        kind: "cron-missed".into(),
                        rule: "cron".into(),
                        detail: format!(
                            "run due at {due} skipped: the previous run is still going"
                        ),
                    });
                    continue;
                };
                let (node, deployed, version) = (node.clone(), deployed.clone(), version.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let result = version.module.run_task().await;
                    node.after_invocation(&deployed, &version, "cron", started, result.as_ref())
                        .await;
                    drop(guard);
                });
            }
        }
        // Forget schedules of modules no longer active (their next is recomputed on return).
        next.retain(|k, _| seen.contains(k));
    }
}
