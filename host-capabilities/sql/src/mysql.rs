use sqlx::mysql::{MySql, MySqlArguments, MySqlRow};
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Row, TypeInfo, ValueRef};

use crate::value::SqlValue;

type MyQuery<'q> = Query<'q, MySql, MySqlArguments>;

pub(crate) fn bind<'q>(q: MyQuery<'q>, v: &SqlValue) -> Result<MyQuery<'q>, String> {
    Ok(match v {
        SqlValue::Null => q.bind(None::<String>),
        SqlValue::Boolean(b) => q.bind(*b),
        SqlValue::Int32(n) => q.bind(*n),
        SqlValue::Int64(n) => q.bind(*n),
        SqlValue::Float64(f) => q.bind(*f),
        SqlValue::Text(s) => q.bind(s.clone()),
        SqlValue::Bytes(b) => q.bind(b.clone()),
        SqlValue::Timestamp(s) => q.bind(SqlValue::timestamp(s)?.naive_utc()),
        SqlValue::Json(s) => q.bind(SqlValue::json(s)?.to_string()),
        SqlValue::Uuid(s) => q.bind(SqlValue::uuid(s)?.hyphenated().to_string()),
        SqlValue::Decimal(s) => q.bind(SqlValue::decimal(s)?),
    })
}

pub(crate) fn decode(row: &MySqlRow, i: usize) -> Result<SqlValue, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    let ty = raw.type_info().name().to_string();
    Ok(match ty.as_str() {
        "BOOLEAN" => SqlValue::Boolean(row.try_get(i)?),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "YEAR" => SqlValue::Int32(row.try_get(i)?),
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" => {
            SqlValue::Int32(row.try_get::<u32, _>(i)? as i32)
        }
        "BIGINT" => SqlValue::Int64(row.try_get(i)?),
        "INT UNSIGNED" => SqlValue::Int64(row.try_get::<u32, _>(i)?.into()),
        "BIGINT UNSIGNED" => match i64::try_from(row.try_get::<u64, _>(i)?) {
            Ok(n) => SqlValue::Int64(n),
            Err(_) => SqlValue::Decimal(row.try_get::<u64, _>(i)?.to_string()),
        },
        "FLOAT" => SqlValue::Float64(row.try_get::<f32, _>(i)?.into()),
        "DOUBLE" => SqlValue::Float64(row.try_get(i)?),
        "DECIMAL" => SqlValue::Decimal(row.try_get::<rust_decimal::Decimal, _>(i)?.to_string()),
        "DATETIME" | "TIMESTAMP" => SqlValue::Timestamp(
            row.try_get::<chrono::NaiveDateTime, _>(i)?
                .and_utc()
                .to_rfc3339(),
        ),
        "DATE" => SqlValue::Text(row.try_get::<chrono::NaiveDate, _>(i)?.to_string()),
        "JSON" => SqlValue::Json(row.try_get::<serde_json::Value, _>(i)?.to_string()),
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            SqlValue::Bytes(row.try_get(i)?)
        }
        "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET"
        | "TIME" => SqlValue::Text(row.try_get(i)?),
        other => return Err(crate::postgres::unsupported(i, other)),
    })
}

/// Bytes of column `i` as the server sent it (what the output cap counts).
pub(crate) fn raw_size(row: &MySqlRow, i: usize) -> Option<u64> {
    Some(
        row.try_get_unchecked::<Option<&[u8]>, _>(i)
            .ok()
            .flatten()
            .map_or(8, |b| b.len().max(8) as u64),
    )
}

/// The session settings sqlx makes at connect (UTC timestamps, `||` as
/// concatenation, utf8mb4), made again after each session reset. Setting
/// them twice changes nothing.
pub(crate) const SESSION: &str = "SET sql_mode = (SELECT CONCAT(@@sql_mode, \
    ',PIPES_AS_CONCAT,NO_ENGINE_SUBSTITUTION')), time_zone = '+00:00', NAMES utf8mb4";

/// Commits if asked, then has the server reset the session: it rolls back
/// what is left and drops every trace of the guest (user and session
/// variables, temporary tables, `GET_LOCK` locks, prepared statements, the
/// read-only session flag).
pub(crate) async fn end(c: &mut PoolConnection<MySql>, commit: bool) -> Result<(), sqlx::Error> {
    if commit {
        sqlx::raw_sql("COMMIT").execute(&mut **c).await?;
    }
    c.reset_session().await
}
