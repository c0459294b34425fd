//! Hostile SQL through ordinary grants, checked by its effect on the
//! database (files, programs, settings, other sessions, statements still
//! running), not only by the error the guest saw.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use warden_capability::AuditKind;
use warden_sql::SqlBackendConfig;
use warden_tests::sql::{Backend, Fixture, control_url, failed, least_privilege};
use warden_tests::{admin_mysql, admin_postgres};

static N: AtomicU32 = AtomicU32::new(0);

/// A name no other test uses: put in a statement, it finds the statement in
/// the server's session list.
fn marker() -> String {
    format!(
        "warden_mark_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Statements whose text has `marker` that the server is still running.
async fn running(db: Backend, marker: &str) -> i64 {
    match db {
        Backend::Postgres => sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE state = 'active' \
             AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
        )))
        .fetch_one(&mut admin_postgres().await)
        .await
        .unwrap(),
        Backend::MariaDb => sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE INFO LIKE '%{marker}%' AND ID <> CONNECTION_ID()"
        )))
        .fetch_one(&mut admin_mysql().await)
        .await
        .unwrap(),
        Backend::Sqlite => 0,
    }
}

/// The guest's call returned; one second later the server must not be
/// running its statement any more.
async fn assert_stopped(db: Backend, marker: &str) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        running(db, marker).await,
        0,
        "{db:?}: the statement {marker} still runs after its call ended"
    );
}

fn sleep_sql(db: Backend, secs: u32, marker: &str) -> String {
    match db {
        Backend::Postgres => format!("SELECT pg_sleep({secs})::text AS {marker}"),
        _ => format!("SELECT SLEEP({secs}) AS {marker}"),
    }
}

/// PL/pgSQL that catches query_canceled and goes on sleeping.
fn catching_loop(marker: &str) -> String {
    format!(
        "DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(30); \
         EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$ /* {marker} */"
    )
}

const SERVERS: [Backend; 2] = [Backend::Postgres, Backend::MariaDb];

#[tokio::test]
async fn privileged_credentials_are_refused_naming_the_privilege() {
    for (db, url, privilege) in [
        (
            Backend::Postgres,
            "postgres://postgres@127.0.0.1:5432/test",
            "SUPERUSER",
        ),
        (
            Backend::MariaDb,
            "mysql://root@127.0.0.1:3306/test",
            "ALL PRIVILEGES",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture::with_config(db, dir, SqlBackendConfig::new(url));
        let err = f.backends.verify().await.unwrap_err();
        assert!(
            err.contains(privilege) && err.contains("allow-privileged"),
            "{db:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        // No module gets to send SQL through it either.
        let msg = failed(
            f.probe("", "op = \"query\"\nsql = \"SELECT 1 AS one\"")
                .await,
            "privileged backend",
        );
        assert!(
            msg.starts_with("unavailable: the host refuses this credential")
                && msg.contains(privilege),
            "{db:?}: {msg}"
        );
        assert!(f.backends.status()[0].refused.is_some());

        // The operator opted in: it serves, and says what it may do.
        let dir = tempfile::tempdir().unwrap();
        let config = SqlBackendConfig {
            allow_privileged: true,
            ..SqlBackendConfig::new(url)
        };
        let f = Fixture::with_config(db, dir, config);
        f.backends.verify().await.unwrap();
        let status = &f.backends.status()[0];
        assert!(
            status.privileged.iter().any(|p| p == privilege),
            "{status:?}"
        );
        f.probe("", "op = \"query\"\nsql = \"SELECT 1 AS one\"")
            .await
            .unwrap();

        // The roles of tests/services.sh pass.
        Fixture::new(db).backends.verify().await.unwrap();
    }
}

#[tokio::test]
async fn membership_in_a_file_reading_role_is_refused_too() {
    let mut admin = admin_postgres().await;
    sqlx::raw_sql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'warden_files') \
         THEN CREATE ROLE warden_files LOGIN; END IF; END $$; \
         GRANT pg_read_server_files TO warden_files",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::with_config(
        Backend::Postgres,
        dir,
        SqlBackendConfig::new(least_privilege(Backend::Postgres, "warden_files", "")),
    );
    let err = f.backends.verify().await.unwrap_err();
    assert!(err.contains("pg_read_server_files"), "{err}");
}

