//! `[[cron]]` schedules: parsed and checked with the manifest (a date that
//! never comes is refused at upload), run by the server's scheduler.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Year};

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
pub fn next_after(cron: &Cron, now: &DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(now, false).ok()
}
