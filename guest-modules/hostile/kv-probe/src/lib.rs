//! Runs one KV operation named by `[config] op` on `[config] key` and prints
//! the reply. The KV tests drive it, including every attempt to leave the
//! grant's prefix.

use warden_sdk::kv::Store;
use warden_sdk::{Error, Task, config};

struct KvProbe;

impl Task for KvProbe {
    fn run() -> Result<(), String> {
        let store = Store::open(&config::require("grant")?).map_err(show)?;
        let key = config::get("key")?.unwrap_or_default();
        let value = config::get("value")?.unwrap_or_default().into_bytes();
        let text = |v: Option<Vec<u8>>| {
            v.map_or("none".to_string(), |b| {
                String::from_utf8_lossy(&b).into_owned()
            })
        };
        let out = match config::require("op")?.as_str() {
            "open" => "opened".to_string(),
            "set" => {
                let ttl = config::get("ttl-ms")?
                    .map(|t| t.parse::<u64>().map_err(|e| e.to_string()))
                    .transpose()?;
                store.set(&key, &value, ttl).map_err(show)?;
                "ok".into()
            }
            "get" => text(store.get(&key).map_err(show)?),
            "delete" => store.delete(&key).map_err(show)?.to_string(),
            "ttl" => format!("{:?}", store.ttl(&key).map_err(show)?.map(|ms| ms > 0)),
            "incr" => store.incr(&key, 2).map_err(show)?.to_string(),
            "hash" => {
                store.hset(&key, "f1", b"v1").map_err(show)?;
                store.hset(&key, "f2", b"v2").map_err(show)?;
                store.hdel(&key, "f2").map_err(show)?;
                let mut all = store.hgetall(&key).map_err(show)?;
                all.sort();
                format!(
                    "{} {}",
                    text(store.hget(&key, "f1").map_err(show)?),
                    all.len()
                )
            }
            "list" => {
                store.rpush(&key, b"b").map_err(show)?;
                store.lpush(&key, b"a").map_err(show)?;
                store.rpush(&key, b"c").map_err(show)?;
                let all: Vec<String> = store
                    .lrange(&key, 0, -1)
                    .map_err(show)?
                    .into_iter()
                    .map(|b| text(Some(b)))
                    .collect();
                format!(
                    "{} {} {}",
                    all.join(","),
                    text(store.lpop(&key).map_err(show)?),
                    text(store.rpop(&key).map_err(show)?)
                )
            }
            "set-ops" => {
                store.sadd(&key, "x").map_err(show)?;
                store.sadd(&key, "y").map_err(show)?;
                store.srem(&key, "y").map_err(show)?;
                format!(
                    "{:?} {}",
                    store.smembers(&key).map_err(show)?,
                    store.sismember(&key, "x").map_err(show)?
                )
            }
            "zset" => {
                store.zadd(&key, "low", 1.0).map_err(show)?;
                store.zadd(&key, "high", 9.0).map_err(show)?;
                store.zadd(&key, "mid", 5.0).map_err(show)?;
                store.zrem(&key, "high").map_err(show)?;
                format!(
                    "{:?} {:?}",
                    store.zrange_by_score(&key, 0.0, 10.0, 10).map_err(show)?,
                    store.zscore(&key, "mid").map_err(show)?
                )
            }
            "publish" => store.publish(&key, &value).map_err(show)?.to_string(),
            "keys" => format!("{:?}", store.keys(&key, 100).map_err(show)?),
            "batch" => {
                use warden_sdk::kv::{Op, Reply};
                let ops = [
                    Op::Set(("b1".into(), b"x".to_vec(), None)),
                    Op::Incr(("b2".into(), 5)),
                    Op::Get("b1".into()),
                    Op::Hset(("b3".into(), "f".into(), b"v".to_vec())),
                    Op::Hget(("b3".into(), "f".into())),
                    Op::Get("missing".into()),
                    Op::Delete(key.clone()),
                ];
                let replies = store.batch(&ops).map_err(show)?;
                let shown: Vec<String> = replies
                    .iter()
                    .map(|r| match r {
                        Reply::Ok => "ok".to_string(),
                        Reply::Nil => "nil".to_string(),
                        Reply::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                        Reply::Number(n) => n.to_string(),
                    })
                    .collect();
                shown.join(",")
            }
            other => return Err(format!("unknown op {other}")),
        };
        println!("{out}");
        Ok(())
    }
}

fn show(e: Error) -> String {
    match e {
        Error::Denied(m) => format!("denied: {m}"),
        Error::NotFound(m) => format!("not-found: {m}"),
        Error::Invalid(m) => format!("invalid: {m}"),
        Error::Unavailable(m) => format!("unavailable: {m}"),
        Error::Timeout(m) => format!("timeout: {m}"),
        Error::LimitExceeded(m) => format!("limit-exceeded: {m}"),
        Error::Backend(m) => format!("backend: {m}"),
    }
}

warden_sdk::export_task!(KvProbe);
