//! The capability benchmark's guest: one point SELECT by primary key, or one
//! Redis GET, per invocation.

use warden_sdk::kv::Store;
use warden_sdk::sql::{Connection, Value};

wit_bindgen::generate!({
    inline: r#"
        package warden-bench:lookup;
        interface lookup {
            sql-get: func(id: s64) -> result<string, string>;
            kv-get: func(key: string) -> result<string, string>;
        }
        world bench { export lookup; }
    "#,
});

struct Lookup;

impl exports::warden_bench::lookup::lookup::Guest for Lookup {
    fn sql_get(id: i64) -> Result<String, String> {
        let db = Connection::open("db").map_err(|e| format!("{e:?}"))?;
        let rows = db
            .query(
                "SELECT name FROM warden_bench WHERE id = $1",
                &[Value::Int64(id)],
            )
            .map_err(|e| format!("{e:?}"))?;
        match rows.rows.first().and_then(|r| r.first()) {
            Some(Value::Text(name)) => Ok(name.clone()),
            other => Err(format!("unexpected {other:?}")),
        }
    }

    fn kv_get(key: String) -> Result<String, String> {
        let kv = Store::open("cache").map_err(|e| format!("{e:?}"))?;
        let value = kv
            .get(&key)
            .map_err(|e| format!("{e:?}"))?
            .ok_or("missing")?;
        String::from_utf8(value).map_err(|e| e.to_string())
    }
}

export!(Lookup);
