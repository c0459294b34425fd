//! Capability overhead, measured against the native driver in the same run:
//! a point SELECT by primary key on PostgreSQL (guest vs sqlx, same pool size
//! and concurrency) and a Redis GET (guest vs the redis crate).
//!
//! Each guest call is a full invocation: instantiate, call the export, the
//! host call through the granted handle, drop. The `-many` rows make
//! `PER_INVOCATION` calls through one handle per invocation instead, so they
//! show the host call's own cost beside the cost of a fresh instance. Needs
//! the local PostgreSQL and Redis (`tests/services.sh`) and the guests
//! (`just build-guests`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use redis::AsyncCommands;
use serde_json::json;
use warden_capability::LogAudit;
use warden_fs::HostPaths;
use warden_kv::{KvBackendConfig, KvBackends};
use warden_runtime::linker::build_linker;
use warden_runtime::{
    Backends, EngineOptions, Limits, LoadContext, LoadedModule, Manifest, WardenEngine,
};
use warden_sql::{SqlBackendConfig, SqlBackends};

mod common;

// The least-privilege roles of tests/services.sh: writer for the fixture
// and the native rows, reader for the guests' read-only grants.
const PG_URL: &str = "postgres://warden_rw@127.0.0.1:5432/test";
const PG_RO_URL: &str = "postgres://warden_ro@127.0.0.1:5432/test";
const MY_URL: &str = "mysql://warden_rw@127.0.0.1:3306/test";
const MY_RO_URL: &str = "mysql://warden_ro@127.0.0.1:3306/test";
const PG_CONTROL_URL: &str = "postgres://warden_ctl@127.0.0.1:5432/test";
const MY_CONTROL_URL: &str = "mysql://warden_ctl@127.0.0.1:3306";
const REDIS_URL: &str = "redis://127.0.0.1:6379";
const POOL: u32 = 4;
const CALLS: usize = 8_000;
const ROUNDS: usize = 5;
/// Calls through one handle per invocation in the `-many` rows.
const PER_INVOCATION: usize = 50;
/// Fixture rows and keys; call `i` reads row/key `i % ROWS`.
const ROWS: usize = 1000;