#[tokio::test]
async fn grants_cannot_reach_the_database_hosts_files_programs_or_settings() {
    let f = Fixture::new(Backend::Postgres);
    let file = std::env::temp_dir().join(format!("{}.pwned", marker()));
    let path = file.display();
    let attempts = [
        (
            "execute",
            format!("COPY (SELECT 1) TO PROGRAM 'touch {path}'"),
        ),
        ("execute", format!("COPY (SELECT 'x') TO '{path}'")),
        ("query", "SELECT pg_read_file('/etc/hostname') AS f".into()),
        ("query", "SELECT pg_ls_dir('.') AS f".into()),
        (
            "query",
            "SELECT lo_import('/etc/hostname')::text AS f".into(),
        ),
        ("query", "SELECT pg_reload_conf()::text AS f".into()),
    ];
    for access in ["read-only", "read-write"] {
        for (op, sql) in &attempts {
            let (out, audit) = f
                .probe_audited(
                    &format!("access = \"{access}\""),
                    &format!("op = \"{op}\"\nsql = '''{sql}'''"),
                )
                .await;
            let msg = failed(out, sql);
            assert!(msg.starts_with("denied: "), "{access}: {sql}: {msg}");
            assert!(
                audit.iter().any(|e| e.kind == AuditKind::Denied
                    && e.module == "sql-probe"
                    && e.detail.contains("sql grant \"main\"")),
                "{sql}: no audit event naming the grant: {audit:?}"
            );
            assert!(!file.exists(), "{access}: {sql} wrote {path}");
        }
    }
}

#[tokio::test]
async fn mariadb_grants_cannot_reach_files_or_global_settings() {
    let f = Fixture::new(Backend::MariaDb);
    let file = std::env::temp_dir().join(format!("{}.pwned", marker()));
    let path = file.display();
    let before: i64 = sqlx::query_scalar("SELECT CAST(@@GLOBAL.max_connections AS SIGNED)")
        .fetch_one(&mut admin_mysql().await)
        .await
        .unwrap();
    for access in ["read-only", "read-write"] {
        for (op, sql) in [
            (
                "execute",
                format!("SET GLOBAL max_connections = {}", before + 7),
            ),
            ("execute", "SET GLOBAL general_log = 1".to_string()),
            ("query", format!("SELECT 1 AS x INTO OUTFILE '{path}'")),
            ("execute", "SHUTDOWN".to_string()),
        ] {
            let out = f
                .probe(
                    &format!("access = \"{access}\""),
                    &format!("op = \"{op}\"\nsql = '''{sql}'''"),
                )
                .await;
            let msg = failed(out, &sql);
            assert!(msg.starts_with("denied: "), "{access}: {sql}: {msg}");
            assert!(!file.exists(), "{sql} wrote {path}");
        }
        // LOAD_FILE does not fail without FILE: it reads nothing.
        let read = f
            .probe(
                &format!("access = \"{access}\""),
                "op = \"query\"\nsql = '''SELECT LOAD_FILE('/etc/hostname') AS f'''",
            )
            .await
            .unwrap();
        assert_eq!(read, "f\nnull\n");
    }
    let after: i64 = sqlx::query_scalar("SELECT CAST(@@GLOBAL.max_connections AS SIGNED)")
        .fetch_one(&mut admin_mysql().await)
        .await
        .unwrap();
    assert_eq!(after, before, "SET GLOBAL reached the server");
    // The server is still up and serving.
    Fixture::new(Backend::MariaDb)
        .probe("", "op = \"query\"\nsql = \"SELECT 1 AS one\"")
        .await
        .unwrap();
}

#[tokio::test]
async fn modules_on_their_own_credentials_cannot_end_or_watch_each_others_sessions() {
    for db in SERVERS {
        let mark = marker();
        let dir = tempfile::tempdir().unwrap();
        let victim = Fixture::with_config(
            db,
            dir,
            SqlBackendConfig::new(least_privilege(db, "warden_tenant_b", "")),
        );
        let attacker = Fixture::new(db);
        let victim_config = format!("op = \"query\"\nsql = '''{}'''", sleep_sql(db, 2, &mark));
        let victim_call = victim.probe("statement-timeout = \"10s\"", &victim_config);
        let attack = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(
                running(db, &mark).await,
                1,
                "{db:?}: the victim is not running"
            );
            let (kill, watch) = match db {
                Backend::Postgres => (
                    "SELECT COUNT(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
                     WHERE usename = 'warden_tenant_b'"
                        .to_string(),
                    format!(
                        "SELECT COUNT(*) AS n FROM pg_stat_activity \
                         WHERE query LIKE '%{mark}%' AND pid <> pg_backend_pid()"
                    ),
                ),
                _ => {
                    let id: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST \
                         WHERE INFO LIKE '%{mark}%' AND ID <> CONNECTION_ID()"
                    )))
                    .fetch_one(&mut admin_mysql().await)
                    .await
                    .unwrap();
                    (
                        format!("KILL {id}"),
                        format!(
                            "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST \
                             WHERE INFO LIKE '%{mark}%' AND ID <> CONNECTION_ID()"
                        ),
                    )
                }
            };
            let op = if db == Backend::Postgres {
                "query"
            } else {
                "execute"
            };
            let msg = failed(
                attacker.rw(op, &kill, "[]").await,
                "ending another tenant's session",
            );
            assert!(msg.starts_with("denied: "), "{db:?}: {msg}");
            let seen = attacker.rw("query", &watch, "[]").await.unwrap();
            assert!(
                seen.ends_with(":0\n"),
                "{db:?}: saw the other tenant's query: {seen}"
            );
        };
        let (victim_result, ()) = tokio::join!(victim_call, attack);
        let out = victim_result.unwrap_or_else(|e| panic!("{db:?}: the victim's call failed: {e}"));
        assert!(out.starts_with(&mark), "{db:?}: {out}");
    }
}

