//! The values that cross the guest boundary, independent of any database.

/// Mirrors `warden:host/sql.value`.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Boolean(bool),
    Int32(i32),
    Int64(i64),
    Float64(f64),
    Text(String),
    Bytes(Vec<u8>),
    Timestamp(String),
    Json(String),
    Uuid(String),
    Decimal(String),
}

impl SqlValue {
    /// Bytes this value costs against the result byte cap.
    pub fn size(&self) -> u64 {
        match self {
            SqlValue::Text(s)
            | SqlValue::Timestamp(s)
            | SqlValue::Json(s)
            | SqlValue::Uuid(s)
            | SqlValue::Decimal(s) => s.len() as u64,
            SqlValue::Bytes(b) => b.len() as u64,
            _ => 8,
        }
    }

    pub(crate) fn timestamp(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| format!("timestamp {s:?} is not RFC 3339: {e}"))
    }

    pub(crate) fn uuid(s: &str) -> Result<uuid::Uuid, String> {
        uuid::Uuid::parse_str(s).map_err(|e| format!("uuid {s:?}: {e}"))
    }

    pub(crate) fn decimal(s: &str) -> Result<rust_decimal::Decimal, String> {
        s.parse().map_err(|e| format!("decimal {s:?}: {e}"))
    }

    pub(crate) fn json(s: &str) -> Result<serde_json::Value, String> {
        serde_json::from_str(s).map_err(|e| format!("json: {e}"))
    }
}

/// Mirrors `warden:host/sql.row-set`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
}
