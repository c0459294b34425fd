//! The SQL capability against the real PostgreSQL, MariaDB and SQLite: the
//! same guest scenarios on each backend, and every attempt to get around a
//! grant refused by the database or the host.

use std::collections::BTreeMap;

use warden_capability::AuditKind;
use warden_runtime::RunError;
use warden_sql::{SqlBackendConfig, SqlBackends};
use warden_tests::sql::{ALL, Backend, Fixture, failed};
use warden_tests::{guest_bytes, load_with_sql, manifest_header};

#[tokio::test]
async fn values_round_trip_with_nulls_and_parameters() {
    for db in ALL {
        let f = Fixture::new(db);
        let text_ty = if db == Backend::MariaDb {
            "VARCHAR(100)"
        } else {
            "TEXT"
        };
        f.create(&format!("id BIGINT PRIMARY KEY, name {text_ty}, score DOUBLE PRECISION, ok BOOLEAN, note {text_ty}")).await;
        let insert = format!(
            "INSERT INTO {} (id, name, score, ok, note) VALUES ({})",
            f.table,
            f.placeholders(5)
        );
        let params = r#"[{"int64": 1}, {"text": "it's; DROP TABLE x --"}, {"float64": 2.5}, {"boolean": true}, null]"#;
        assert_eq!(
            f.rw("execute", &insert, params).await.unwrap(),
            "affected 1\n",
            "{db:?}"
        );
        let select = format!(
            "SELECT id, name, score, note FROM {} WHERE id = {}",
            f.table,
            f.placeholders(1)
        );
        let out = f.rw("query", &select, r#"[{"int64": 1}]"#).await.unwrap();
        assert_eq!(
            out, "id\tname\tscore\tnote\ni64:1\ttext:it's; DROP TABLE x --\tf64:2.5\tnull\n",
            "{db:?}"
        );
        f.finish().await;
    }
}

#[tokio::test]
async fn rich_types_round_trip_on_postgres() {
    let f = Fixture::new(Backend::Postgres);
    f.create(
        "id INT PRIMARY KEY, at TIMESTAMPTZ, doc JSONB, uid UUID, amount NUMERIC(10,2), raw BYTEA",
    )
    .await;
    let insert = format!("INSERT INTO {} VALUES ({})", f.table, f.placeholders(6));
    let params = r#"[{"int32": 7}, {"timestamp": "2026-11-22T10:00:00Z"}, {"json": "{\"a\": [1, 2]}"}, {"uuid": "67e55044-10b1-426f-9247-bb680e5fe0c8"}, {"decimal": "12.50"}, {"bytes": "raw"}]"#;
    f.rw("execute", &insert, params).await.unwrap();
    let out = f
        .rw("query", &format!("SELECT * FROM {}", f.table), "[]")
        .await
        .unwrap();
    assert_eq!(
        out.lines().nth(1).unwrap(),
        "i32:7\tts:2026-11-22T10:00:00+00:00\tjson:{\"a\":[1,2]}\tuuid:67e55044-10b1-426f-9247-bb680e5fe0c8\tdec:12.50\tbytes:raw"
    );
    f.finish().await;
}

#[tokio::test]
async fn batch_and_prepared_statements() {
    for db in ALL {
        let f = Fixture::new(db);
        f.create("id INT PRIMARY KEY, name VARCHAR(20)").await;
        let insert = format!("INSERT INTO {} VALUES ({})", f.table, f.placeholders(2));
        let rows = r#"[[{"int32": 1}, {"text": "a"}], [{"int32": 2}, {"text": "b"}], [{"int32": 3}, null]]"#;
        let out = f
            .probe(
                "access = \"read-write\"",
                &format!("op = \"batch\"\nsql = '''{insert}'''\nrows = '''{rows}'''"),
            )
            .await;
        assert_eq!(out.unwrap(), "affected 3\n", "{db:?}");

        // A failing row rolls the whole batch back.
        let dup = r#"[[{"int32": 4}, {"text": "d"}], [{"int32": 1}, {"text": "dup"}]]"#;
        let out = f
            .probe(
                "access = \"read-write\"",
                &format!("op = \"batch\"\nsql = '''{insert}'''\nrows = '''{dup}'''"),
            )
            .await;
        assert!(
            failed(out, "duplicate key").starts_with("backend: "),
            "{db:?}"
        );
        assert!(f.count().await.ends_with(":3"), "{db:?}");

        let select = format!(
            "SELECT name FROM {} WHERE id = {}",
            f.table,
            f.placeholders(1)
        );
        let out = f
            .probe("", &format!("op = \"prepare\"\nsql = '''{select}'''\nparams = '[{{\"int32\": 1}}]'\nparams2 = '[{{\"int32\": 3}}]'"))
            .await
            .unwrap();
        assert_eq!(out, "name\ntext:a\nname\nnull\n", "{db:?}");
        f.finish().await;
    }
}

#[tokio::test]
async fn transactions_commit_rollback_and_roll_back_on_drop_trap_and_timeout() {
    for db in ALL {
        let f = Fixture::new(db);
        f.create("id INT PRIMARY KEY").await;
        let insert = format!("INSERT INTO {} VALUES ({})", f.table, f.placeholders(1));
        for (i, end) in ["commit", "rollback", "drop", "trap", "spin"]
            .iter()
            .enumerate()
        {
            let steps = format!(r#"[["{insert}", [{{"int32": {i}}}]]]"#);
            let limits = if *end == "spin" {
                "[limits]\ntimeout = \"300ms\"\n"
            } else {
                ""
            };
            let manifest = format!(
                "{}{limits}[grants.sql.main]\nbackend = \"db\"\naccess = \"read-write\"\n[config]\ngrant = \"main\"\nop = \"tx\"\nsteps = '''{steps}'''\nend = \"{end}\"\n",
                manifest_header("sql-probe")
            );
            let (module, _) = load_with_sql(
                &guest_bytes("sql-probe"),
                &manifest,
                f.dir.path(),
                &f.backends,
            )
            .unwrap();
            let result = module.run_task().await;
            assert_eq!(
                result.is_ok(),
                matches!(*end, "commit" | "rollback" | "drop"),
                "{db:?} {end}: {result:?}"
            );
        }
        // Rollbacks of dropped transactions run as the store goes away.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let out = f
            .rw(
                "query",
                &format!("SELECT id FROM {} ORDER BY id", f.table),
                "[]",
            )
            .await
            .unwrap();
        assert_eq!(
            out.lines().skip(1).collect::<Vec<_>>().len(),
            1,
            "{db:?}: only the committed row: {out}"
        );
        f.finish().await;
    }
}

#[tokio::test]
async fn names_not_granted_do_not_open() {
    let f = Fixture::new(Backend::Sqlite);
    let manifest = format!(
        "{}[grants.sql.main]\nbackend = \"db\"\n[config]\ngrant = \"other\"\nop = \"open\"\n",
        manifest_header("sql-probe")
    );
    let (module, audit) = load_with_sql(
        &guest_bytes("sql-probe"),
        &manifest,
        f.dir.path(),
        &f.backends,
    )
    .unwrap();
    let msg = failed(module.run_task().await.map(|o| o.stdout), "open");
    assert_eq!(msg, "denied: sql grant \"other\" not in manifest");
    assert!(
        audit
            .events()
            .iter()
            .any(|e| e.kind == AuditKind::Denied && e.rule == "sql")
    );
}

#[tokio::test]
async fn a_grant_naming_a_missing_backend_is_refused_at_load() {
    let f = Fixture::new(Backend::Sqlite);
    let manifest = format!(
        "{}[grants.sql.main]\nbackend = \"nope\"\n",
        manifest_header("sql-probe")
    );
    let err = load_with_sql(
        &guest_bytes("sql-probe"),
        &manifest,
        f.dir.path(),
        &f.backends,
    )
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .contains("grants.sql.main.backend: no [sql.nope] in the host config"),
        "{err}"
    );
}

#[tokio::test]
async fn read_only_grants_cannot_write_by_any_trick() {
    for db in ALL {
        let f = Fixture::new(db);
        f.create("id INT PRIMARY KEY").await;
        f.execute(&format!("INSERT INTO {} VALUES (1)", f.table))
            .await;
        let t = &f.table;
        let attempts = [
            format!("INSERT INTO {t} VALUES (2)"),
            format!("UPDATE {t} SET id = 5"),
            format!("DELETE FROM {t}"),
            format!("DROP TABLE {t}"),
            format!("CREATE TABLE {t}_x (id INT)"),
            "SET TRANSACTION READ WRITE".to_string(),
            format!("SELECT 1; INSERT INTO {t} VALUES (3)"),
            format!("COMMIT; INSERT INTO {t} VALUES (4)"),
        ];
        for sql in &attempts {
            let (result, _) = f
                .probe_audited("", &format!("op = \"execute\"\nsql = '''{sql}'''"))
                .await;
            if let Ok(out) = &result {
                // Harmless statements may succeed; nothing may change.
                assert!(
                    sql.starts_with("SET TRANSACTION"),
                    "{db:?}: {sql} succeeded: {out}"
                );
            }
        }
        // "COMMIT" alone, then a write in the same (wrapped) call sequence.
        let steps = format!(r#"[["COMMIT", []], ["INSERT INTO {t} VALUES (6)", []]]"#);
        let out = f
            .probe("", &format!("op = \"tx\"\nsteps = '''{steps}'''"))
            .await;
        assert!(
            out.is_err(),
            "{db:?}: write after COMMIT in a read-only transaction: {out:?}"
        );
        let rows = f
            .rw("query", &format!("SELECT id FROM {t} ORDER BY id"), "[]")
            .await
            .unwrap();
        assert_eq!(
            rows,
            "id\ni32:1\n".replace("i32", if db == Backend::Sqlite { "i64" } else { "i32" }),
            "{db:?}: the table is unchanged"
        );
        f.finish().await;
    }
}

#[tokio::test]
async fn statement_timeout_is_enforced_by_the_database() {
    for db in ALL {
        let f = Fixture::new(db);
        let slow = match db {
            Backend::Postgres => "SELECT pg_sleep(5)",
            Backend::MariaDb => "SELECT SLEEP(5)",
            Backend::Sqlite => {
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT MAX(x) FROM c"
            }
        };
        let out = f
            .probe(
                "statement-timeout = \"300ms\"",
                &format!("op = \"query\"\nsql = '''{slow}'''"),
            )
            .await;
        let msg = failed(out, &format!("slow statement {db:?}"));
        assert!(
            msg.starts_with("timeout: statement-timeout"),
            "{db:?}: {msg}"
        );
    }
}

#[tokio::test]
async fn max_rows_is_a_clear_error_not_a_truncation() {
    for db in ALL {
        let f = Fixture::new(db);
        let many = match db {
            Backend::Postgres => "SELECT generate_series(1, 50) AS n",
            _ => {
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50) SELECT x FROM c"
            }
        };
        let out = f
            .probe(
                "max-rows = 10",
                &format!("op = \"query\"\nsql = '''{many}'''"),
            )
            .await;
        assert_eq!(
            failed(out, "too many rows"),
            "limit-exceeded: max-rows: the query returned more than 10 rows",
            "{db:?}"
        );
        let ok = f
            .probe(
                "max-rows = 50",
                &format!("op = \"query\"\nsql = '''{many}'''"),
            )
            .await
            .unwrap();
        assert_eq!(ok.lines().count(), 51, "{db:?}");
    }
}

// Multi-threaded: the hog waits on one thread while the other module runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_module_holding_all_its_connections_cannot_starve_another() {
    // A pool of 3 shared by two modules; the hog's quota is 2 and it wants 3.
    let f = std::sync::Arc::new(Fixture::with_pool(Backend::Postgres, 3));
    let hog = {
        let f = f.clone();
        tokio::spawn(async move {
            let manifest = format!(
                "{}[limits]\ntimeout = \"5s\"\n[grants.sql.main]\nbackend = \"db\"\nmax-connections = 2\nstatement-timeout = \"3s\"\n[config]\ngrant = \"main\"\nop = \"hold\"\ncount = \"3\"\n",
                manifest_header("hog")
            );
            let (module, _) = load_with_sql(
                &guest_bytes("sql-probe"),
                &manifest,
                f.dir.path(),
                &f.backends,
            )
            .unwrap();
            module.run_task().await
        })
    };
    // Wait until the hog holds its two connections (and waits for a third).
    for _ in 0..500 {
        if f.backends.status()[0].in_use >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        f.backends.status()[0].in_use,
        2,
        "{:?}",
        f.backends.status()
    );
    // The other module still gets the pool's last connection.
    for _ in 0..3 {
        let out = f
            .probe("", "op = \"query\"\nsql = '''SELECT 1 AS one'''")
            .await
            .unwrap();
        assert_eq!(out, "one\ni32:1\n");
    }
    // The hog's third connection was refused by its quota, not granted.
    let hog = hog.await.unwrap();
    assert!(
        matches!(&hog, Err(RunError::Failed(m)) if m.starts_with("limit-exceeded: max-connections")),
        "{hog:?}"
    );
}

