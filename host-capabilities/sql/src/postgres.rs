use sqlx::postgres::{PgArguments, PgRow, PgTypeInfo, Postgres};
use sqlx::query::Query;
use sqlx::{Row, TypeInfo, ValueRef};

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
