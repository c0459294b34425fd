//! Calling a module's `warden:module/message-handler` with one message.

use wasmtime::component::{ComponentType, Lower};

use crate::contract::MESSAGE_EXPORT;
use crate::error::RunError;
use crate::module::{InstanceError, LoadedModule, Output, guest_result};

/// `warden:module/message-handler.message`.
#[derive(Debug, Clone, ComponentType, Lower)]
#[component(record)]
pub struct Message {
    pub source: String,
    pub topic: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub attempt: u32,
}

impl LoadedModule {
    /// Delivers `message`; the guest's `err` comes back as [`RunError::Failed`].
    pub async fn handle_message(&self, message: &Message) -> Result<Output, RunError> {
        let index = self.message_handle().ok_or_else(|| {
            RunError::Host(format!("the component does not export {MESSAGE_EXPORT}"))
        })?;
        let max_output = self.limits().max_output;
        self.with_instance(async |store, instance| {
            let handle = instance
                .get_typed_func::<(Message,), (Result<(), String>,)>(&mut *store, index)
                .map_err(|e| {
                    RunError::Host(format!(
                        "{MESSAGE_EXPORT}#handle has an unexpected type: {e}"
                    ))
                })?;
            let (result,) = handle
                .call_async(&mut *store, (message.clone(),))
                .await
                .map_err(InstanceError::Call)?;
            guest_result(result, max_output)
        })
        .await
        .map(|((), output)| output)
    }
}
