//! The smallest useful module: reads its `[config]` and greets.

use warden_sdk::{Task, config};

struct Hello;

impl Task for Hello {
    fn run() -> Result<(), String> {
        let greeting = config::get("greeting")?.unwrap_or_else(|| "Hello".into());
        let name = config::require("name")?;
        println!("{greeting}, {name}!");
        Ok(())
    }
}

warden_sdk::export_task!(Hello);
