//! The capability benchmark's guest: one point SELECT by primary key or one
//! Redis GET per invocation, or many through one handle (the host call's own
//! cost, without an instance per call).

use warden_sdk::kv::Store;
use warden_sdk::sql::{Connection, Value};

wit_bindgen::generate!({
    inline: r#"
        package warden-bench:lookup;
        interface lookup {
            sql-get: func(id: s64) -> result<string, string>;
            kv-get: func(key: string) -> result<string, string>;
            sql-get-many: func(ids: list<s64>) -> result<u32, string>;
            kv-get-many: func(keys: list<string>) -> result<u32, string>;
        }
        world bench { export lookup; }
    "#,
});

struct Lookup;

impl exports::warden_bench::lookup::lookup::Guest for Lookup {
    fn sql_get(id: i64) -> Result<String, String> {
        let db = Connection::open("db").map_err(|e| format!("{e:?}"))?;
        name_by_id(&db, id)
    }

    fn kv_get(key: String) -> Result<String, String> {
        let kv = Store::open("cache").map_err(|e| format!("{e:?}"))?;
        value_of(&kv, &key)
    }

    fn sql_get_many(ids: Vec<i64>) -> Result<u32, String> {
        let db = Connection::open("db").map_err(|e| format!("{e:?}"))?;
        for id in &ids {
            name_by_id(&db, *id)?;
        }
        Ok(ids.len() as u32)
    }

    fn kv_get_many(keys: Vec<String>) -> Result<u32, String> {
        let kv = Store::open("cache").map_err(|e| format!("{e:?}"))?;
        for key in &keys {
            value_of(&kv, key)?;
        }
        Ok(keys.len() as u32)
    }
}

/// One statement per id: each is its own host call and its own wrapper.
fn name_by_id(db: &Connection, id: i64) -> Result<String, String> {
    // `$1` on PostgreSQL, `?` on MySQL/MariaDB (`[config] placeholder`).
    let placeholder = warden_sdk::config::get("placeholder")?.unwrap_or_else(|| "$1".into());
    let rows = db
        .query(
            &format!("SELECT name FROM warden_bench WHERE id = {placeholder}"),
            &[Value::Int64(id)],
        )
        .map_err(|e| format!("{e:?}"))?;
    match rows.rows.first().and_then(|r| r.first()) {
        Some(Value::Text(name)) => Ok(name.clone()),
        other => Err(format!("unexpected {other:?}")),
    }
}

fn value_of(kv: &Store, key: &str) -> Result<String, String> {
    let value = kv
        .get(key)
        .map_err(|e| format!("{e:?}"))?
        .ok_or("missing")?;
    String::from_utf8(value).map_err(|e| e.to_string())
}

export!(Lookup);
