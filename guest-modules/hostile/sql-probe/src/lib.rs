//! Runs the SQL named by its `[config]` through the sql capability and prints
//! what came back, one line per row. The SQL tests drive it: type round
//! trips, transactions, and every way of trying to get around a grant.
//!
//! config: `grant`, `op` (query | execute | batch | prepare | tx | hold),
//! `sql`, `params` (JSON array of values like `{"int64": 1}` or `null`),
//! `rows` (batch: JSON array of such arrays), `steps` (tx: JSON array of
//! `[sql, params]`), `end` (tx: commit | rollback | drop | trap | spin).

use serde_json::Value as Json;
use warden_sdk::sql::{Connection, RowSet, Value};
use warden_sdk::{Error, Task, config};

struct SqlProbe;

impl Task for SqlProbe {
    fn run() -> Result<(), String> {
        let grant = config::require("grant")?;
        let db = Connection::open(&grant).map_err(show)?;
        let sql = config::get("sql")?.unwrap_or_default();
        match config::require("op")?.as_str() {
            "open" => println!("opened {grant}"),
            "query" => print_rows(&db.query(&sql, &params("params")?).map_err(show)?),
            "execute" => println!(
                "affected {}",
                db.execute(&sql, &params("params")?).map_err(show)?
            ),
            "batch" => {
                let rows = json("rows")?;
                let rows = rows
                    .as_array()
                    .ok_or("rows must be an array")?
                    .iter()
                    .map(to_params)
                    .collect::<Result<Vec<_>, _>>()?;
                println!("affected {}", db.execute_batch(&sql, &rows).map_err(show)?);
            }
            "prepare" => {
                let stmt = db.prepare(&sql).map_err(show)?;
                for key in ["params", "params2"] {
                    print_rows(&stmt.query(&params(key)?).map_err(show)?);
                }
            }
            "tx" => {
                let tx = db.begin().map_err(show)?;
                let steps = json("steps")?;
                for step in steps.as_array().ok_or("steps must be an array")? {
                    let sql = step[0].as_str().ok_or("step sql")?;
                    let p = to_params(&step[1])?;
                    if sql.trim_start().to_ascii_lowercase().starts_with("select") {
                        print_rows(&tx.query(sql, &p).map_err(show)?);
                    } else {
                        println!("affected {}", tx.execute(sql, &p).map_err(show)?);
                    }
                }
                match config::get("end")?.as_deref().unwrap_or("commit") {
                    "commit" => tx.commit().map_err(show)?,
                    "rollback" => tx.rollback().map_err(show)?,
                    "drop" => drop(tx),
                    "trap" => panic!("trapping inside a transaction"),
                    "spin" => loop {
                        std::hint::black_box(&tx);
                    },
                    other => return Err(format!("unknown end {other}")),
                }
            }
            "hold" => {
                // Takes every connection the grant allows, then keeps them.
                let n: usize = config::require("count")?
                    .parse()
                    .map_err(|e| format!("count: {e}"))?;
                let held: Vec<_> = (0..n)
                    .map(|_| db.begin().map_err(show))
                    .collect::<Result<_, _>>()?;
                println!("holding {}", held.len());
                loop {
                    std::hint::black_box(&held);
                }
            }
            other => return Err(format!("unknown op {other}")),
        }
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

fn json(key: &str) -> Result<Json, String> {
    match config::get(key)? {
        Some(text) => serde_json::from_str(&text).map_err(|e| format!("{key}: {e}")),
        None => Ok(Json::Array(vec![])),
    }
}

fn params(key: &str) -> Result<Vec<Value>, String> {
    to_params(&json(key)?)
}

fn to_params(list: &Json) -> Result<Vec<Value>, String> {
    list.as_array()
        .ok_or("params must be an array")?
        .iter()
        .map(to_value)
        .collect()
}

fn to_value(v: &Json) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let (kind, x) = v
        .as_object()
        .and_then(|o| o.iter().next())
        .ok_or_else(|| format!("bad value {v}"))?;
    let text = || {
        x.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{kind} needs a string"))
    };
    Ok(match kind.as_str() {
        "boolean" => Value::Boolean(x.as_bool().ok_or("boolean")?),
        "int32" => Value::Int32(x.as_i64().ok_or("int32")? as i32),
        "int64" => Value::Int64(x.as_i64().ok_or("int64")?),
        "float64" => Value::Float64(x.as_f64().ok_or("float64")?),
        "text" => Value::Text(text()?),
        "bytes" => Value::Bytes(text()?.into_bytes()),
        "timestamp" => Value::Timestamp(text()?),
        "json" => Value::Json(text()?),
        "uuid" => Value::Uuid(text()?),
        "decimal" => Value::Decimal(text()?),
        other => return Err(format!("unknown value kind {other}")),
    })
}

fn print_rows(rows: &RowSet) {
    println!("{}", rows.columns.join("\t"));
    for row in &rows.rows {
        let cells: Vec<String> = row.iter().map(render).collect();
        println!("{}", cells.join("\t"));
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Boolean(b) => format!("bool:{b}"),
        Value::Int32(n) => format!("i32:{n}"),
        Value::Int64(n) => format!("i64:{n}"),
        Value::Float64(f) => format!("f64:{f}"),
        Value::Text(s) => format!("text:{s}"),
        Value::Bytes(b) => format!("bytes:{}", String::from_utf8_lossy(b)),
        Value::Timestamp(s) => format!("ts:{s}"),
        Value::Json(s) => format!("json:{s}"),
        Value::Uuid(s) => format!("uuid:{s}"),
        Value::Decimal(s) => format!("dec:{s}"),
    }
}

warden_sdk::export_task!(SqlProbe);
