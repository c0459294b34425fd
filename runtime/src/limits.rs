//! Per-module limits: manifest values over host defaults, and the store's
//! resource limiter that turns a breach into a trap naming the limit.

use std::time::Duration;

use warden_capability::LimitExceeded;
use wasmtime::ResourceLimiter;

use crate::manifest::{ByteSize, LimitsSpec, Rate};

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub memory: ByteSize,
    pub timeout: Duration,
    pub fuel: Option<u64>,
    pub max_instances: u32,
    pub rate: Option<Rate>,
    pub max_handles: u32,
    pub max_output: ByteSize,
    /// How long an invocation waits for a free instance before it is
    /// refused; `None`: four times `timeout`, at least a second.
    pub queue_timeout: Option<Duration>,
    /// Denied host calls one invocation may make before it is stopped.
    pub max_denials: u32,
}

impl Default for Limits {
    /// Host defaults for a manifest that sets nothing.
    fn default() -> Self {
        Self {
            memory: ByteSize::mib(128),
            timeout: Duration::from_secs(10),
            fuel: None,
            max_instances: 16,
            rate: None,
            max_handles: 10_000,
            max_output: ByteSize::mib(16),
            queue_timeout: None,
            max_denials: 100,
        }
    }
}

impl Limits {
    pub fn resolve(spec: &LimitsSpec, defaults: &Limits) -> Limits {
        Limits {
            memory: spec.memory.unwrap_or(defaults.memory),
            timeout: spec.timeout.map_or(defaults.timeout, |t| t.0),
            fuel: spec.fuel.or(defaults.fuel),
            max_instances: spec.max_instances.unwrap_or(defaults.max_instances),
            rate: spec.rate.or(defaults.rate),
            max_handles: spec.max_handles.unwrap_or(defaults.max_handles),
            max_output: spec.max_output.unwrap_or(defaults.max_output),
            queue_timeout: spec.queue_timeout.map(|t| t.0).or(defaults.queue_timeout),
            max_denials: spec.max_denials.unwrap_or(defaults.max_denials),
        }
    }

    /// How long an invocation may wait in the `max-instances` queue.
    pub fn queue_patience(&self) -> Duration {
        self.queue_timeout
            .unwrap_or_else(|| (self.timeout * 4).max(Duration::from_secs(1)))
    }
}

/// Table elements any one table may hold; guests need far fewer.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The store's limiter: memory growth past the manifest's `memory` traps
/// right away with an error naming the limit (instead of a guest abort).
pub struct Limiter {
    memory: usize,
}

impl Limiter {
    pub fn new(limits: &Limits) -> Self {
        Self {
            memory: usize::try_from(limits.memory.0).unwrap_or(usize::MAX),
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            return Err(LimitExceeded {
                limit: "memory",
                allowed: ByteSize(self.memory as u64).to_string(),
                attempted: Some(format!(
                    "growing from {} to {}",
                    ByteSize(current as u64),
                    ByteSize(desired as u64)
                )),
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(LimitExceeded {
                limit: "table-elements",
                allowed: MAX_TABLE_ELEMENTS.to_string(),
                attempted: Some(desired.to_string()),
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        2
    }
}
