//! Handing one message to a subscribed module, with retries and backoff;
//! shared by every message source (events, Kafka, AMQP, Redis). What
//! happens to a message that still fails (dead-letter, nack, commit) is up
//! to the source.

use std::time::{Duration, Instant};

use warden_capability::CapabilityError;

use super::deployments::Deployed;
use super::node::Node;
use super::registry::NewAudit;
use crate::manifest::Subscription;
use crate::message::Message;

pub const DEFAULT_RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub enum Outcome {
    Handled,
    /// Every attempt failed; the last error.
    Failed(String),
    /// The module stopped serving (paused, stopped, replaced) before the
    /// message was handled: leave it with the source for later.
    Resting,
}

/// What to do when the module is not serving at an attempt.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum WhenResting {
    /// Count it as a failed attempt (the in-process bus cannot hold
    /// messages for later).
    Fail,
    /// Give the message back ([`Outcome::Resting`]): brokers keep it.
    GiveBack,
}

/// Delivers `message` up to `1 + retries` times.
pub async fn handle_with_retries(
    node: &Node,
    deployed: &Deployed,
    message: &mut Message,
    retries: u32,
    trigger: &'static str,
    when_resting: WhenResting,
) -> Outcome {
    let mut backoff = FIRST_BACKOFF;
    let mut last_error = String::new();
    for attempt in 1..=retries + 1 {
        message.attempt = attempt;
        match deployed.serving() {
            Some(version) => {
                let started = Instant::now();
                let result = version.module.handle_message(message).await;
                node.after_invocation(deployed, &version, trigger, started, result.as_ref())
                    .await;
                match result {
                    Ok(_) => return Outcome::Handled,
                    Err(e) => last_error = e.to_string(),
                }
            }
            None if when_resting == WhenResting::GiveBack => return Outcome::Resting,
            None => {
                last_error = format!("module {} is {}", deployed.name, deployed.state().as_str());
            }
        }
        if attempt <= retries {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    Outcome::Failed(last_error)
}

/// The retries a subscription asks for.
pub fn retries(sub: &Subscription) -> u32 {
    sub.max_retries.unwrap_or(DEFAULT_RETRIES)
}

/// Records (log + audit) that a message failed every attempt, and where it
/// went.
pub fn record_dead_letter(
    node: &Node,
    deployed: &Deployed,
    message: &Message,
    retries: u32,
    error: &str,
    went_to: &str,
) {
    // The error is the guest's text: cut, escaped (no forged log lines)
    // and logged within the module's log budget.
    let error = crate::guest_log::cut(error);
    let detail = format!(
        "{} message on {:?} failed {} times, last: {error:?}; {went_to}",
        message.source,
        message.topic,
        retries + 1,
    );
    let version = deployed.current();
    if version
        .as_ref()
        .is_none_or(|v| v.module.guest_log().admit(detail.len()))
    {
        tracing::warn!(module = %deployed.name, "{detail}");
    }
    node.audit.record(NewAudit {
        module: deployed.name.clone(),
        version: version.map(|v| v.version.clone()),
        kind: "dead-letter".into(),
        rule: "max-retries".into(),
        detail,
    });
}

/// The headers a dead-lettered message carries: the original ones plus
/// the error, where it came from and which module failed it.
pub fn dead_letter_headers(
    original: &[(String, String)],
    topic: &str,
    error: &str,
    module: &str,
) -> Vec<(String, String)> {
    let mut headers = original.to_vec();
    headers.push(("warden-error".into(), error.to_string()));
    headers.push(("warden-original-topic".into(), topic.to_string()));
    headers.push(("warden-failed-module".into(), module.to_string()));
    headers
}

/// Pause before reconnecting a consumer whose broker went away.
pub const RECONNECT: Duration = Duration::from_secs(1);

/// Waits until the module serves, then `connect`s; while that fails, logs
/// and tries again.
pub async fn connect_when_serving<T, Fut>(
    deployed: &Deployed,
    what: &str,
    mut connect: impl FnMut() -> Fut,
) -> T
where
    Fut: Future<Output = Result<T, CapabilityError>>,
{
    loop {
        until_serving(deployed).await;
        match connect().await {
            Ok(t) => return t,
            Err(e) => {
                tracing::warn!(module = %deployed.name, "{what}: {e}");
                tokio::time::sleep(RECONNECT).await;
            }
        }
    }
}

/// What `next` gives, or None once the module no longer serves.
pub async fn while_serving<T>(deployed: &Deployed, next: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        r = next => Some(r),
        () = until_resting(deployed) => None,
    }
}

async fn until_serving(deployed: &Deployed) {
    while deployed.serving().is_none() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn until_resting(deployed: &Deployed) {
    while deployed.serving().is_some() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
