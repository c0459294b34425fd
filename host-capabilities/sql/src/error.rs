use warden_capability::CapabilityError;

/// MySQL/MariaDB error numbers of refused privileges: database, user,
/// thread ownership (`KILL`), table, column, SUPER/FILE/PROCESS-style,
/// routine.
const MYSQL_ACCESS_DENIED: &[u16] = &[1044, 1045, 1095, 1142, 1143, 1227, 1370];

/// Maps a driver error to the guest-facing error, by SQLSTATE / vendor code
/// so that the database's own refusals read as what they are.
pub(crate) fn from_sqlx(err: sqlx::Error) -> CapabilityError {
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let msg = db.message().to_string();
            let mysql_number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|e| e.number());
            // The database refused the credential (no superuser, no FILE, not
            // the owner of that session, …): a denial like the host's own.
            if code == "42501" || mysql_number.is_some_and(|n| MYSQL_ACCESS_DENIED.contains(&n)) {
                return CapabilityError::Denied(format!(
                    "the database does not allow this credential to: {msg}"
                ));
            }
            match code.as_str() {
                // PostgreSQL read_only_sql_transaction; MySQL/MariaDB read-only
                // transaction; SQLite SQLITE_READONLY (8) and its extended codes.
                "25006" | "1792" | "1207" | "8" | "264" | "520" | "776" | "1032" | "1288" => {
                    CapabilityError::Denied(format!("read-only grant: {msg}"))
                }
                // PostgreSQL query_canceled (statement_timeout); MariaDB
                // max_statement_time (70100); SQLite SQLITE_INTERRUPT (9).
                "57014" | "70100" | "9" => {
                    CapabilityError::Timeout(format!("statement-timeout: {msg}"))
                }
                // SQLite SQLITE_AUTH: the host's authorizer (see `sqlite::harden`).
                "23" => CapabilityError::Denied(format!(
                    "the host does not allow this statement on SQLite \
                     (ATTACH, or a PRAGMA that changes the shared connection): {msg}"
                )),
                // MySQL's max_execution_time error carries the generic HY000.
                _ if msg.contains("max_execution_time") => {
                    CapabilityError::Timeout(format!("statement-timeout: {msg}"))
                }
                _ => CapabilityError::Backend(if code.is_empty() {
                    msg
                } else {
                    format!("{code}: {msg}")
                }),
            }
        }
        sqlx::Error::PoolTimedOut => {
            CapabilityError::Unavailable("no database connection became free in time".into())
        }
        sqlx::Error::PoolClosed => {
            CapabilityError::Unavailable("the database pool is closed".into())
        }
        sqlx::Error::Io(e) => CapabilityError::Unavailable(format!("database unreachable: {e}")),
        sqlx::Error::Tls(e) => CapabilityError::Unavailable(format!("database TLS: {e}")),
        // The driver's message limit (see `Conn::begin`): a row, an error
        // or a notice larger than what the guest may still receive.
        sqlx::Error::Protocol(e) if e.starts_with("message too large") => {
            CapabilityError::LimitExceeded(format!("max-output: {e}"))
        }
        sqlx::Error::Protocol(e) => CapabilityError::Unavailable(format!("database protocol: {e}")),
        sqlx::Error::ColumnDecode { index, source } => {
            CapabilityError::Invalid(format!("column {index}: {source}"))
        }
        other => CapabilityError::Backend(other.to_string()),
    }
}
