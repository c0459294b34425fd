//! What a backend's credential may do beyond the tables its grants are for.
//!
//! A read-only transaction stops writes to tables, not a superuser's
//! `COPY … TO PROGRAM`, `pg_read_file`, `SET GLOBAL`, `INTO OUTFILE` or
//! signalling other sessions. So every new connection first reads its own
//! privileges, and one that can reach the database host or other sessions is
//! refused unless the operator opted in with `allow-privileged = true`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;

/// PostgreSQL: attributes and predefined (`pg_*`) roles on the login role
/// or any role it may `SET ROLE` to, server-file and large-object functions
/// it was granted directly, and `SECURITY DEFINER` functions of superusers
/// it may call (each runs with the owner's rights).
const PG_PRIVILEGES: &str = "SELECT COALESCE(string_agg(DISTINCT p, ', ' ORDER BY p), '') FROM (
    SELECT unnest(ARRAY[
        CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
        CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
        CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
        CASE WHEN r.rolreplication THEN 'REPLICATION' END,
        CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END,
        CASE WHEN r.rolname LIKE 'pg\\_%' AND r.rolname <> 'pg_database_owner'
            THEN r.rolname::text END]) AS p
    FROM pg_roles r WHERE pg_has_role(current_user, r.oid, 'MEMBER')
    UNION ALL
    SELECT 'EXECUTE on ' || f FROM unnest(ARRAY['pg_read_file(text)',
        'pg_read_binary_file(text)', 'pg_ls_dir(text)', 'pg_stat_file(text)',
        'lo_import(text)', 'lo_export(oid, text)', 'pg_reload_conf()', 'pg_rotate_logfile()',
        'pg_file_write(text, text, boolean)']) f
    WHERE to_regprocedure(f) IS NOT NULL AND has_function_privilege(f, 'EXECUTE')
        AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
    UNION ALL
    SELECT 'SECURITY DEFINER ' || p.oid::regprocedure::text
    FROM pg_proc p JOIN pg_roles o ON o.oid = p.proowner
    WHERE p.prosecdef AND o.rolsuper AND has_function_privilege(p.oid, 'EXECUTE')
        AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)) granted
    WHERE p IS NOT NULL";

/// MySQL/MariaDB global privileges that reach the server, its files or
/// other sessions; every `… ADMIN` privilege counts too.
const MYSQL_GLOBAL: &[&str] = &[
    "ALL",
    "ALL PRIVILEGES",
    "SUPER",
    "FILE",
    "PROCESS",
    "SHUTDOWN",
    "RELOAD",
    "CREATE USER",
    "REPLICATION SLAVE",
    "REPLICATION CLIENT",
    "BINLOG MONITOR",
    "BINLOG REPLAY",
    "SLAVE MONITOR",
    "SET USER",
];

/// Privileges that a PostgreSQL credential has beyond its own data.
pub(crate) async fn postgres(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let found: String = sqlx::query_scalar(PG_PRIVILEGES).fetch_one(conn).await?;
    Ok(found
        .split(", ")
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect())
}

/// Privileges that a MySQL/MariaDB credential has beyond its own data, from
/// `SHOW GRANTS` of the user and, with each role granted to it set in turn,
/// of that role and the roles granted to it (a user may not `SHOW GRANTS
/// FOR` a role, but `SHOW GRANTS` includes the current role's).
pub(crate) async fn mysql(conn: &mut MySqlConnection) -> Result<Vec<String>, sqlx::Error> {
    let mut found = Vec::new();
    let mut roles = Vec::new();
    for line in show_grants(conn).await? {
        match mysql_grant(&line) {
            Grant::Privileges(p) => found.extend(p),
            Grant::Role(role) => roles.push(role),
        }
    }
    for role in roles.iter().take(16) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET ROLE {role}")))
            .execute(&mut *conn)
            .await?;
        for line in show_grants(conn).await? {
            if let Grant::Privileges(p) = mysql_grant(&line) {
                found.extend(p.into_iter().map(|p| format!("{p} (role {role})")));
            }
        }
    }
    if !roles.is_empty() {
        sqlx::raw_sql("SET ROLE NONE").execute(&mut *conn).await?;
    }
    found.sort();
    found.dedup();
    Ok(found)
}

async fn show_grants(conn: &mut MySqlConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SHOW GRANTS").fetch_all(conn).await
}

enum Grant {
    Privileges(Vec<String>),
    /// `GRANT `role` TO …`: the role's own grants must be read too.
    Role(String),
}

/// The risky part of one `SHOW GRANTS` line.
fn mysql_grant(line: &str) -> Grant {
    let upper = line.to_ascii_uppercase();
    let mut risky = Vec::new();
    if upper.contains("WITH GRANT OPTION") || upper.contains("WITH ADMIN OPTION") {
        risky.push("GRANT OPTION".to_string());
    }
    let Some(rest) = upper.strip_prefix("GRANT ") else {
        return Grant::Privileges(risky);
    };
    let Some(on) = rest.find(" ON ") else {
        // A role grant: `GRANT `r` TO `u`@`h``; the name in its original case.
        let role = line["GRANT ".len()..]
            .split(" TO ")
            .next()
            .unwrap_or("")
            .trim();
        return if role.is_empty() {
            Grant::Privileges(risky)
        } else {
            Grant::Role(role.to_string())
        };
    };
    let object = rest[on + 4..].split(" TO ").next().unwrap_or("").trim();
    let privileges = split_privileges(&rest[..on]);
    let global = object == "*.*";
    let system = object.starts_with("`MYSQL`.") || object.starts_with("MYSQL.");
    for p in privileges {
        if p == "USAGE" {
            continue;
        }
        if global && (MYSQL_GLOBAL.contains(&p.as_str()) || p.ends_with("ADMIN")) {
            risky.push(p);
        } else if global {
            risky.push(format!("{p} ON *.*"));
        } else if system {
            risky.push(format!("{p} ON mysql.*"));
        }
    }
    Grant::Privileges(risky)
}

