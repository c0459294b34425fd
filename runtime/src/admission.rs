//! Who may start an invocation now: `rate` (token bucket, rejects) and
//! `max-instances` (semaphore, waits), per module.

use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::{Semaphore, SemaphorePermit};
use warden_capability::LimitExceeded;

use crate::limits::Limits;
use crate::manifest::Rate;

pub struct Admission {
    instances: Semaphore,
    max_instances: u32,
    bucket: Option<Mutex<Bucket>>,
}

struct Bucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

impl Admission {
    pub fn new(limits: &Limits) -> Self {
        Self {
            instances: Semaphore::new(limits.max_instances as usize),
            max_instances: limits.max_instances,
            bucket: limits.rate.map(|rate| {
                Mutex::new(Bucket {
                    rate,
                    tokens: f64::from(rate.count),
                    last: Instant::now(),
                })
            }),
        }
    }

    /// Takes a rate token (or fails naming the limit), then waits up to
    /// `patience` for a free instance slot: callers beyond `max-instances`
    /// queue instead of piling up, and a queue that does not move refuses.
    pub async fn admit(
        &self,
        patience: std::time::Duration,
    ) -> Result<SemaphorePermit<'_>, LimitExceeded> {
        if let Some(bucket) = &self.bucket {
            bucket.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        }
        let refused = |why: String| LimitExceeded {
            limit: "max-instances",
            allowed: self.max_instances.to_string(),
            attempted: Some(why),
        };
        match tokio::time::timeout(patience, self.instances.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(refused("the module is shutting down".into())),
            Err(_) => Err(refused(format!(
                "no instance came free within {}",
                humantime::format_duration(patience)
            ))),
        }
    }

    /// Invocations running right now.
    pub fn in_flight(&self) -> u32 {
        self.max_instances - self.instances.available_permits() as u32
    }
}

impl Bucket {
    fn take(&mut self) -> Result<(), LimitExceeded> {
        let now = Instant::now();
        let per_sec = f64::from(self.rate.count) / self.rate.per.as_secs_f64();
        let capacity = f64::from(self.rate.count);
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * per_sec).min(capacity);
        self.last = now;
        if self.tokens < 1.0 {
            return Err(LimitExceeded {
                limit: "rate",
                allowed: format!("{}/{}s", self.rate.count, self.rate.per.as_secs()),
                attempted: None,
            });
        }
        self.tokens -= 1.0;
        Ok(())
    }
}
