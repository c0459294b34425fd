//! PostgreSQL and MariaDB go away under load and come back: calls fail at
//! once with `unavailable` naming the backend (never a quota error), the
//! host's memory stays put over thousands of failed calls, calls succeed
//! again within a second or so of the server's return, and no acknowledged
//! write is lost. (Its own test binary: it stops the shared servers.)

use std::process::Command;
use std::time::{Duration, Instant};

use warden_runtime::RunError;
use warden_tests::sql::{Backend, Fixture};

fn up(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

async fn wait_for(port: u16, want_up: bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while up(port) != want_up {
        assert!(
            Instant::now() < deadline,
            "port {port} up={want_up} never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn run(cmd: &str, args: &[&str]) {
    let _ = Command::new(cmd).args(args).status();
}

fn postgres(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next()?.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| "15".into());
    let mut args = vec!["--skip-systemctl-redirect", &version, "main", action];
    if action == "stop" {
        args.extend(["-m", "fast"]);
    }
    run("pg_ctlcluster", &args);
}

fn mariadb(action: &str) {
    if action == "stop" {
        run("mysqladmin", &["-h", "127.0.0.1", "-u", "root", "shutdown"]);
    } else {
        let _ = std::fs::create_dir_all("/run/mysqld");
        run("chown", &["mysql:mysql", "/run/mysqld"]);
        run(
            "start-stop-daemon",
            &[
                "--start",
                "--oknodo",
                "--background",
                "--exec",
                "/usr/sbin/mariadbd",
                "--",
                "--user=mysql",
            ],
        );
    }
}

/// Starts the server again even when the test fails half-way.
struct Restart(fn(&str), u16);

impl Drop for Restart {
    fn drop(&mut self) {
        if !up(self.1) {
            (self.0)("start");
            let deadline = Instant::now() + Duration::from_secs(60);
            while !up(self.1) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// One outage of `db` (served on `port`, stopped and started by `ctl`).
async fn outage(db: Backend, port: u16, ctl: fn(&str), id_column: &str) {
    let f = Fixture::with_pool(db, 4);
    f.create(&format!("{id_column}, n INT")).await;
    let insert = format!(
        "op = \"execute\"\nsql = '''INSERT INTO {} (n) VALUES (1)'''\nparams = '''[]'''",
        f.table
    );
    let (module, _) = f.load_probe(
        "timeout = \"2s\"",
        "access = \"read-write\"\nmax-connections = 2\nstatement-timeout = \"500ms\"",
        &insert,
    );
    let module = std::sync::Arc::new(module);
    let mut acknowledged = 0;
    for _ in 0..20 {
        module.run_task().await.expect("insert before the outage");
        acknowledged += 1;
    }

    let up_rss = warden_tests::own_rss_kib();
    let restart = Restart(ctl, port);
    ctl("stop");
    wait_for(port, false).await;

    // Calls during the outage: `unavailable`, fast, never a quota error.
    let failing = async |n: usize| {
        let mut slowest = Duration::ZERO;
        for _ in 0..n {
            let started = Instant::now();
            let result = module.run_task().await;
            slowest = slowest.max(started.elapsed());
            match result {
                Err(RunError::Failed(m)) => assert!(
                    m.contains("unavailable") && m.contains("sql backend db"),
                    "{db:?}: {m}"
                ),
                other => panic!("{db:?}: expected unavailable, got {other:?}"),
            }
        }
        slowest
    };
    failing(300).await;
    let concurrent: Vec<_> = (0..8)
        .map(|_| {
            let m = module.clone();
            tokio::spawn(async move { m.run_task().await })
        })
        .collect();
    for c in concurrent {
        let err = c.await.unwrap().unwrap_err().to_string();
        assert!(
            err.contains("unavailable") && !err.contains("max-connections"),
            "{db:?}: {err}"
        );
    }
    let before = warden_tests::own_rss_kib();
    let started = Instant::now();
    let slowest = failing(3000).await;
    let took = started.elapsed();
    let grown = warden_tests::own_rss_kib().saturating_sub(before);
    println!(
        "{db:?} outage: RSS {before} KiB before 3000 failed calls, +{grown} KiB after; {took:?} in all, slowest {slowest:?}"
    );
    assert!(
        grown < 10 << 10,
        "{db:?}: 3000 failed calls grew the host by {grown} KiB"
    );
    assert!(
        slowest < Duration::from_millis(1500),
        "{db:?}: a failed call took {slowest:?}"
    );

    ctl("start");
    wait_for(port, true).await;
    let back = Instant::now();
    loop {
        match module.run_task().await {
            Ok(_) => {
                acknowledged += 1;
                break;
            }
            Err(e) => assert!(
                back.elapsed() < Duration::from_secs(3),
                "{db:?}: not back {:?} after the server: {e}",
                back.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{db:?}: first call succeeded {:?} after the port reopened",
        back.elapsed()
    );
    drop(restart);
    for _ in 0..20 {
        module.run_task().await.expect("insert after the outage");
        acknowledged += 1;
    }
    let count = f.count().await;
    let stored = count.rsplit(':').next().unwrap_or_default();
    assert_eq!(
        stored,
        acknowledged.to_string(),
        "{db:?}: acknowledged rows lost ({count})"
    );
    println!(
        "{db:?} RSS: {up_rss} KiB before the outage, {} KiB during, {} KiB after; {acknowledged} acknowledged inserts, {count} rows",
        before + grown,
        warden_tests::own_rss_kib()
    );
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outages_fail_fast_leak_nothing_and_lose_no_acknowledged_write() {
    outage(Backend::Postgres, 5432, postgres, "id SERIAL PRIMARY KEY").await;
    outage(
        Backend::MariaDb,
        3306,
        mariadb,
        "id INT AUTO_INCREMENT PRIMARY KEY",
    )
    .await;
}
