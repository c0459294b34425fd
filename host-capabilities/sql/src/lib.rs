//! SQL capability: `[sql.<id>]` backends of the host config become shared
//! sqlx pools (PostgreSQL, MySQL/MariaDB, SQLite); `[grants.sql.<name>]` of a
//! manifest decides which a module may `open`, read-only or read-write, with
//! a statement timeout, a row cap and a per-module connection quota.

mod capability;
mod config;
mod conn;
mod error;
mod grant;
mod health;
mod host;
mod lease;
mod mysql;
mod pool;
mod postgres;
mod privileges;
mod sqlite;
mod value;

pub use capability::Sql;
pub use config::SqlBackendConfig;
pub use grant::{SqlAccess, SqlGrant};
pub use host::{SqlCtx, SqlHost, SqlModule};
pub use pool::{SqlBackend, SqlBackendStatus, SqlBackends, SqlKind};
pub use value::{RowSet, SqlValue};
