//! `warden serve` numbers for BENCHMARKS.md: HTTP requests/s and latency
//! through the ingress, and RSS and warm restart time with 1,000 registered
//! modules. Real processes, real HTTP.
//!
//! `cargo bench -p warden-runtime --bench serve` (env: MODULES, REQUESTS, CONCURRENCY)

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use warden_runtime::client::{Client, request};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn guest(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-modules/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `just build-guests`", path.display()))
}

struct Server {
    child: Child,
    ingress: String,
    admin: String,
    started_in: Duration,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let config = dir.join("warden.toml");
        std::fs::write(
            &config,
            "[server]\ndata-dir = \"data\"\ningress = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let start = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("WARDEN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut ingress, mut admin) = (String::new(), String::new());
        while ingress.is_empty() || admin.is_empty() {
            let line = lines.next().expect("warden serve ended").unwrap();
            if let Some(a) = line.strip_prefix("warden: ingress http://") {
                ingress = a.into();
            }
            if let Some(a) = line.strip_prefix("warden: admin http://") {
                admin = a.into();
            }
        }
        // The listeners come up after every registered module is loaded.
        let started_in = start.elapsed();
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            ingress,
            admin,
            started_in,
        }
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        kb / 1024.0
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("data/admin.token"))
        .unwrap()
        .trim()
        .to_string()
}

/// `concurrency` keep-alive connections, `requests` in total; returns
/// (requests/s, p50, p99).
async fn load(
    addr: &str,
    path: &str,
    requests: usize,
    concurrency: usize,
) -> (f64, Duration, Duration) {
    let per = requests / concurrency;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (addr, path) = (addr.to_string(), path.to_string());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut latencies = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                let req = hyper::Request::get(path.as_str())
                    .header("host", addr.as_str())
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let resp = sender.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let took = start.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (all.len() as f64 / took.as_secs_f64(), pct(0.50), pct(0.99))
}

#[tokio::main]
async fn main() {
    let modules = env_or("MODULES", 1000);
    let requests = env_or("REQUESTS", 20_000);
    let concurrency = env_or("CONCURRENCY", 16);
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().into();

    let server = Server::start(&dir);
    let client = Client::new(&format!("http://{}", server.admin), token(&dir)).unwrap();
    let hello = guest("http_hello");
    let manifest = "[module]\nname = \"hello\"\nversion = \"1.0.0\"\n[limits]\nmax-instances = 64\n[http]\nroute = \"/hello\"\n[config]\ngreeting = \"Hello\"\n";
    client
        .post_multipart(
            "/v1/modules?activate=true",
            &[
                ("component", "c.wasm", &hello),
                ("manifest", "warden.toml", manifest.as_bytes()),
            ],
        )
        .await
        .unwrap();
    load(&server.ingress, "/hello/warm", 2000, concurrency).await;
    let (rps, p50, p99) = load(&server.ingress, "/hello/bench", requests, concurrency).await;
    println!(
        "ingress http-hello: {rps:.0} req/s, p50 {p50:.2?}, p99 {p99:.2?} ({requests} requests, {concurrency} connections)"
    );
    match wasmtime_serve_baseline(requests, concurrency).await {
        Some((base_rps, base_p50, base_p99)) => println!(
            "wasmtime serve http-hello: {base_rps:.0} req/s, p50 {base_p50:.2?}, p99 {base_p99:.2?}; warden/wasmtime throughput {:.2}x, p99 {:.2}x",
            rps / base_rps,
            base_p99.as_secs_f64() / p99.as_secs_f64()
        ),
        None => println!(
            "wasmtime serve: not installed (cargo install wasmtime-cli --version ^48), no baseline"
        ),
    }

    // Many registered modules: the same component under 1,000 names (stored once).
    let faulty = guest("http_faulty");
    let upload_start = Instant::now();
    for i in 1..modules {
        let manifest = format!(
            "[module]\nname = \"m{i}\"\nversion = \"1.0.0\"\n[http]\nroute = \"/m{i}\"\n[config]\ngreeting = \"m{i}\"\n"
        );
        client
            .post_multipart(
                "/v1/modules?activate=true",
                &[
                    ("component", "c.wasm", &faulty),
                    ("manifest", "warden.toml", manifest.as_bytes()),
                ],
            )
            .await
            .unwrap();
    }
    println!(
        "uploaded and activated {} modules in {:.2?}",
        modules - 1,
        upload_start.elapsed()
    );
    println!(
        "RSS with {modules} active modules: {:.0} MiB",
        server.rss_mib()
    );
    server.stop();

    let server = Server::start(&dir);
    println!(
        "warm restart with {modules} modules: serving after {:.2?}, RSS {:.0} MiB",
        server.started_in,
        server.rss_mib()
    );
    let body = get_body(&server.ingress, &format!("/m{}", modules - 1)).await;
    assert_eq!(body, format!("m{}", modules - 1));
    server.stop();
}

/// The same component and load through `wasmtime serve` (wasmtime-cli 48).
async fn wasmtime_serve_baseline(
    requests: usize,
    concurrency: usize,
) -> Option<(f64, Duration, Duration)> {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-modules/target/wasm32-wasip2/release/http_hello.wasm");
    let addr = "127.0.0.1:18093";
    let mut child = Command::new("wasmtime")
        .args([
            "serve",
            "-S",
            "cli",
            "-S",
            "config",
            "-S",
            "config-var=greeting=Hello",
            "--addr",
            addr,
        ])
        .arg(&wasm)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    load(addr, "/hello/warm", 2000, concurrency).await;
    let result = load(addr, "/hello/bench", requests, concurrency).await;
    let _ = child.kill();
    let _ = child.wait();
    Some(result)
}

async fn get_body(addr: &str, path: &str) -> String {
    let (_, body) = request(addr, "GET", path, &[], Bytes::new()).await.unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}