#[tokio::test]
async fn todo_example_does_crud_with_ids_from_the_database() {
    todo_example(Backend::Sqlite).await;
    todo_example(Backend::Postgres).await;
}

/// The todo example on `db`: its table made once by `init`, ids that the
/// database assigns (20 concurrent adds, 20 distinct ids), CRUD.
async fn todo_example(db: Backend) {
    if db == Backend::Postgres {
        // Its table has a fixed name; start from none.
        sqlx::raw_sql("DROP TABLE IF EXISTS todo_items")
            .execute(&mut warden_tests::admin_postgres().await)
            .await
            .unwrap();
    }
    let f = Fixture::new(db);
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../guest-modules/examples/todo/warden.toml"
    ))
    .unwrap()
    .replace("backend = \"local\"", "backend = \"db\"")
    .replace("max-connections = 2", "max-connections = 4");
    let (module, _) =
        load_with_sql(&guest_bytes("todo"), &manifest, f.dir.path(), &f.backends).unwrap();
    let module = std::sync::Arc::new(module);
    module
        .call_hook(warden_runtime::lifecycle::Hook::Init)
        .await
        .unwrap();
    let call = |export: &'static str, args: Vec<serde_json::Value>| {
        let module = module.clone();
        async move { module.invoke(export, &args).await.map(|(r, _)| r) }
    };
    let adds: Vec<_> = (0..20)
        .map(|i| tokio::spawn(call("add", vec![format!("item {i}").into()])))
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for add in adds {
        let out = add.await.unwrap().unwrap();
        ids.insert(out[0]["ok"].as_i64().unwrap());
    }
    assert_eq!(ids.len(), 20, "{db:?}: distinct ids {ids:?}");
    let first = *ids.first().unwrap();
    assert_eq!(
        call("complete", vec![first.into()]).await.unwrap(),
        [serde_json::json!({"ok": true})]
    );
    for id in ids.iter().skip(1) {
        assert_eq!(
            call("remove", vec![(*id).into()]).await.unwrap(),
            [serde_json::json!({"ok": true})]
        );
    }
    let listed = call("list", vec![]).await.unwrap();
    assert_eq!(listed[0]["ok"][0]["id"], first, "{db:?}: {listed:?}");
    assert_eq!(listed[0]["ok"][0]["done"], true, "{db:?}: {listed:?}");
    assert_eq!(listed[0]["ok"].as_array().unwrap().len(), 1, "{listed:?}");
    let err = call("add", vec!["  ".into()]).await.unwrap_err();
    assert_eq!(err, RunError::Failed("a to-do needs a title".into()));
    // Names are resolved once and remembered; an unknown one stays an error.
    for _ in 0..2 {
        let err = call("nope", vec![]).await.unwrap_err();
        assert_eq!(err, RunError::Host("export nope not found".into()));
    }
    if db == Backend::Postgres {
        sqlx::raw_sql("DROP TABLE IF EXISTS todo_items")
            .execute(&mut warden_tests::admin_postgres().await)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_dead_backend_is_unavailable_not_a_hang() {
    let configs = BTreeMap::from([(
        "db".to_string(),
        SqlBackendConfig {
            max_connections: 2,
            ..SqlBackendConfig::new("postgres://warden_rw@127.0.0.1:1/test")
        },
    )]);
    let backends = SqlBackends::new(&configs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}[grants.sql.main]\nbackend = \"db\"\n[config]\ngrant = \"main\"\nop = \"query\"\nsql = \"SELECT 1\"\n",
        manifest_header("sql-probe")
    );
    let (module, _) =
        load_with_sql(&guest_bytes("sql-probe"), &manifest, dir.path(), &backends).unwrap();
    let msg = failed(module.run_task().await.map(|o| o.stdout), "dead backend");
    assert!(msg.starts_with("unavailable: "), "{msg}");
    assert!(backends.status()[0].errors >= 1);
}

