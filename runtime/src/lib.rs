//! Warden's runtime: the sandbox engine, module manifests and their policy,
//! contract validation, and the `warden` CLI's building blocks.

pub mod admission;
pub mod capabilities;
pub mod cli;
pub mod client;
pub mod compile;
pub mod contract;
pub mod engine;
pub mod error;
pub mod guest_log;
pub mod host_config;
pub mod http;
pub mod invoke;
pub mod lifecycle;
pub mod limits;
pub mod linker;
pub mod manifest;
pub mod message;
pub mod module;
pub mod module_cli;
pub mod server;
pub mod state;

pub use capabilities::Backends;
pub use engine::{EngineOptions, WardenEngine};
pub use error::{LoadError, RunError};
pub use limits::Limits;
pub use manifest::Manifest;
pub use module::{LoadContext, LoadedModule, Output, Stdio};