#[tokio::test]
async fn modules_sharing_a_credential_are_reported() {
    let configs = std::collections::BTreeMap::from([(
        "db".to_string(),
        SqlBackendConfig {
            read_only_url: Some(least_privilege(Backend::Postgres, "warden_ro", "")),
            ..SqlBackendConfig::new(least_privilege(Backend::Postgres, "warden_rw", ""))
        },
    )]);
    let backends = warden_sql::SqlBackends::new(&configs).unwrap();
    let uses = [
        ("orders".to_string(), "db".to_string(), false),
        ("billing".to_string(), "db".to_string(), false),
        ("reports".to_string(), "db".to_string(), true),
    ];
    let notices = backends.shared_credentials(&uses);
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].starts_with("sql.db: modules billing, orders share one database credential"),
        "{notices:?}"
    );
}

#[tokio::test]
async fn the_guest_cannot_lift_its_statement_timeout() {
    for db in SERVERS {
        let f = Fixture::new(db);
        let lifts: Vec<(&str, Vec<String>)> = match db {
            Backend::Postgres => vec![
                ("read-only", vec!["SET statement_timeout = 0".into()]),
                (
                    "read-only",
                    vec!["SELECT set_config('statement_timeout', '0', true) AS s".into()],
                ),
                // Ends the transaction the host's SET LOCAL lived in.
                ("read-write", vec!["COMMIT AND CHAIN".into()]),
            ],
            _ => vec![
                (
                    "read-only",
                    vec!["SET SESSION max_statement_time = 0".into()],
                ),
                (
                    "read-write",
                    vec!["SET SESSION max_statement_time = 0".into()],
                ),
            ],
        };
        for (access, lift) in lifts {
            let mark = marker();
            let mut steps: Vec<serde_json::Value> =
                lift.iter().map(|s| serde_json::json!([s, []])).collect();
            steps.push(serde_json::json!([sleep_sql(db, 30, &mark), []]));
            let out = f
                .probe(
                    &format!("access = \"{access}\"\nstatement-timeout = \"300ms\""),
                    &format!(
                        "op = \"tx\"\nsteps = '''{}'''",
                        serde_json::Value::Array(steps)
                    ),
                )
                .await;
            let msg = failed(out, "a lifted timeout");
            assert!(
                msg.contains("timeout: statement-timeout"),
                "{db:?} {lift:?}: {msg}"
            );
            assert_stopped(db, &mark).await;
        }
        if db == Backend::MariaDb {
            // One statement that lifts its own limit.
            let mark = marker();
            let sql = format!(
                "SET STATEMENT max_statement_time = 0 FOR {}",
                sleep_sql(db, 30, &mark)
            );
            let out = f
                .probe(
                    "statement-timeout = \"300ms\"",
                    &format!("op = \"query\"\nsql = '''{sql}'''"),
                )
                .await;
            let msg = failed(out, &sql);
            assert!(msg.starts_with("timeout: statement-timeout"), "{msg}");
            assert_stopped(db, &mark).await;
        }
    }
}

#[tokio::test]
async fn the_module_timeout_stops_the_statement_on_the_server() {
    for db in SERVERS {
        let f = Fixture::new(db);
        let mark = marker();
        let (out, audit) = f
            .probe_limited(
                "timeout = \"1s\"",
                "statement-timeout = \"60s\"",
                &format!("op = \"query\"\nsql = '''{}'''", sleep_sql(db, 60, &mark)),
            )
            .await;
        assert!(out.is_err(), "{db:?}: {out:?}");
        assert!(
            audit.iter().any(|e| e.kind == AuditKind::LimitExceeded),
            "{db:?}: no limit breach audited: {audit:?}"
        );
        assert_stopped(db, &mark).await;
    }
}

