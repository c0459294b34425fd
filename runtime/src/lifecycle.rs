//! The optional `warden:module/lifecycle` export: `init` before a version
//! serves, `health` on request, `shutdown` when it stops serving.

use crate::error::RunError;
use crate::module::LoadedModule;

pub const LIFECYCLE_EXPORT: &str = "warden:module/lifecycle";

#[derive(Debug, Clone, Copy)]
pub enum Hook {
    Init,
    Health,
    Shutdown,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::Init => "init",
            Hook::Health => "health",
            Hook::Shutdown => "shutdown",
        }
    }
}

impl LoadedModule {
    pub fn has_lifecycle(&self) -> bool {
        self.shape().exports_interface(LIFECYCLE_EXPORT)
    }

    /// Calls the hook in a fresh instance under the module's limits.
    /// `Ok(false)`: the module has no lifecycle export.
    pub async fn call_hook(&self, hook: Hook) -> Result<bool, RunError> {
        if !self.has_lifecycle() {
            return Ok(false);
        }
        let (_, output) = self
            .invoke(&format!("{LIFECYCLE_EXPORT}#{}", hook.name()), &[])
            .await?;
        self.log_output(&output);
        Ok(true)
    }
}