#[tokio::test]
async fn connections_the_server_closed_while_idle_are_replaced_before_guest_sql() {
    // The pool does not ping a connection before lending it; the host's own
    // BEGIN is the check. These connections carry an application_name of
    // their own, so this kills exactly them and no other test's.
    let name = format!("warden_recover_{}", std::process::id());
    let f = Fixture::with_url_query(Backend::Postgres, 2, &format!("?application_name={name}"));
    const ONE: &str = "op = \"query\"\nsql = \"SELECT 1 AS one\"";
    let (a, b) = tokio::join!(f.probe("", ONE), f.probe("", ONE));
    assert_eq!(a.unwrap(), "one\ni32:1\n");
    assert_eq!(b.unwrap(), "one\ni32:1\n");
    // The operator's superuser, not a module: modules' roles cannot end
    // sessions of other roles.
    let killed: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = '{name}'"
    )))
    .fetch_one(&mut warden_tests::admin_postgres().await)
    .await
    .unwrap();
    assert_ne!(killed, 0, "the pool had no connection to kill");
    // Every idle connection is dead now; calls still get a live one, both a
    // plain call and a transaction.
    assert_eq!(f.probe("", ONE).await.unwrap(), "one\ni32:1\n");
    let tx = f
        .probe(
            "",
            r#"op = "tx"
steps = '''[["SELECT 2 AS two", []]]'''"#,
        )
        .await
        .unwrap();
    assert_eq!(tx, "two\ni32:2\n");
}

