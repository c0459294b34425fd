use std::os::raw::c_int;
use std::time::Instant;

use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{Row, TypeInfo, ValueRef};

use crate::value::SqlValue;

type LiteQuery<'q> = Query<'q, Sqlite, SqliteArguments>;

/// Per-connection hardening: no ATTACH (which would open arbitrary files
/// and `VACUUM INTO` them), and an authorizer that refuses every PRAGMA but
/// schema introspection. Pooled connections are shared by every module, so a
/// PRAGMA that changes one (`query_only`, `journal_mode = OFF`,
/// `synchronous`, `foreign_keys`, `temp_store_directory`, ...) would reach
/// the next module that gets it.
pub(crate) async fn harden(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let raw = handle.as_raw_handle().as_ptr();
    // SAFETY: `raw` is the live handle of the connection we hold locked; the
    // authorizer is a plain function with no user data.
    unsafe {
        libsqlite3_sys::sqlite3_limit(raw, libsqlite3_sys::SQLITE_LIMIT_ATTACHED as c_int, 0);
        libsqlite3_sys::sqlite3_set_authorizer(raw, Some(authorize), std::ptr::null_mut());
    }
    Ok(())
}

/// PRAGMAs that only describe the schema or the file, allowed with an
/// argument (a table or index name, a check limit).
const INTROSPECTION: &[&str] = &[
    "foreign_key_check",
    "foreign_key_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "integrity_check",
    "quick_check",
    "table_info",
    "table_list",
    "table_xinfo",
];

/// PRAGMAs allowed only without a value: reading them changes nothing.
const READABLE: &[&str] = &[
    "application_id",
    "collation_list",
    "data_version",
    "encoding",
    "foreign_keys",
    "freelist_count",
    "function_list",
    "journal_mode",
    "page_count",
    "page_size",
    "schema_version",
    "user_version",
];

/// Called by SQLite while it prepares each statement, guests' and ours.
unsafe extern "C" fn authorize(
    _: *mut std::ffi::c_void,
    action: c_int,
    arg1: *const std::ffi::c_char,
    arg2: *const std::ffi::c_char,
    _: *const std::ffi::c_char,
    _: *const std::ffi::c_char,
) -> c_int {
    use libsqlite3_sys::{SQLITE_ATTACH, SQLITE_DENY, SQLITE_DETACH, SQLITE_OK, SQLITE_PRAGMA};
    match action {
        SQLITE_ATTACH | SQLITE_DETACH => SQLITE_DENY,
        SQLITE_PRAGMA => {
            if arg1.is_null() {
                return SQLITE_DENY;
            }
            // SAFETY: SQLite passes NUL-terminated strings (or null) that
            // live for the duration of the call.
            let name = unsafe { std::ffi::CStr::from_ptr(arg1) }.to_bytes();
            let is = |list: &[&str]| list.iter().any(|p| p.as_bytes().eq_ignore_ascii_case(name));
            if is(INTROSPECTION) || (arg2.is_null() && is(READABLE)) {
                SQLITE_OK
            } else {
                SQLITE_DENY
            }
        }
        _ => SQLITE_OK,
    }
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

/// SQLite values are measured once decoded: asking for a blob's bytes
/// converts the value in place.
pub(crate) fn raw_size(_: &SqliteRow, _: usize) -> Option<u64> {
    None
}
