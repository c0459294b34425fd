//! Tries one filesystem operation named by `[config] op` on `[config] path`
//! and reports what happened. The escape tests expect an error every time.

use std::fs;

use warden_sdk::{Task, config};

struct FsProbe;

impl Task for FsProbe {
    fn run() -> Result<(), String> {
        let op = config::require("op")?;
        let path = config::require("path")?;
        let outcome = match op.as_str() {
            "read" => fs::read_to_string(&path).map(|s| println!("{s}")),
            "write" => fs::write(&path, b"written by fs-probe"),
            "create-dir" => fs::create_dir(&path),
            "remove" => fs::remove_file(&path),
            "list" => fs::read_dir(&path).map(|entries| {
                for e in entries.flatten() {
                    println!("{}", e.file_name().to_string_lossy());
                }
            }),
            other => return Err(format!("unknown op {other}")),
        };
        outcome.map_err(|e| format!("{op} {path}: {e}"))
    }
}

warden_sdk::export_task!(FsProbe);
