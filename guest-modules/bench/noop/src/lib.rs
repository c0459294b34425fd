//! The trivial task the instantiation benchmark measures: does nothing.

struct Noop;

impl warden_sdk::Task for Noop {
    fn run() -> Result<(), String> {
        Ok(())
    }
}

warden_sdk::export_task!(Noop);
