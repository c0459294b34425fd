use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow, PgTypeInfo, Postgres};
use sqlx::query::Query;
use sqlx::{Connection, Row, TypeInfo, ValueRef};

use crate::value::SqlValue;

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// A NULL whose type the server infers from the statement (OID 0), so it
/// fits any column.
struct UntypedNull;

impl sqlx::Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(
        &self,
        _: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

pub(crate) fn bind<'q>(q: PgQuery<'q>, v: &SqlValue) -> Result<PgQuery<'q>, String> {
    Ok(match v {
        SqlValue::Null => q.bind(UntypedNull),
        SqlValue::Boolean(b) => q.bind(*b),
        SqlValue::Int32(n) => q.bind(*n),
        SqlValue::Int64(n) => q.bind(*n),
        SqlValue::Float64(f) => q.bind(*f),
        SqlValue::Text(s) => q.bind(s.clone()),
        SqlValue::Bytes(b) => q.bind(b.clone()),
        SqlValue::Timestamp(s) => q.bind(SqlValue::timestamp(s)?),
        SqlValue::Json(s) => q.bind(SqlValue::json(s)?),
        SqlValue::Uuid(s) => q.bind(SqlValue::uuid(s)?),
        SqlValue::Decimal(s) => q.bind(SqlValue::decimal(s)?),
    })
}

pub(crate) fn decode(row: &PgRow, i: usize) -> Result<SqlValue, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    let ty = raw.type_info().name().to_string();
    Ok(match ty.as_str() {
        "BOOL" => SqlValue::Boolean(row.try_get(i)?),
        "INT2" => SqlValue::Int32(row.try_get::<i16, _>(i)?.into()),
        "INT4" => SqlValue::Int32(row.try_get(i)?),
        "INT8" => SqlValue::Int64(row.try_get(i)?),
        "FLOAT4" => SqlValue::Float64(row.try_get::<f32, _>(i)?.into()),
        "FLOAT8" => SqlValue::Float64(row.try_get(i)?),
        "NUMERIC" => SqlValue::Decimal(row.try_get::<rust_decimal::Decimal, _>(i)?.to_string()),
        "BYTEA" => SqlValue::Bytes(row.try_get(i)?),
        "TIMESTAMPTZ" => SqlValue::Timestamp(
            row.try_get::<chrono::DateTime<chrono::Utc>, _>(i)?
                .to_rfc3339(),
        ),
        "TIMESTAMP" => SqlValue::Timestamp(
            row.try_get::<chrono::NaiveDateTime, _>(i)?
                .and_utc()
                .to_rfc3339(),
        ),
        "DATE" => SqlValue::Text(row.try_get::<chrono::NaiveDate, _>(i)?.to_string()),
        "JSON" | "JSONB" => SqlValue::Json(row.try_get::<serde_json::Value, _>(i)?.to_string()),
        "UUID" => SqlValue::Uuid(row.try_get::<uuid::Uuid, _>(i)?.to_string()),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" => {
            SqlValue::Text(row.try_get(i)?)
        }
        other => return Err(unsupported(i, other)),
    })
}

pub(crate) fn unsupported(i: usize, ty: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: i.to_string(),
        source: format!("column type {ty} is not supported; cast it to text in the query").into(),
    }
}

/// Session state a guest can leave behind that `ROLLBACK` does not undo.
/// Read-write calls commit, so they reset everything a SET can change
/// (`RESET ALL` skips the role and the session user).
const RESET: &str =
    "RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; DISCARD TEMP; CLOSE ALL; UNLISTEN *";

/// Counts what PREPARE and DEALLOCATE changed: neither is undone by
/// `ROLLBACK`, and a guest that swapped the driver's cached statement would
/// have the next module on this connection run the guest's SQL.
const PREPARED: &str = "SELECT pg_advisory_unlock_all(); \
    SELECT COUNT(*) FILTER (WHERE from_sql), COUNT(*) FILTER (WHERE NOT from_sql) FROM pg_prepared_statements";

/// Ends the wrapping transaction and cleans the session in one round trip;
/// a connection whose prepared statements a guest changed is closed.
pub(crate) async fn end(
    c: &mut PoolConnection<Postgres>,
    commit: bool,
    read_only: bool,
) -> Result<(), sqlx::Error> {
    let end = if commit { "COMMIT" } else { "ROLLBACK" };
    let sql = if read_only {
        format!("{end}; {PREPARED}")
    } else {
        format!("{end}; {RESET}; {PREPARED}")
    };
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut **c)
        .await?;
    let counts = rows
        .last()
        .map(|r| Ok::<_, sqlx::Error>((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?)))
        .transpose()?;
    let driver = c.cached_statements_size() as i64;
    if counts != Some((0, driver)) {
        tracing::warn!(
            ?counts,
            driver,
            "a guest changed the prepared statements of a pooled PostgreSQL connection; closing it"
        );
        c.close_on_drop();
    }
    Ok(())
}

/// Bytes of column `i` as the server sent it (what the output cap counts).
pub(crate) fn raw_size(row: &PgRow, i: usize) -> Option<u64> {
    let raw = row.try_get_raw(i).ok()?;
    Some(raw.as_bytes().map_or(8, |b| b.len().max(8) as u64))
}
