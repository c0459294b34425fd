//! Outage detection for SQL backends (see [`warden_capability::Health`]):
//! sqlx keeps retrying a refused connection until the acquire deadline, so
//! a slow or failed acquisition probes the server's port, and calls fail at
//! once while it is closed.

use std::str::FromStr;
use std::time::Duration;

use warden_capability::Health;

/// An acquisition slower than this makes the host check the server is up.
pub(crate) const SLOW_ACQUIRE: Duration = Duration::from_millis(100);

/// The health gate of backend `id` connecting to `url`.
pub(crate) fn gate(id: &str, url: &str) -> Health {
    Health::new(format!("sql backend {id}"), "database", address(url))
}

/// A gate of its own for `read-only-url` when it reaches another server
/// than `url` (a replica): each may be down while the other is up.
pub(crate) fn replica_gate(id: &str, url: &str, read_only_url: &str) -> Option<Health> {
    let replica = address(read_only_url)?;
    (address(url).as_ref() != Some(&replica)).then(|| {
        Health::new(
            format!("sql backend {id} (read-only-url)"),
            "database",
            Some(replica),
        )
    })
}

/// The TCP address a PostgreSQL or MySQL URL connects to.
fn address(url: &str) -> Option<(String, u16)> {
    let (host, port, socket) = if url.starts_with("postgres") {
        let o = sqlx::postgres::PgConnectOptions::from_str(url).ok()?;
        (
            o.get_host().to_string(),
            o.get_port(),
            o.get_socket().is_some(),
        )
    } else if url.starts_with("mysql") || url.starts_with("mariadb") {
        let o = sqlx::mysql::MySqlConnectOptions::from_str(url).ok()?;
        (
            o.get_host().to_string(),
            o.get_port(),
            o.get_socket().is_some(),
        )
    } else {
        return None;
    };
    (!socket && !host.starts_with('/')).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::address;

    #[test]
    fn tcp_addresses_are_probed_and_sockets_are_not() {
        assert_eq!(
            address("postgres://u@db.example:6432/app"),
            Some(("db.example".into(), 6432))
        );
        assert_eq!(
            address("mysql://u@127.0.0.1/test"),
            Some(("127.0.0.1".into(), 3306))
        );
        assert_eq!(address("postgres://u@%2Fvar%2Frun%2Fpostgresql/app"), None);
        assert_eq!(address("sqlite://x.db"), None);
    }

    #[test]
    fn a_replica_on_another_server_gets_its_own_gate() {
        let main = "postgres://rw@db1/app";
        assert!(super::replica_gate("m", main, "postgres://ro@db1/app").is_none());
        assert!(super::replica_gate("m", main, "postgres://ro@db2/app").is_some());
    }
}
