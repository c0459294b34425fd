//! The Warden guest SDK.
//!
//! A module implements an export trait and registers it with the matching macro:
//!
//! ```ignore
//! struct Hello;
//! impl warden_sdk::Task for Hello {
//!     fn run() -> Result<(), String> { Ok(()) }
//! }
//! warden_sdk::export_task!(Hello);
//! ```
//!
//! Only the host interfaces a module actually calls end up as imports of its
//! component, so a module needs grants only for what it uses.

/// Raw bindings to everything the host offers (`warden:module/imports`).
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "warden:module/imports",
        generate_all,
        // `types` has no functions yet; its error type is still part of the API.
        generate_unused_types: true,
    });
}

/// The `task` export. Use [`export_task!`] to register an implementation.
#[doc(hidden)]
pub mod task {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "warden:module/task-module",
        with: {
            "wasi:config/store@0.2.0-rc.1": crate::bindings::wasi::config::store,
            "warden:host/types@0.1.0": crate::bindings::warden::host::types,
            "warden:host/sql@0.1.0": crate::bindings::warden::host::sql,
            "warden:host/kv@0.1.0": crate::bindings::warden::host::kv,
            "warden:host/kafka@0.1.0": crate::bindings::warden::host::kafka,
            "warden:host/amqp@0.1.0": crate::bindings::warden::host::amqp,
            "warden:host/events@0.1.0": crate::bindings::warden::host::events,
        },
        pub_export_macro: true,
        export_macro_name: "export_task",
        default_bindings_module: "warden_sdk::task",
    });
}

/// The `message-handler` export of `[[subscribe]]` modules. Use [`export_message_handler!`].
#[doc(hidden)]
pub mod message {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "warden:module/message-module",
        with: {
            "wasi:config/store@0.2.0-rc.1": crate::bindings::wasi::config::store,
            "warden:host/types@0.1.0": crate::bindings::warden::host::types,
            "warden:host/sql@0.1.0": crate::bindings::warden::host::sql,
            "warden:host/kv@0.1.0": crate::bindings::warden::host::kv,
            "warden:host/kafka@0.1.0": crate::bindings::warden::host::kafka,
            "warden:host/amqp@0.1.0": crate::bindings::warden::host::amqp,
            "warden:host/events@0.1.0": crate::bindings::warden::host::events,
        },
        pub_export_macro: true,
        export_macro_name: "export_message_handler",
        default_bindings_module: "warden_sdk::message",
    });
}

/// The optional `lifecycle` export. Use [`export_lifecycle!`].
#[doc(hidden)]
pub mod lifecycle {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "warden:module/lifecycle-module",
        with: {
            "wasi:config/store@0.2.0-rc.1": crate::bindings::wasi::config::store,
            "warden:host/types@0.1.0": crate::bindings::warden::host::types,
            "warden:host/sql@0.1.0": crate::bindings::warden::host::sql,
            "warden:host/kv@0.1.0": crate::bindings::warden::host::kv,
            "warden:host/kafka@0.1.0": crate::bindings::warden::host::kafka,
            "warden:host/amqp@0.1.0": crate::bindings::warden::host::amqp,
            "warden:host/events@0.1.0": crate::bindings::warden::host::events,
        },
        pub_export_macro: true,
        export_macro_name: "export_lifecycle",
        default_bindings_module: "warden_sdk::lifecycle",
    });
}

pub mod config;
#[cfg(feature = "http")]
pub mod http;

pub use bindings::warden::host::amqp;
pub use bindings::warden::host::events;
pub use bindings::warden::host::kafka;
pub use bindings::warden::host::kv;
pub use bindings::warden::host::sql;
pub use bindings::warden::host::types::Error;
pub use lifecycle::export_lifecycle;
pub use lifecycle::exports::warden::module::lifecycle::Guest as Lifecycle;
pub use message::export_message_handler;
pub use message::exports::warden::module::message_handler::{Guest as MessageHandler, Message};
pub use task::export_task;
pub use task::exports::warden::module::task::Guest as Task;
