//! `[[cron]]` triggers: one scheduler loop per node checks every active
//! module's schedules; a run that is due while the previous run of the same
//! module is still going is skipped and logged (runs never overlap).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::node::Node;
use super::registry::NewAudit;
use crate::manifest::schedule::next_after;

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
