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
            "symlink" => symlink(&config::require("target")?, &path),
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

/// Creates a symlink at `link` (inside a preopen) pointing at `target`,
/// through wasi:filesystem directly (std has no stable symlink on WASI).
fn symlink(target: &str, link: &str) -> std::io::Result<()> {
    for (dir, guest) in wasi::filesystem::preopens::get_directories() {
        let prefix = format!("{}/", guest.trim_end_matches('/'));
        if let Some(rel) = link.strip_prefix(&prefix) {
            return dir
                .symlink_at(target, rel)
                .map_err(|e| std::io::Error::other(format!("{e:?}")));
        }
    }
    Err(std::io::Error::other("no preopen holds the link path"))
}

warden_sdk::export_task!(FsProbe);
