use std::os::raw::c_int;
use std::time::Instant;

use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{Row, TypeInfo, ValueRef};

use crate::value::SqlValue;

type LiteQuery<'q> = Query<'q, Sqlite, SqliteArguments>;

/// Per-connection hardening: no ATTACH (which would open arbitrary files
/// and `VACUUM INTO` them).
pub(crate) async fn harden(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let raw = handle.as_raw_handle().as_ptr();
    // SAFETY: `raw` is the live handle of the connection we hold locked.
    unsafe {
        libsqlite3_sys::sqlite3_limit(raw, libsqlite3_sys::SQLITE_LIMIT_ATTACHED as c_int, 0);
    }
    Ok(())
}

/// Interrupts whatever runs on `conn` once `deadline` passes (the statement
/// fails with SQLITE_INTERRUPT).
pub(crate) async fn set_deadline(
    conn: &mut SqliteConnection,
    deadline: Option<Instant>,
) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    match deadline {
        Some(deadline) => handle.set_progress_handler(1000, move || Instant::now() < deadline),
        None => handle.remove_progress_handler(),
    }
    Ok(())
}

pub(crate) fn bind<'q>(q: LiteQuery<'q>, v: &SqlValue) -> Result<LiteQuery<'q>, String> {
    Ok(match v {
        SqlValue::Null => q.bind(None::<String>),
        SqlValue::Boolean(b) => q.bind(*b),
        SqlValue::Int32(n) => q.bind(*n),
        SqlValue::Int64(n) => q.bind(*n),
        SqlValue::Float64(f) => q.bind(*f),
        SqlValue::Text(s) => q.bind(s.clone()),
        SqlValue::Bytes(b) => q.bind(b.clone()),
        SqlValue::Timestamp(s) => q.bind(SqlValue::timestamp(s)?.to_rfc3339()),
        SqlValue::Json(s) => q.bind(SqlValue::json(s)?.to_string()),
        SqlValue::Uuid(s) => q.bind(SqlValue::uuid(s)?.hyphenated().to_string()),
        SqlValue::Decimal(s) => q.bind(SqlValue::decimal(s)?.to_string()),
    })
}

/// SQLite is dynamically typed: the stored value's class decides.
pub(crate) fn decode(row: &SqliteRow, i: usize) -> Result<SqlValue, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    let ty = raw.type_info().name().to_string();
    Ok(match ty.as_str() {
        "INTEGER" | "BOOLEAN" | "INT8" => SqlValue::Int64(row.try_get(i)?),
        "REAL" => SqlValue::Float64(row.try_get(i)?),
        "BLOB" => SqlValue::Bytes(row.try_get(i)?),
        _ => SqlValue::Text(row.try_get(i)?),
    })
}
