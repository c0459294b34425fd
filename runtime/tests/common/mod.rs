//! What the server tests share: a `warden serve` process with test tokens,
//! HTTP helpers, and polling.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_runtime::client::{Client, request};
use warden_runtime::server::auth::sha256_hex;

pub const ADMIN: &str = "test-admin-token-3f9a";
pub const DEPLOYER: &str = "test-deployer-token-77c1";
pub const VIEWER: &str = "test-viewer-token-a0b2";

pub fn guest(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-modules/target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `just build-guests`", path.display()))
}

/// A manifest for the http-faulty guest under `route`.
pub fn faulty_manifest(name: &str, version: &str, greeting: &str, route: &str) -> String {
    format!(
        "[module]\nname = \"{name}\"\nversion = \"{version}\"\n\n[limits]\ntimeout = \"5s\"\n\n[http]\nroute = \"{route}\"\n\n[config]\ngreeting = \"{greeting}\"\n"
    )
}

pub struct Server {
    pub child: Child,
    pub dir: PathBuf,
    pub ingress: String,
    pub admin: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `warden serve` with its data in `dir`; `extra` is appended
    /// to the `[server]` table.
    pub fn start(dir: &Path, extra: &str) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("warden.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\ndata-dir = \"data\"\ningress = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n{extra}\n\
                 [[server.tokens]]\nname = \"admin\"\nsha256 = \"{}\"\nrole = \"admin\"\n\
                 [[server.tokens]]\nname = \"ci\"\nsha256 = \"{}\"\nrole = \"deployer\"\n\
                 [[server.tokens]]\nname = \"dash\"\nsha256 = \"{}\"\nrole = \"viewer\"\n",
                sha256_hex(ADMIN),
                sha256_hex(DEPLOYER),
                sha256_hex(VIEWER)
            ),
        )
        .unwrap();
        let log = dir.join(format!(
            "stderr-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("WARDEN_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting warden serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut ingress, mut admin) = (None, None);
        while ingress.is_none() || admin.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    panic!(
                        "warden serve did not start: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                });
            if let Some(a) = line.strip_prefix("warden: ingress http://") {
                ingress = Some(a.to_string());
            }
            if let Some(a) = line.strip_prefix("warden: admin http://") {
                admin = Some(a.to_string());
            }
        }
        Server {
            child,
            dir: dir.to_path_buf(),
            ingress: ingress.unwrap(),
            admin: admin.unwrap(),
            log,
        }
    }

    pub fn client(&self, token: &str) -> Client {
        Client::new(&format!("http://{}", self.admin), token.into()).unwrap()
    }

    pub async fn upload(
        &self,
        component: &[u8],
        manifest: &str,
        activate: bool,
    ) -> Result<Value, String> {
        let path = if activate {
            "/v1/modules?activate=true"
        } else {
            "/v1/modules"
        };
        self.client(DEPLOYER)
            .post_multipart(
                path,
                &[
                    ("component", "c.wasm", component),
                    ("manifest", "warden.toml", manifest.as_bytes()),
                ],
            )
            .await
            .map_err(|e| e.0)
    }

    /// [`Server::upload`] on a task of its own, for uploads that race.
    pub fn spawn_upload(
        &self,
        component: &[u8],
        manifest: String,
        activate: bool,
    ) -> tokio::task::JoinHandle<Result<Value, String>> {
        let (client, component) = (self.client(DEPLOYER), component.to_vec());
        let path = if activate {
            "/v1/modules?activate=true"
        } else {
            "/v1/modules"
        };
        tokio::spawn(async move {
            client
                .post_multipart(
                    path,
                    &[
                        ("component", "c.wasm", component.as_slice()),
                        ("manifest", "warden.toml", manifest.as_bytes()),
                    ],
                )
                .await
                .map_err(|e| e.0)
        })
    }

    /// Uploads and activates `component` as `name` with `probe_manifest`;
    /// any refusal fails the test.
    pub async fn deploy(&self, component: &[u8], name: &str, extra: &str) {
        self.upload(component, &probe_manifest(name, extra), true)
            .await
            .unwrap_or_else(|e| panic!("deploying {name}: {e}"));
    }

    /// Graceful stop (SIGTERM), waiting for the process to end.
    pub fn stop(mut self) -> PathBuf {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.clone()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP/1.1 request; returns status and body.
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let headers: Vec<(&str, String)> = token
        .map(|t| ("authorization", format!("Bearer {t}")))
        .into_iter()
        .collect();
    let (status, body) = request(
        addr,
        method,
        path,
        &headers,
        bytes::Bytes::copy_from_slice(body),
    )
    .await
    .expect("request");
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
}

pub async fn get(addr: &str, path: &str) -> (u16, String) {
    http(addr, "GET", path, None, b"").await
}

/// (module, kind) of the audit log, oldest first; `query` as in /v1/audit.
pub async fn audit_kinds(s: &Server, query: &str) -> Vec<(String, String)> {
    let audit = s
        .client(VIEWER)
        .get(&format!("/v1/audit?{query}"))
        .await
        .unwrap();
    audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["module"].as_str().unwrap().into(),
                e["kind"].as_str().unwrap().into(),
            )
        })
        .collect()
}

pub async fn eventually<F: AsyncFn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

pub fn probe_manifest(name: &str, extra: &str) -> String {
    format!(
        "[module]\nname = \"{name}\"\nversion = \"1.0.0\"\n[http]\nroute = \"/{name}\"\n{extra}"
    )
}

/// A name part no other test run uses (brokers keep queues and topics).
pub fn unique() -> String {
    format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// A PostgreSQL database of its own for a registry shared by test nodes;
/// dropped (with its connections) when this is.
pub struct PgRegistry {
    pub db: String,
}

impl PgRegistry {
    pub async fn create(tag: &str) -> PgRegistry {
        let db = format!("warden_registry_{tag}_{}", std::process::id());
        Self::admin_sql(&format!("DROP DATABASE IF EXISTS {db}")).await;
        Self::admin_sql(&format!("CREATE DATABASE {db}")).await;
        PgRegistry { db }
    }

    /// The `[server]` line that points a node at it.
    pub fn config(&self) -> String {
        format!(
            "registry = \"postgres://postgres@127.0.0.1:5432/{}\"",
            self.db
        )
    }

    async fn admin_sql(sql: &str) {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (tests/services.sh starts it)");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut admin)
            .await
            .unwrap();
    }

    pub async fn drop_db(self) {
        Self::admin_sql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db)).await;
    }
}

/// Resident memory of a server process, in KiB.
pub fn rss_kib(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