/// `SELECT, INSERT (a, b), UPDATE` → `SELECT`, `INSERT`, `UPDATE`.
fn split_privileges(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in list.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => out.push(std::mem::take(&mut current)),
            _ if depth == 0 => current.push(c),
            _ => {}
        }
    }
    out.push(current);
    out.into_iter()
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect()
}

/// How long a refused credential is refused without asking the database
/// again (the operator may fix the role meanwhile).
const RECHECK_AFTER: Duration = Duration::from_secs(5);

/// The verdict on one credential of a backend, shared by its pools.
pub(crate) struct PrivilegeCheck {
    /// `sql.<id>` or `sql.<id> (read-only-url)`: what the errors name.
    pub label: String,
    allow: bool,
    /// What the credential may do, as last read (only kept when allowed).
    found: Mutex<Vec<String>>,
    refused: Mutex<Option<(String, Instant)>>,
    warned: AtomicBool,
}

impl PrivilegeCheck {
    pub fn new(label: String, allow: bool) -> Self {
        Self {
            label,
            allow,
            found: Mutex::default(),
            refused: Mutex::default(),
            warned: AtomicBool::new(false),
        }
    }

    /// Decides on a new connection whose credential has `found`.
    pub fn admit(&self, found: Vec<String>) -> Result<(), sqlx::Error> {
        if found.is_empty() {
            *self.refused.lock().unwrap() = None;
            self.found.lock().unwrap().clear();
            return Ok(());
        }
        let list = found.join(", ");
        if self.allow {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "{}: PRIVILEGED credential ({list}) serves modules because allow-privileged = true: \
                     a module can reach the database host or other sessions",
                    self.label
                );
            }
            *self.found.lock().unwrap() = found;
            return Ok(());
        }
        let msg = format!(
            "{}: the credential has {list}, which lets a module reach the database host or other \
             sessions; connect as a least-privilege role (PostgreSQL: CREATE ROLE app LOGIN \
             PASSWORD '…' and GRANT only the tables it needs; MySQL: GRANT … ON app.* only) or \
             set allow-privileged = true",
            self.label
        );
        *self.refused.lock().unwrap() = Some((msg.clone(), Instant::now()));
        Err(sqlx::Error::Configuration(msg.into()))
    }

    /// Decides on a new connection whose privileges could not be read: a
    /// credential that cannot be checked is refused like a privileged one.
    pub fn unreadable(&self, err: sqlx::Error) -> Result<(), sqlx::Error> {
        self.admit(vec![format!("privileges the host could not read ({err})")])
    }

    /// The refusal, if this credential was refused recently.
    pub fn recent_refusal(&self) -> Option<String> {
        let refused = self.refused.lock().unwrap();
        refused
            .as_ref()
            .filter(|(_, at)| at.elapsed() < RECHECK_AFTER)
            .map(|(m, _)| m.clone())
    }

    /// The refusal, however old.
    pub fn refusal(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap()
            .as_ref()
            .map(|(m, _)| m.clone())
    }

    /// What an allowed privileged credential may do (for `/v1/backends`).
    pub fn privileged(&self) -> Vec<String> {
        self.found.lock().unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn privileges(line: &str) -> Vec<String> {
        match mysql_grant(line) {
            Grant::Privileges(p) => p,
            Grant::Role(r) => vec![format!("role {r}")],
        }
    }

    #[test]
    fn mysql_grants_are_read_for_what_reaches_the_server() {
        assert_eq!(
            privileges("GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"),
            ["GRANT OPTION", "ALL PRIVILEGES"]
        );
        assert_eq!(
            privileges("GRANT FILE, PROCESS, SELECT ON *.* TO `u`@`%`"),
            ["FILE", "PROCESS", "SELECT ON *.*"]
        );
        assert_eq!(
            privileges("GRANT CONNECTION ADMIN ON *.* TO `u`@`%`"),
            ["CONNECTION ADMIN"]
        );
        assert!(privileges("GRANT USAGE ON *.* TO `u`@`%`").is_empty());
        assert!(
            privileges("GRANT SELECT, INSERT (a, b), UPDATE ON `test`.* TO `u`@`%`").is_empty()
        );
        assert_eq!(
            privileges("GRANT SELECT ON `mysql`.`user` TO `u`@`%`"),
            ["SELECT ON mysql.*"]
        );
        assert_eq!(
            privileges("GRANT `ops` TO `u`@`%`"),
            ["role `ops`"],
            "a role's own grants are read too"
        );
    }

    #[test]
    fn a_refused_credential_names_what_it_has() {
        let check = PrivilegeCheck::new("sql.db".into(), false);
        let err = check.admit(vec!["SUPERUSER".into()]).unwrap_err();
        assert!(
            err.to_string()
                .contains("sql.db: the credential has SUPERUSER")
        );
        assert!(check.recent_refusal().is_some());
        check.admit(vec![]).unwrap();
        assert!(check.recent_refusal().is_none());
        let allowed = PrivilegeCheck::new("sql.db".into(), true);
        allowed.admit(vec!["FILE".into()]).unwrap();
        assert_eq!(allowed.privileged(), ["FILE"]);
    }
}
