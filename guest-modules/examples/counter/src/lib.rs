//! Counts its runs in Redis, remembers when it last ran (with a TTL), and
//! keeps a leaderboard of the names it was run for.

use warden_sdk::kv::Store;
use warden_sdk::{Task, config};

struct Counter;

impl Task for Counter {
    fn run() -> Result<(), String> {
        let kv = Store::open("cache").map_err(|e| format!("{e:?}"))?;
        let name = config::get("name")?.unwrap_or_else(|| "anonymous".into());
        let runs = kv.incr("runs", 1).map_err(|e| format!("{e:?}"))?;
        let seen_recently = kv.get("last-run").map_err(|e| format!("{e:?}"))?.is_some();
        kv.set("last-run", name.as_bytes(), Some(60_000))
            .map_err(|e| format!("{e:?}"))?;
        kv.zadd("leaderboard", &name, runs as f64)
            .map_err(|e| format!("{e:?}"))?;
        let top = kv
            .zrange_by_score("leaderboard", f64::MIN, f64::MAX, 3)
            .map_err(|e| format!("{e:?}"))?;
        println!(
            "run #{runs} for {name} (another run in the last minute: {seen_recently}); leaderboard: {top:?}"
        );
        Ok(())
    }
}

warden_sdk::export_task!(Counter);