#[tokio::test]
async fn a_cancel_the_guest_catches_ends_its_session() {
    let f = Fixture::new(Backend::Postgres);
    let mark = marker();
    // PL/pgSQL can catch query_canceled and go on: the host then ends the
    // session instead.
    let sql = catching_loop(&mark);
    let out = f
        .probe(
            "statement-timeout = \"300ms\"",
            &format!("op = \"execute\"\nsql = '''{sql}'''"),
        )
        .await;
    let msg = failed(out, "a caught cancel");
    assert!(msg.starts_with("timeout: statement-timeout"), "{msg}");
    assert_stopped(Backend::Postgres, &mark).await;
    // The pool still serves.
    f.probe("", "op = \"query\"\nsql = \"SELECT 1 AS one\"")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_guest_ending_its_roles_sessions_cannot_stop_the_host_stopping_it() {
    // It turns off the server's check for a vanished client, ends every
    // other session of its own role over and over (the host's control
    // sessions would be among them without control-url), and catches its
    // own cancels. On a role of its own: it ends every session of it.
    let f = Fixture::with_config(
        Backend::Postgres,
        tempfile::tempdir().unwrap(),
        SqlBackendConfig {
            control_url: Some(control_url(Backend::Postgres)),
            ..SqlBackendConfig::new(least_privilege(Backend::Postgres, "warden_tenant_b", ""))
        },
    );
    let mark = marker();
    let sql = format!(
        "DO $$ BEGIN PERFORM set_config('client_connection_check_interval', '0', false); \
         LOOP BEGIN PERFORM pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE usename = current_user AND pid <> pg_backend_pid(); PERFORM pg_sleep(0.005); \
         EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$ /* {mark} */"
    );
    for access in ["read-only", "read-write"] {
        let out = f
            .probe(
                &format!("access = \"{access}\"\nstatement-timeout = \"300ms\""),
                &format!("op = \"execute\"\nsql = '''{sql}'''"),
            )
            .await;
        let msg = failed(out, "a guest ending its role's sessions");
        assert!(
            msg.starts_with("timeout: statement-timeout"),
            "{access}: {msg}"
        );
        assert_stopped(Backend::Postgres, &mark).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_quota_holds_while_timed_out_statements_are_stopped() {
    for db in SERVERS {
        let f = Fixture::new(db);
        let mark = marker();
        // On PostgreSQL a statement that ignores cancels: its session lives
        // on until the host ends it, and the quota slot must stay taken.
        let (op, sql) = match db {
            Backend::Postgres => ("execute", catching_loop(&mark)),
            _ => ("query", sleep_sql(db, 60, &mark)),
        };
        let (module, _) = f.load_probe(
            "timeout = \"500ms\"",
            "max-connections = 1\nstatement-timeout = \"60s\"",
            &format!("op = \"{op}\"\nsql = '''{sql}'''"),
        );
        let most = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let sampling = {
            let (most, mark) = (most.clone(), mark.clone());
            tokio::spawn(async move {
                loop {
                    let n = running(db, &mark).await;
                    most.fetch_max(n, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        for _ in 0..4 {
            assert!(module.run_task().await.is_err());
        }
        sampling.abort();
        assert!(
            most.load(Ordering::Relaxed) <= 1,
            "{db:?}: {} statements ran at once under max-connections = 1",
            most.load(Ordering::Relaxed)
        );
        assert_stopped(db, &mark).await;
    }
}

#[tokio::test]
async fn backend_credentials_must_fit_the_backend() {
    let refused = |config: SqlBackendConfig| {
        let configs = std::collections::BTreeMap::from([("db".to_string(), config)]);
        warden_sql::SqlBackends::new(&configs)
            .err()
            .expect("refused")
    };
    let err = refused(SqlBackendConfig {
        read_only_url: Some(least_privilege(Backend::MariaDb, "warden_ro", "")),
        ..SqlBackendConfig::new(least_privilege(Backend::Postgres, "warden_rw", ""))
    });
    assert!(
        err.starts_with("sql.db: read-only-url must be a postgres:// URL"),
        "{err}"
    );
    let err = refused(SqlBackendConfig {
        control_url: Some("sqlite://ctl.db".into()),
        ..SqlBackendConfig::new("sqlite://x.db")
    });
    assert!(
        err.contains("control-url are for PostgreSQL and MySQL"),
        "{err}"
    );
}