/// The lookup guest with its `db` grant on SQL backend `backend`.
fn load(
    engine: &WardenEngine,
    sql: &SqlBackends,
    kv: &KvBackends,
    concurrency: usize,
    (backend, placeholder): (&str, &str),
) -> LoadedModule {
    let linker = build_linker(engine).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-modules/target/wasm32-wasip2/release/lookup.wasm");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `just build-guests`)", path.display()));
    let manifest = Manifest::parse(&format!(
        "[module]\nname = \"lookup\"\nversion = \"0.1.0\"\n[limits]\nmax-instances = {concurrency}\n\
         [grants.sql.db]\nbackend = \"{backend}\"\nmax-connections = {POOL}\n[grants.kv.cache]\nbackend = \"redis\"\nprefix = \"warden-bench:\"\n\
         [config]\nplaceholder = \"{placeholder}\"\n"
    ))
    .unwrap();
    let cx = LoadContext {
        engine,
        linker: &linker,
        host_paths: HostPaths::RelativeTo(".".into()),
        defaults: &Limits::default(),
        audit: Arc::new(LogAudit),
        backends: &Backends {
            sql: sql.clone(),
            kv: kv.clone(),
            ..Backends::default()
        },
        outside_only: None,
    };
    LoadedModule::load(&cx, &bytes, manifest).expect("load lookup")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench --bench capabilities -- redis` runs only that workload.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |row: &str| filter.as_deref().is_none_or(|f| row.starts_with(f));
    // Concurrent callers; `BENCH_CONCURRENCY=1` measures one call at a time.
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .map_or(4, |c| c.parse().expect("BENCH_CONCURRENCY is a number"));
    let engine = WardenEngine::new(EngineOptions {
        max_instances: 64,
        cache_dir: None,
        ..EngineOptions::default()
    })
    .unwrap();
    let backend = |url: &str, read_only_url: &str, control_url: &str| SqlBackendConfig {
        read_only_url: Some(read_only_url.into()),
        control_url: Some(control_url.into()),
        max_connections: POOL,
        ..SqlBackendConfig::new(url)
    };
    let sql = SqlBackends::new(&BTreeMap::from([
        ("pg".to_string(), backend(PG_URL, PG_RO_URL, PG_CONTROL_URL)),
        ("my".to_string(), backend(MY_URL, MY_RO_URL, MY_CONTROL_URL)),
    ]))
    .unwrap();
    let kv = KvBackends::new(&BTreeMap::from([(
        "redis".to_string(),
        KvBackendConfig {
            url: REDIS_URL.into(),
        },
    )]))
    .unwrap();
    let module = Arc::new(load(&engine, &sql, &kv, concurrency, ("pg", "$1")));
    let my_module = Arc::new(load(&engine, &sql, &kv, concurrency, ("my", "?")));

    // Fixture data, written natively.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(POOL)
        .connect(PG_URL)
        .await
        .unwrap();
    sqlx::raw_sql("DROP TABLE IF EXISTS warden_bench; CREATE TABLE warden_bench (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO warden_bench SELECT g, 'name-' || g FROM generate_series(1, $1) g")
        .bind(ROWS as i64)
        .execute(&pool)
        .await
        .unwrap();
    let my_pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(POOL)
        .connect(MY_URL)
        .await
        .unwrap();
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS warden_bench; \
         CREATE TABLE warden_bench (id BIGINT PRIMARY KEY, name VARCHAR(64) NOT NULL); \
         INSERT INTO warden_bench WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g \
         WHERE n < 1000) SELECT n, CONCAT('name-', n) FROM g",
    )
    .execute(&my_pool)
    .await
    .unwrap();
    let redis = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = redis::aio::ConnectionManager::new(redis.clone())
        .await
        .unwrap();
    for i in 0..ROWS {
        let _: () = conn
            .set(format!("warden-bench:{}", key(i)), format!("value-{i}"))
            .await
            .unwrap();
    }

    let native_sql = {
        let pool = pool.clone();
        move |i: usize| {
            let pool = pool.clone();
            async move { native_select(&pool, i).await }
        }
    };
    let native_sql_many = {
        let pool = pool.clone();
        move |i: usize| {
            let pool = pool.clone();
            async move {
                for n in batch(i) {
                    native_select(&pool, n).await;
                }
            }
        }
    };
    // The same statement wrapped the way a read-only grant wraps it, natively:
    // what the database-side enforcement costs without any guest.
    let native_wrapped_sql = {
        let pool = pool.clone();
        move |i: usize| {
            let pool = pool.clone();
            async move {
                let mut c = pool.acquire().await.unwrap();
                sqlx::raw_sql("BEGIN READ ONLY; SET LOCAL statement_timeout = 5000; SELECT pg_backend_pid()::int8")
                    .execute(&mut *c)
                    .await
                    .unwrap();
                let (name,): (String,) =
                    sqlx::query_as("SELECT name FROM warden_bench WHERE id = $1")
                        .bind(row_id(i))
                        .fetch_one(&mut *c)
                        .await
                        .unwrap();
                assert!(name.starts_with("name-"));
                sqlx::raw_sql(
                    "ROLLBACK; SELECT pg_advisory_unlock_all(); SELECT COUNT(*) FROM pg_prepared_statements",
                )
                .execute(&mut *c)
                .await
                .unwrap();
            }
        }
    };
    let guest_sql = {
        let module = module.clone();
        move |i: usize| {
            let module = module.clone();
            async move {
                let (r, _) = module.invoke("sql-get", &[json!(row_id(i))]).await.unwrap();
                assert!(r[0]["ok"].as_str().unwrap().starts_with("name-"));
            }
        }
    };
    let native_my = {
        let pool = my_pool.clone();
        move |i: usize| {
            let pool = pool.clone();
            async move {
                let (name,): (String,) =
                    sqlx::query_as("SELECT name FROM warden_bench WHERE id = ?")
                        .bind(row_id(i))
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                assert!(name.starts_with("name-"));
            }
        }
    };
    let guest_my = {
        let module = my_module.clone();
        move |i: usize| {
            let module = module.clone();
            async move {
                let (r, _) = module.invoke("sql-get", &[json!(row_id(i))]).await.unwrap();
                assert!(r[0]["ok"].as_str().unwrap().starts_with("name-"), "{r:?}");
            }
        }
    };
    let native_kv = {
        let conn = conn.clone();
        move |i: usize| {
            let mut conn = conn.clone();
            async move { native_get(&mut conn, i).await }
        }
    };
    let native_kv_many = {
        let conn = conn.clone();
        move |i: usize| {
            let mut conn = conn.clone();
            async move {
                for n in batch(i) {
                    native_get(&mut conn, n).await;
                }
            }
        }
    };
    let guest_kv = {
        let module = module.clone();
        move |i: usize| {
            let module = module.clone();
            async move {
                let (r, _) = module.invoke("kv-get", &[json!(key(i))]).await.unwrap();
                assert!(r[0]["ok"].as_str().unwrap().starts_with("value-"));
            }
        }
    };
    let guest_sql_many = {
        let module = module.clone();
        move |i: usize| {
            let module = module.clone();
            async move {
                let ids: Vec<i64> = batch(i).map(row_id).collect();
                let (r, _) = module.invoke("sql-get-many", &[json!(ids)]).await.unwrap();
                assert_eq!(r[0]["ok"], json!(PER_INVOCATION));
            }
        }
    };
    let guest_kv_many = {
        let module = module.clone();
        move |i: usize| {
            let module = module.clone();
            async move {
                let keys: Vec<String> = batch(i).map(key).collect();
                let (r, _) = module.invoke("kv-get-many", &[json!(keys)]).await.unwrap();
                assert_eq!(r[0]["ok"], json!(PER_INVOCATION));
            }
        }
    };

    println!(
        "| workload ({CALLS} calls, {} concurrent, pool {POOL}; median of {ROUNDS} alternating rounds) | native | through a guest | ratio |",
        concurrency
    );
    println!("|---|---|---|---|");
    if wanted("postgres") {
        let result =
            common::rounds(ROUNDS, CALLS, concurrency, native_sql.clone(), guest_sql).await;
        row("PostgreSQL point SELECT by PK", result, 1);
    }
    if wanted("postgres-wrapper") {
        let result = common::rounds(
            ROUNDS,
            CALLS,
            concurrency,
            native_sql.clone(),
            native_wrapped_sql,
        )
        .await;
        row(
            "PostgreSQL point SELECT, native in a read-only wrapper (no guest)",
            result,
            1,
        );
    }
    if wanted("mariadb") {
        let result = common::rounds(ROUNDS, CALLS, concurrency, native_my, guest_my).await;
        row("MariaDB point SELECT by PK", result, 1);
    }
    if wanted("redis") {
        let result = common::rounds(ROUNDS, CALLS, concurrency, native_kv, guest_kv).await;
        row("Redis GET", result, 1);
    }
    // Same number of statements and GETs, PER_INVOCATION of them per call.
    let many = CALLS / PER_INVOCATION;
    if wanted("postgres-many") {
        let result =
            common::rounds(ROUNDS, many, concurrency, native_sql_many, guest_sql_many).await;
        let label = format!("PostgreSQL point SELECT, {PER_INVOCATION} per invocation");
        row(&label, result, PER_INVOCATION);
    }
    if wanted("redis-many") {
        let result = common::rounds(ROUNDS, many, concurrency, native_kv_many, guest_kv_many).await;
        row(
            &format!("Redis GET, {PER_INVOCATION} per invocation"),
            result,
            PER_INVOCATION,
        );
    }

    sqlx::raw_sql("DROP TABLE warden_bench")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql("DROP TABLE warden_bench")
        .execute(&my_pool)
        .await
        .unwrap();
    let keys: Vec<String> = (0..ROWS)
        .map(|i| format!("warden-bench:{}", key(i)))
        .collect();
    let _: () = conn.del(keys).await.unwrap();
}

async fn native_select(pool: &sqlx::PgPool, i: usize) {
    let (name,): (String,) = sqlx::query_as("SELECT name FROM warden_bench WHERE id = $1")
        .bind(row_id(i))
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(name.starts_with("name-"));
}

async fn native_get(conn: &mut redis::aio::ConnectionManager, i: usize) {
    let v: String = conn.get(format!("warden-bench:{}", key(i))).await.unwrap();
    assert!(v.starts_with("value-"));
}

/// The fixture row call `i` reads.
fn row_id(i: usize) -> i64 {
    (i % ROWS + 1) as i64
}

/// The key call `i` reads, as the guest names it (the grant adds the prefix).
fn key(i: usize) -> String {
    format!("k{}", i % ROWS)
}

/// The calls benchmark call `i` makes in a `-many` row.
fn batch(i: usize) -> std::ops::Range<usize> {
    i * PER_INVOCATION..(i + 1) * PER_INVOCATION
}

/// One table row; `per_call` scales calls/s to statements or GETs per second.
fn row(label: &str, (native, guest, ratio): (f64, f64, f64), per_call: usize) {
    let (n, g) = (native * per_call as f64, guest * per_call as f64);
    println!("| {label} | {n:.0}/s | {g:.0}/s | {ratio:.2}× |");
}