#[tokio::test]
async fn session_changes_do_not_leak_to_the_next_user_of_a_connection() {
    // One pooled connection, so the later calls surely reuse it.
    let f = Fixture::with_pool(Backend::Postgres, 1);
    f.rw("execute", "SET application_name = 'leaked'", "[]")
        .await
        .unwrap();
    f.rw("execute", "CREATE TEMP TABLE leaked_temp (id INT)", "[]")
        .await
        .unwrap();
    let app = f
        .rw(
            "query",
            "SELECT current_setting('application_name') AS app",
            "[]",
        )
        .await
        .unwrap();
    assert!(!app.contains("leaked"), "{app}");
    let temp = f
        .rw(
            "query",
            "SELECT COUNT(*) AS n FROM pg_tables WHERE tablename = 'leaked_temp'",
            "[]",
        )
        .await
        .unwrap();
    assert_eq!(temp, "n\ni64:0\n");
}

#[tokio::test]
async fn read_only_transactions_commit_and_roll_back_cleanly() {
    for db in ALL {
        let f = Fixture::new(db);
        f.create("id INT PRIMARY KEY").await;
        let steps = format!(r#"[["SELECT COUNT(*) AS n FROM {}", []]]"#, f.table);
        for end in ["commit", "rollback"] {
            let out = f
                .probe(
                    "",
                    &format!("op = \"tx\"\nsteps = '''{steps}'''\nend = \"{end}\""),
                )
                .await;
            assert!(out.is_ok(), "{db:?} {end}: {out:?}");
        }
        f.finish().await;
    }
}

#[tokio::test]
async fn results_count_against_the_output_cap() {
    let f = Fixture::new(Backend::Sqlite);
    let manifest = format!(
        "{}[limits]\nmax-output = \"1 KiB\"\n[grants.sql.main]\nbackend = \"db\"\n[config]\ngrant = \"main\"\nop = \"query\"\nsql = \"SELECT zeroblob(4096) AS big\"\n",
        manifest_header("sql-probe")
    );
    let (module, _) = load_with_sql(
        &guest_bytes("sql-probe"),
        &manifest,
        f.dir.path(),
        &f.backends,
    )
    .unwrap();
    let msg = failed(module.run_task().await.map(|o| o.stdout), "big result");
    assert!(msg.starts_with("limit-exceeded: max-output"), "{msg}");
}

#[tokio::test]
async fn sqlite_cannot_reach_other_files() {
    let f = Fixture::new(Backend::Sqlite);
    let outside = f.dir.path().join("outside.db");
    for (sql, refused) in [
        (
            format!("ATTACH DATABASE '{}' AS other", outside.display()),
            "denied: the host does not allow",
        ),
        // Refused twice over: inside the host's transaction, and no ATTACH.
        (format!("VACUUM INTO '{}'", outside.display()), "backend: "),
    ] {
        let out = f.rw("execute", &sql, "[]").await;
        let msg = failed(out, &sql);
        assert!(msg.starts_with(refused), "{sql}: {msg}");
        assert!(
            !outside.exists(),
            "{sql} created a file outside the database"
        );
    }
}

#[tokio::test]
async fn sqlite_pragmas_cannot_change_the_shared_connection() {
    // One pooled connection, so every later call surely reuses it.
    let f = Fixture::with_pool(Backend::Sqlite, 1);
    f.create("id INTEGER PRIMARY KEY").await;
    for (access, sql) in [
        ("read-write", "PRAGMA query_only = ON"),
        ("read-write", "pragma Query_Only=1"),
        ("read-write", "PRAGMA main.query_only = 1"),
        ("read-write", "PRAGMA journal_mode = OFF"),
        ("read-write", "PRAGMA synchronous = OFF"),
        ("read-write", "PRAGMA writable_schema = ON"),
        ("read-write", "PRAGMA temp_store_directory = '/tmp'"),
        ("read-only", "PRAGMA cache_size = 1"),
        ("read-only", "PRAGMA busy_timeout = 0"),
    ] {
        let out = f
            .probe(
                &format!("access = \"{access}\""),
                &format!("op = \"execute\"\nsql = \"{sql}\"\nparams = '[]'"),
            )
            .await;
        let msg = failed(out, sql);
        assert!(
            msg.starts_with("denied: the host does not allow"),
            "{sql}: {msg}"
        );
    }
    // The next module on the same connection can still write, with the
    // journal it was opened with; introspection still works.
    f.execute(&format!("INSERT INTO {} VALUES (1)", f.table))
        .await;
    let mode = f.rw("query", "PRAGMA journal_mode", "[]").await.unwrap();
    assert!(!mode.to_lowercase().contains("off"), "{mode}");
    let cols = f
        .rw("query", &format!("PRAGMA table_info({})", f.table), "[]")
        .await
        .unwrap();
    assert!(cols.contains("id"), "{cols}");
}

#[tokio::test]
async fn read_only_calls_leave_no_session_state_or_locks_behind() {
    let f = Fixture::one_credential(Backend::Postgres, 1);
    // A read-only guest changes a session setting and takes a session lock …
    for sql in [
        "SELECT set_config('search_path', 'pg_catalog', false) AS s",
        "SELECT pg_advisory_lock(4242)::text AS l",
    ] {
        f.probe(
            "access = \"read-only\"",
            &format!("op = \"query\"\nsql = '''{sql}'''\nparams = '''[]'''"),
        )
        .await
        .unwrap();
    }
    // … the next user of the only connection sees neither.
    let path = f
        .rw("query", "SELECT current_setting('search_path') AS p", "[]")
        .await
        .unwrap();
    assert!(!path.contains("pg_catalog"), "{path}");
    let locks = f
        .rw(
            "query",
            "SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242",
            "[]",
        )
        .await
        .unwrap();
    assert_eq!(locks, "n\ni64:0\n");
}

#[tokio::test]
async fn mariadb_session_and_user_variables_do_not_reach_the_next_module() {
    let f = Fixture::one_credential(Backend::MariaDb, 1);
    for access in ["read-only", "read-write"] {
        f.probe(
            &format!("access = \"{access}\""),
            "op = \"query\"\nsql = '''SELECT @secret := 'from-another-module' AS s'''\nparams = '''[]'''",
        )
        .await
        .unwrap();
        let seen = f
            .rw(
                "query",
                "SELECT CAST(COALESCE(@secret, 'none') AS CHAR) AS s",
                "[]",
            )
            .await
            .unwrap();
        assert!(!seen.contains("from-another-module"), "{access}: {seen}");
    }
    f.execute("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
        .await;
    let mode = f
        .rw(
            "query",
            "SELECT CAST(@@SESSION.sql_mode AS CHAR) AS m",
            "[]",
        )
        .await
        .unwrap();
    assert!(!mode.contains("ALLOW_INVALID_DATES"), "{mode}");
}

#[tokio::test]
async fn mariadb_connections_are_reused_with_nothing_of_the_last_module_left() {
    let f = Fixture::one_credential(Backend::MariaDb, 1);
    let session = || {
        f.rw(
            "query",
            "SELECT CAST(CONNECTION_ID() AS SIGNED) AS id",
            "[]",
        )
    };
    let first = session().await.unwrap();
    for access in ["read-only", "read-write"] {
        // MariaDB refuses temporary tables in read-only transactions.
        let temp = if access == "read-write" {
            r#"["CREATE TEMPORARY TABLE leaked_tmp (x INT)", []],"#
        } else {
            ""
        };
        let steps = format!(
            r#"[{temp} ["SELECT GET_LOCK('warden_leaked_lock', 0) AS l", []],
            ["SET @leaked = 'secret'", []],
            ["SET SESSION sql_mode = 'ALLOW_INVALID_DATES'", []],
            ["SET ROLE warden_mrole", []],
            ["USE information_schema", []]]"#
        );
        let out = f
            .probe(
                &format!("access = \"{access}\""),
                &format!("op = \"tx\"\nsteps = '''{steps}'''\nend = \"commit\""),
            )
            .await;
        assert!(out.is_ok(), "{access}: {out:?}");
        assert_eq!(
            session().await.unwrap(),
            first,
            "the pooled connection was not reused"
        );
        let temp = f
            .rw("query", "SELECT COUNT(*) AS n FROM leaked_tmp", "[]")
            .await;
        assert!(
            failed(temp, "the temporary table").contains("doesn't exist"),
            "{access}: the temporary table survived"
        );
        let left = f
            .rw(
                "query",
                "SELECT CAST(COALESCE(@leaked, 'none') AS CHAR) AS v, \
                 CAST(@@SESSION.sql_mode AS CHAR) AS m, \
                 CAST(COALESCE(CURRENT_ROLE(), 'none') AS CHAR) AS r, \
                 CAST(DATABASE() AS CHAR) AS d",
                "[]",
            )
            .await
            .unwrap();
        assert!(
            !left.contains("secret") && !left.contains("ALLOW_INVALID_DATES"),
            "{access}: {left}"
        );
        assert!(
            left.ends_with("\ttext:none\ttext:test\n"),
            "{access}: the role or the database outlived the reset: {left}"
        );
        let lock_held: Option<i64> =
            sqlx::query_scalar("SELECT CAST(IS_USED_LOCK('warden_leaked_lock') AS SIGNED)")
                .fetch_one(&mut warden_tests::admin_mysql().await)
                .await
                .unwrap();
        assert_eq!(lock_held, None, "{access}: the user lock is still held");
    }
}

#[tokio::test]
async fn a_guest_cannot_swap_the_prepared_statements_of_a_pooled_connection() {
    // PREPARE and DEALLOCATE survive ROLLBACK, so a read-only guest could
    // replace the driver's cached statement that another module runs next.
    // Both grants on one credential (no read-only-url): one pooled connection.
    let f = Fixture::one_credential(Backend::Postgres, 1);
    let victim = || f.rw("query", "SELECT $1::text AS v", r#"[{"text": "genuine"}]"#);
    assert_eq!(victim().await.unwrap(), "v\ntext:genuine\n");
    let names = f
        .probe(
            "access = \"read-only\"",
            "op = \"query\"\nsql = '''SELECT name FROM pg_prepared_statements WHERE statement = 'SELECT $1::text AS v' '''\nparams = '''[]'''",
        )
        .await
        .unwrap();
    let name = names
        .lines()
        .nth(1)
        .unwrap()
        .trim_start_matches("text:")
        .to_string();
    assert!(name.starts_with("sqlx_s_"), "{names}");
    let steps = format!(
        r#"[["DEALLOCATE {name}", []], ["PREPARE {name} (text) AS SELECT 'hijacked'::text AS v", []]]"#
    );
    let swapped = f
        .probe(
            "access = \"read-only\"",
            &format!("op = \"tx\"\nsteps = '''{steps}'''\nend = \"rollback\""),
        )
        .await;
    assert!(swapped.is_ok(), "{swapped:?}");
    assert_eq!(victim().await.unwrap(), "v\ntext:genuine\n");
    // A statement prepared under a name the driver has not used yet.
    f.probe(
        "access = \"read-only\"",
        "op = \"execute\"\nsql = '''PREPARE sqlx_s_999 AS SELECT 1'''\nparams = '''[]'''",
    )
    .await
    .unwrap();
    let left = f
        .rw(
            "query",
            "SELECT COUNT(*) AS n FROM pg_prepared_statements WHERE from_sql",
            "[]",
        )
        .await
        .unwrap();
    assert_eq!(left, "n\ni64:0\n");
}

#[tokio::test]
async fn a_role_switch_does_not_reach_the_next_user_of_a_connection() {
    // tests/services.sh lets warden_rw switch to warden_other.
    let f = Fixture::with_pool(Backend::Postgres, 1);
    f.rw("execute", "SET ROLE warden_other", "[]")
        .await
        .unwrap();
    let user = f
        .rw("query", "SELECT current_user::text AS u", "[]")
        .await
        .unwrap();
    assert_eq!(user, "u\ntext:warden_rw\n");
}
