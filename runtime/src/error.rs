//! Errors as users see them: one line naming the module, the rule and the limit.

use std::fmt;

use warden_capability::LimitExceeded;
use wasmtime::Trap;
use wasmtime::component::ResourceTableError;

/// A component or manifest that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("invalid component: {0}")]
    Invalid(String),
    #[error("invalid manifest: {}", .0.join("; "))]
    Manifest(Vec<String>),
    /// The component's imports or exports do not match its manifest.
    #[error("denied: {}", .0.join("; "))]
    Contract(Vec<String>),
    #[error("{0}")]
    Host(String),
}

/// Why an invocation did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// Admission refused the invocation before any guest code ran (`rate`,
    /// no free instance in time). Backpressure, not a failure of the module.
    Refused(LimitExceeded),
    /// A sandbox limit stopped the guest.
    Limit(LimitExceeded),
    /// The guest trapped (panic, unreachable, bad host call).
    Trap(String),
    /// The guest ran to completion and returned an error.
    Failed(String),
    /// The host could not set up the invocation.
    Host(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Refused(l) | RunError::Limit(l) => write!(f, "{l}"),
            RunError::Trap(m) => write!(f, "trap: {m}"),
            RunError::Failed(m) => write!(f, "failed: {m}"),
            RunError::Host(m) => write!(f, "host error: {m}"),
        }
    }
}

impl std::error::Error for RunError {}

impl RunError {
    /// The limit this error names, if it is a limit (refusal or breach).
    pub fn limit(&self) -> Option<&LimitExceeded> {
        match self {
            RunError::Refused(l) | RunError::Limit(l) => Some(l),
            _ => None,
        }
    }

    /// Classifies an error from instantiation or a call into the limit it
    /// broke, or a plain trap.
    pub fn from_wasmtime(err: wasmtime::Error, ctx: &TrapContext) -> RunError {
        if let Some(limit) = err.downcast_ref::<LimitExceeded>() {
            return RunError::Limit(limit.clone());
        }
        if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return RunError::Failed(format!("the guest called exit({})", exit.0));
        }
        if let Some(ResourceTableError::Full) = err.downcast_ref::<ResourceTableError>() {
            return RunError::Limit(LimitExceeded {
                limit: "max-handles",
                allowed: format!("{} handles", ctx.max_handles),
                attempted: None,
            });
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => RunError::Limit(ctx.timeout_exceeded()),
            Some(Trap::OutOfFuel) => RunError::Limit(LimitExceeded {
                limit: "fuel",
                allowed: ctx.fuel.map_or("unlimited".into(), |f| f.to_string()),
                attempted: None,
            }),
            Some(Trap::StackOverflow) => RunError::Limit(LimitExceeded {
                limit: "stack",
                allowed: format!("{} KiB guest stack", ctx.max_stack >> 10),
                attempted: None,
            }),
            Some(trap) => RunError::Trap(format!("{trap}{}", guest_frames(&err))),
            None => RunError::Trap(format!("{err:#}")),
        }
    }
}

/// The limits in force, to name them in errors.
#[derive(Debug, Clone)]
pub struct TrapContext {
    pub timeout: std::time::Duration,
    pub fuel: Option<u64>,
    pub max_handles: u32,
    pub max_stack: usize,
}

impl TrapContext {
    pub fn timeout_exceeded(&self) -> LimitExceeded {
        LimitExceeded {
            limit: "timeout",
            allowed: humantime::format_duration(self.timeout).to_string(),
            attempted: None,
        }
    }
}

fn guest_frames(err: &wasmtime::Error) -> String {
    match err.downcast_ref::<wasmtime::WasmBacktrace>() {
        Some(bt) => {
            let names: Vec<_> = bt
                .frames()
                .iter()
                .filter_map(|f| f.func_name())
                .take(3)
                .collect();
            if names.is_empty() {
                String::new()
            } else {
                format!(" (in {})", names.join(" <- "))
            }
        }
        None => String::new(),
    }
}
