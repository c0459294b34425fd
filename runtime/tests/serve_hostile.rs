//! `warden serve` attacked as a hostile deployer and as anonymous clients
//! would (issue: "must hold against hostile deployers and anonymous
//! clients"). Each test checks the effect — the server's memory and
//! descriptors, the module's state, the audit log, the log file, the route
//! owner — and that another module keeps serving.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use warden_runtime::server::auth::sha256_hex;

mod common;

use common::*;

/// Deploys the well-behaved bystander at `/ok` and checks it answers.
async fn bystander(s: &Server) {
    s.upload(
        &guest("http-faulty"),
        &faulty_manifest("ok", "1.0.0", "fine", "/ok"),
        true,
    )
    .await
    .unwrap();
    still_serving(s).await;
}

async fn still_serving(s: &Server) {
    assert_eq!(get(&s.ingress, "/ok").await, (200, "fine".into()));
}

/// Deploys the event probe as `name` at `/name`, granted to publish `topic`.
async fn event_probe(s: &Server, name: &str, topic: &str) {
    let grant = format!("[grants.events]\npublish = [\"{topic}\"]\n");
    s.upload(&guest("event-probe"), &probe_manifest(name, &grant), true)
        .await
        .unwrap();
}

fn open_fds(s: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", s.child.id()))
        .unwrap()
        .count()
}

/// Whether the server's end of its connection with `client` is still
/// open (ESTABLISHED in /proc/net/tcp); once the server closes it, its
/// end moves on even while the client still has unread data.
fn established(server: &str, client: std::net::SocketAddr) -> bool {
    let hex = |a: std::net::SocketAddr| match a {
        std::net::SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        v6 => panic!("IPv4 only: {v6}"),
    };
    let (local, remote) = (hex(server.parse().unwrap()), hex(client));
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3).then(|| (f[1].to_string(), f[2].to_string(), f[3].to_string()))
        })
        .any(|(l, r, state)| l == local && r == remote && state == "01")
}

/// A component of `depth` components each nested in the previous one,
/// encoded directly (a text parser would recurse as deep).
fn nested_components(depth: usize) -> Vec<u8> {
    const HEADER: [u8; 8] = [0, b'a', b's', b'm', 0x0d, 0, 0x01, 0];
    let mut inner = HEADER.to_vec();
    for _ in 0..depth {
        let mut outer = HEADER.to_vec();
        outer.push(4); // component section
        leb128(&mut outer, inner.len());
        outer.extend_from_slice(&inner);
        inner = outer;
    }
    inner
}

fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_component_bomb_is_refused_before_compiling_and_the_server_stays_small() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    bystander(&s).await;
    let before = rss_kib(&s);
    // ~240 KB: the shape that cost over 4 GB to validate.
    let bomb = nested_components(4000);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let manifest = "[module]\nname = \"bomb\"\nversion = \"1.0.0\"\n";
    let started = Instant::now();
    let err = s.upload(&bomb, manifest, false).await.unwrap_err();
    assert!(
        err.contains("422") && err.contains("nesting depth"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let grown = rss_kib(&s).saturating_sub(before);
    assert!(grown < 64 << 10, "server grew by {grown} KiB");
    still_serving(&s).await;
    let (_, list) = http(&s.admin, "GET", "/v1/modules", Some(VIEWER), b"").await;
    assert!(!list.contains("bomb"), "nothing stored: {list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiling_past_its_memory_or_time_budget_fails_in_the_worker_not_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "compile-memory = \"8 MiB\"");
    let err = s
        .upload(
            &guest("http-faulty"),
            &faulty_manifest("big", "1.0.0", "x", "/big"),
            false,
        )
        .await
        .unwrap_err();
    assert!(
        err.contains("422") && err.contains("memory") && err.contains("8 MiB"),
        "{err}"
    );
    // The server itself is fine and compiles nothing in-process.
    assert_eq!(
        http(&s.admin, "GET", "/v1/modules", Some(VIEWER), b"")
            .await
            .0,
        200
    );
    drop(s);

    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "compile-timeout = \"1ms\"");
    let err = s
        .upload(
            &guest("http-faulty"),
            &faulty_manifest("slow", "1.0.0", "x", "/slow"),
            false,
        )
        .await
        .unwrap_err();
    assert!(err.contains("422") && err.contains("took longer"), "{err}");
    assert_eq!(
        http(&s.admin, "GET", "/v1/modules", Some(VIEWER), b"")
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_refused_requests_never_takes_a_module_down() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "failure-threshold = 2");
    let manifest = "[module]\nname = \"limited\"\nversion = \"1.0.0\"\n[limits]\nrate = \"2/s\"\n[http]\nroute = \"/l\"\n[config]\ngreeting = \"up\"\n";
    s.upload(&guest("http-faulty"), manifest, true)
        .await
        .unwrap();
    let burst: Vec<_> = (0..30)
        .map(|_| {
            let ingress = s.ingress.clone();
            tokio::spawn(async move { get(&ingress, "/l").await.0 })
        })
        .collect();
    let mut refused = 0;
    for r in burst {
        if r.await.unwrap() == 429 {
            refused += 1;
        }
    }
    assert!(refused >= 20, "{refused} of 30 refused");
    let detail = s.client(VIEWER).get("/v1/modules/limited").await.unwrap();
    assert_eq!(detail["state"], "active", "{detail}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&s.ingress, "/l").await, (200, "up".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_schema_that_costs_two_to_the_depth_is_refused_while_ingress_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    bystander(&s).await;
    // d0 = allOf[d1 x4], d1 = allOf[d2 x4], ...: 4^10 checks.
    let mut schema = String::from("[config-schema]\n\"$ref\" = \"#/$defs/d0\"\n");
    for i in 0..10 {
        let r = format!("{{ \"$ref\" = \"#/$defs/d{}\" }}", i + 1);
        schema.push_str(&format!(
            "[config-schema.\"$defs\".d{i}]\nallOf = [{r}, {r}, {r}, {r}]\n"
        ));
    }
    schema.push_str("[config-schema.\"$defs\".d10]\ntype = \"object\"\n");
    let manifest = faulty_manifest("schema", "1.0.0", "x", "/schema") + &schema;
    let upload = s.spawn_upload(&guest("http-faulty"), manifest, false);
    // The ingress keeps answering while the upload is checked.
    while !upload.is_finished() {
        let started = Instant::now();
        still_serving(&s).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "ingress stalled"
        );
    }
    let err = upload.await.unwrap().unwrap_err();
    assert!(err.contains("422") && err.contains("too costly"), "{err}");
    still_serving(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_flood_is_stopped_by_its_budget_and_aggregated_in_the_audit_log() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "failure-threshold = 1000");
    bystander(&s).await;
    // Granted one topic; every publish to another is denied.
    event_probe(&s, "flooder", "mine").await;
    let log_before = s.stderr().len();
    // Each denial names a 3,000-byte topic: the stored detail is cut.
    let topic = "t".repeat(3000);
    for _ in 0..20 {
        let (status, body) = get(&s.ingress, &format!("/flooder/{topic}?repeat=100000")).await;
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("max-denials"), "{body}");
        still_serving(&s).await;
    }
    // Every denial is counted...
    let (_, metrics) = http(&s.admin, "GET", "/metrics", Some(VIEWER), b"").await;
    let denied: u64 = metrics
        .lines()
        .find(|l| l.starts_with("warden_denials_total{module=\"flooder\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no denial counter: {metrics}"));
    assert!((20 * 100..=20 * 102).contains(&denied), "{denied}");
    // ...a few are stored and logged in full, the rest as one summary per window.
    let mut stored = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let audit = s
            .client(VIEWER)
            .get("/v1/audit?module=flooder&limit=10000")
            .await
            .unwrap();
        stored = audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "denied")
            .cloned()
            .collect::<Vec<Value>>();
        if stored
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains("suppressed"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let suppressed: u64 = stored
        .iter()
        .filter_map(|e| {
            e["detail"]
                .as_str()?
                .split(" more ")
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let full = stored.len() as u64
        - stored
            .iter()
            .filter(|e| e["detail"].as_str().unwrap().contains("suppressed"))
            .count() as u64;
    assert!(suppressed > 0, "a summary entry: {stored:?}");
    for e in &stored {
        let detail = e["detail"].as_str().unwrap();
        assert!(
            detail.len() < 1200,
            "a {}-byte detail was stored",
            detail.len()
        );
    }
    assert!(full <= 40, "{full} stored in full");
    assert_eq!(full + suppressed, denied, "nothing silently lost");
    let grown = s.stderr().len() - log_before;
    assert!(grown < 256 << 10, "log grew by {grown} bytes");
    still_serving(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_printing_in_a_loop_costs_itself_log_lines_not_the_host_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    bystander(&s).await;
    event_probe(&s, "chatty", "t").await;
    let log_before = s.stderr().len();
    for _ in 0..10 {
        assert_eq!(get(&s.ingress, "/chatty/t?log=2000").await.0, 200);
    }
    still_serving(&s).await;
    // Ten invocations printed 20,000 lines; the budget logs 200 a second.
    let log = s.stderr();
    let grown = log.len() - log_before;
    assert!(grown < 512 << 10, "log grew by {grown} bytes");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    get(&s.ingress, "/chatty/t?log=1").await;
    assert!(
        s.stderr().contains("guest log lines suppressed"),
        "the suppression is reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_activations_of_one_route_leave_exactly_one_owner_and_nesting_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    let component = guest("http-faulty");
    let racers: Vec<_> = (0..6)
        .map(|i| {
            let manifest = faulty_manifest(
                &format!("racer-{i}"),
                "1.0.0",
                &format!("racer-{i}"),
                "/race",
            );
            s.spawn_upload(&component, manifest, true)
        })
        .collect();
    let mut winners = Vec::new();
    for r in racers {
        match r.await.unwrap() {
            Ok(v) => winners.push(v["module"].as_str().unwrap().to_string()),
            Err(e) => assert!(e.contains("409") && e.contains("/race"), "{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let list = s.client(VIEWER).get("/v1/modules").await.unwrap();
    let active: Vec<_> = list["modules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "active")
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(active, winners);
    assert_eq!(get(&s.ingress, "/race/x").await, (200, winners[0].clone()));

    // A sub-route of another module's route is refused, both ways round.
    for (name, route) in [("sub", "/race/admin"), ("parent", "/")] {
        let err = s
            .upload(
                &component,
                &faulty_manifest(name, "1.0.0", "mine", route),
                true,
            )
            .await
            .unwrap_err();
        assert!(err.contains("409") && err.contains("nested"), "{err}");
    }
    assert_eq!(
        get(&s.ingress, "/race/admin").await,
        (200, winners[0].clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_activating_one_route_at_once_end_with_one_owner() {
    let pg = PgRegistry::create("route_race").await;
    let tmp = tempfile::tempdir().unwrap();
    let a = Server::start(&tmp.path().join("a"), &pg.config());
    let b = Server::start(&tmp.path().join("b"), &pg.config());
    let component = guest("http-faulty");
    for round in 0..4 {
        let route = format!("/round-{round}");
        let (left, right) = (format!("left-{round}"), format!("right-{round}"));
        let (lm, rm) = (
            faulty_manifest(&left, "1.0.0", &left, &route),
            faulty_manifest(&right, "1.0.0", &right, &route),
        );
        let (l, r) = tokio::join!(
            a.upload(&component, &lm, true),
            b.upload(&component, &rm, true),
        );
        let winner = match (l, r) {
            (Ok(_), Err(e)) => {
                assert!(e.contains("409"), "{e}");
                left
            }
            (Err(e), Ok(_)) => {
                assert!(e.contains("409"), "{e}");
                right
            }
            other => panic!("round {round}: exactly one must win: {other:?}"),
        };
        for node in [&a, &b] {
            eventually("both nodes route to the winner", async || {
                get(&node.ingress, &route).await == (200, winner.clone())
            })
            .await;
        }
    }
    drop((a, b));
    pg.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_routes_are_allowed_when_the_operator_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "allow-nested-routes = true");
    let component = guest("http-faulty");
    s.upload(
        &component,
        &faulty_manifest("outer", "1.0.0", "outer", "/a"),
        true,
    )
    .await
    .unwrap();
    s.upload(
        &component,
        &faulty_manifest("inner", "1.0.0", "inner", "/a/b"),
        true,
    )
    .await
    .unwrap();
    assert_eq!(get(&s.ingress, "/a/b/c").await, (200, "inner".into()));
    assert_eq!(get(&s.ingress, "/a/c").await, (200, "outer".into()));
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: &str) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(to.parse().unwrap()).await
}

/// True once the server has closed `conn` (read returns EOF or an error).
async fn closed_by_server(conn: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_stalled_clients_pin_neither_descriptors_nor_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(
        tmp.path(),
        "header-timeout = \"1s\"\nbody-timeout = \"1s\"\nmax-connections-per-ip = 20\nbody-budget = \"8 MiB\"",
    );
    bystander(&s).await;
    let fds_before = open_fds(&s);

    // 200 connections from one address, each sending half a request head.
    let mut slow = Vec::new();
    for _ in 0..200 {
        if let Ok(mut c) = connect_from("127.0.0.2", &s.ingress).await {
            let _ = c.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n").await;
            slow.push(c);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = open_fds(&s) - fds_before;
    assert!(held <= 20 + 5, "{held} descriptors held for one client");
    // Others are served meanwhile.
    still_serving(&s).await;
    // The server drops them at the header timeout.
    for c in slow.iter_mut().take(5) {
        assert!(
            closed_by_server(c, Duration::from_secs(5)).await,
            "closed by the server"
        );
    }
    drop(slow);

    // Stalled bodies: each declares 4 MiB, sends 3 MiB and stops.
    let rss_before = rss_kib(&s);
    let mut stalled = Vec::new();
    for _ in 0..10 {
        let mut c = connect_from("127.0.0.3", &s.ingress).await.unwrap();
        c.write_all(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n")
            .await
            .unwrap();
        let _ = c.write_all(&vec![b'x'; 3 << 20]).await;
        stalled.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = rss_kib(&s).saturating_sub(rss_before);
    assert!(grown < 48 << 10, "stalled bodies pinned {grown} KiB");
    still_serving(&s).await;
    // One client gets a quarter of the budget: another still gets a body in.
    let mut other = connect_from("127.0.0.4", &s.ingress).await.unwrap();
    other
        .write_all(
            b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .await
        .unwrap();
    let mut answer = String::new();
    other.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut answers = Vec::new();
    for c in &mut stalled {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .map(|r| r.unwrap_or(0))
            .unwrap_or(0);
        answers.push(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        );
    }
    assert!(
        answers.iter().filter(|a| a.contains("503")).count() >= 6,
        "over the budget: {answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|a| a.contains("503") || a.contains("408") || a.is_empty()),
        "{answers:?}"
    );
    still_serving(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_their_answers_lose_their_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "write-timeout = \"1s\"");
    bystander(&s).await;
    // 200 KiB per answer: 100 pipelined requests fill any socket buffers.
    let big = "x".repeat(200 << 10);
    s.upload(
        &guest("http-faulty"),
        &faulty_manifest("big", "1.0.0", &big, "/big"),
        true,
    )
    .await
    .unwrap();
    let mut readers_never = Vec::new();
    for _ in 0..10 {
        let mut c = connect_from("127.0.0.5", &s.ingress).await.unwrap();
        let pipelined = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100);
        let _ = c.write_all(pipelined.as_bytes()).await;
        readers_never.push(c);
    }
    let clients: Vec<_> = readers_never
        .iter()
        .map(|c| c.local_addr().unwrap())
        .collect();
    let open = async || {
        clients
            .iter()
            .filter(|c| established(&s.ingress, **c))
            .count()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(open().await, 10, "the connections are open");
    still_serving(&s).await;
    // The server gives up on each once a write has been blocked 1 s.
    eventually("the connections closed by the server", async || {
        open().await == 0
    })
    .await;
    still_serving(&s).await;

    still_serving(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_scoped_to_their_modules_and_quota_and_admins_alone_delete() {
    const ORDERS: &str = "orders-team-token-5e1d";
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(
        tmp.path(),
        &format!(
            "[[server.tokens]]\nname = \"orders-team\"\nsha256 = \"{}\"\nrole = \"deployer\"\nmodules = [\"orders-*\"]\nquota = \"150 KiB\"\nbackends = [\"sql.local\"]\n",
            sha256_hex(ORDERS)
        ),
    );
    let component = guest("http-faulty");
    let orders = s.client(ORDERS);
    let upload = |name: &str, version: &str, extra: &str| {
        let manifest = faulty_manifest(name, version, name, &format!("/{name}")) + extra;
        let (orders, component) = (orders.clone(), component.clone());
        async move {
            orders
                .post_multipart(
                    "/v1/modules?activate=true",
                    &[
                        ("component", "c.wasm", component.as_slice()),
                        ("manifest", "warden.toml", manifest.as_bytes()),
                    ],
                )
                .await
                .map_err(|e| e.0)
        }
    };
    upload("orders-api", "1.0.0", "").await.unwrap();
    // Outside its scope: refused before anything is compiled or stored.
    let err = upload("billing", "1.0.0", "").await.unwrap_err();
    assert!(err.contains("403") && err.contains("billing"), "{err}");
    // Another team's directories and backends are out of its reach too.
    let fs = "[grants.fs]\n\"/loot\" = { host = \"billing/data\", access = \"read-write\" }\n";
    let err = upload("orders-fs", "1.0.0", fs).await.unwrap_err();
    assert!(err.contains("403") && err.contains("grants.fs"), "{err}");
    assert!(
        !s.dir.join("data/files/billing").exists(),
        "nothing created"
    );
    // Raw network access to the operator's own network or to a backend
    // host would go around the capabilities and their scoping.
    for entry in [
        "127.0.0.1:6379",
        "localhost:5432",
        "[::ffff:10.0.0.7]:5432",
        "169.254.169.254:80",
        "192.168.1.10:3306",
    ] {
        let net = format!("[grants.net]\nallow = [\"{entry}\"]\n");
        let err = upload("orders-net", "1.0.0", &net).await.unwrap_err();
        assert!(
            err.contains("403") && err.contains("grants.net.allow") && err.contains(entry),
            "{entry}: {err}"
        );
    }
    let other_root = "[grants.fs]\n\"/m\" = { host = \"orders-api\", root = \"media\" }\n";
    let err = upload("orders-fs", "1.0.0", other_root).await.unwrap_err();
    assert!(
        err.contains("403") && err.contains("fs root \"media\""),
        "{err}"
    );
    assert_eq!(
        http(&s.admin, "GET", "/v1/modules/orders-net", Some(ADMIN), b"")
            .await
            .0,
        404,
        "nothing stored"
    );
    let kv = "[grants.kv.c]\nbackend = \"redis\"\nprefix = \"x:\"\n";
    let err = upload("orders-kv", "1.0.0", kv).await.unwrap_err();
    assert!(err.contains("403") && err.contains("kv.redis"), "{err}");
    // Over its quota (two versions of ~92 KiB each).
    let err = upload("orders-api", "2.0.0", "").await.unwrap_err();
    assert!(err.contains("403") && err.contains("quota"), "{err}");
    // The version it already stored, sent again, costs nothing more.
    upload("orders-api", "1.0.0", "").await.unwrap();
    // Routes outside its names are not its to claim: `/` would put every
    // other tenant's route under its own.
    for route in ["/", "/billing", "/orders"] {
        let manifest = faulty_manifest("orders-web", "1.0.0", "x", route);
        let err = orders
            .post_multipart(
                "/v1/modules",
                &[
                    ("component", "c.wasm", component.as_slice()),
                    ("manifest", "warden.toml", manifest.as_bytes()),
                ],
            )
            .await
            .unwrap_err()
            .0;
        assert!(
            err.contains("403") && err.contains("route"),
            "{route}: {err}"
        );
    }
    // Other bytes under that version are counted: refused before compiling.
    let other = faulty_manifest("orders-api", "1.0.0", "orders-api", "/orders-api");
    let err = orders
        .post_multipart(
            "/v1/modules",
            &[
                ("component", "c.wasm", guest("http-hello").as_slice()),
                ("manifest", "warden.toml", other.as_bytes()),
            ],
        )
        .await
        .unwrap_err()
        .0;
    assert!(err.contains("403") && err.contains("quota"), "{err}");
    // Another team's module: invisible and untouchable.
    s.upload(
        &component,
        &faulty_manifest("billing", "1.0.0", "b", "/billing"),
        true,
    )
    .await
    .unwrap();
    let list = orders.get("/v1/modules").await.unwrap();
    assert!(!list.to_string().contains("billing"), "{list}");
    for (method, path) in [
        ("GET", "/v1/modules/billing"),
        ("POST", "/v1/modules/billing/pause"),
        ("GET", "/metrics"),
        ("GET", "/v1/backends"),
    ] {
        assert_eq!(
            http(&s.admin, method, path, Some(ORDERS), b"").await.0,
            403,
            "{path}"
        );
    }
    assert_eq!(get(&s.ingress, "/billing").await, (200, "b".into()));
    // Deleting is the admin's; the token list is the admin's and holds no secret.
    assert_eq!(
        http(
            &s.admin,
            "DELETE",
            "/v1/modules/orders-api",
            Some(ORDERS),
            b""
        )
        .await
        .0,
        403
    );
    assert_eq!(
        http(&s.admin, "GET", "/v1/tokens", Some(DEPLOYER), b"")
            .await
            .0,
        403
    );
    let (status, tokens) = http(&s.admin, "GET", "/v1/tokens", Some(ADMIN), b"").await;
    assert_eq!(status, 200, "{tokens}");
    assert!(
        tokens.contains("orders-team") && tokens.contains("orders-*"),
        "{tokens}"
    );
    assert!(
        !tokens.contains(&sha256_hex(ORDERS)) && !tokens.contains(ORDERS),
        "{tokens}"
    );
    let tokens: Value = serde_json::from_str(&tokens).unwrap();
    let team = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders-team")
        .unwrap();
    let manifest = faulty_manifest("orders-api", "1.0.0", "orders-api", "/orders-api");
    assert_eq!(team["stored"], component.len() + manifest.len());
    assert_eq!(
        http(
            &s.admin,
            "DELETE",
            "/v1/modules/orders-api",
            Some(ADMIN),
            b""
        )
        .await
        .0,
        204
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_cron_date_is_refused_at_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "");
    let manifest =
        "[module]\nname = \"never\"\nversion = \"1.0.0\"\n[[cron]]\nschedule = \"0 0 30 2 *\"\n";
    let err = s.upload(&guest("hello"), manifest, true).await.unwrap_err();
    assert!(
        err.contains("422") && err.contains("cron[0].schedule") && err.contains("no occurrence"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiles_are_bounded_in_number_and_a_chatty_failure_does_not_stall_one() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), "compile-concurrency = 1");
    // Many uploads at once, none cached yet: one compiles, a few wait (no
    // thread each), the rest are told the host is busy.
    let component = guest("http-faulty");
    let uploads: Vec<_> = (0..16)
        .map(|i| {
            let manifest =
                faulty_manifest(&format!("busy-{i}"), "1.0.0", "x", &format!("/busy-{i}"));
            s.spawn_upload(&component, manifest, false)
        })
        .collect();
    let mut busy = 0;
    let mut stored = 0;
    for u in uploads {
        match u.await.unwrap() {
            Ok(_) => stored += 1,
            Err(e) if e.contains("503") && e.contains("busy") => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(stored >= 1 && busy >= 1, "stored {stored}, busy {busy}");

    // A component whose error is 100 KB long (two 50 KB import names)
    // fails at once, not at the compile deadline.
    let name = format!("x:y/{}", "z".repeat(50_000));
    let wat = format!("(component (import \"{name}\" (instance)) (import \"{name}\" (instance)))");
    let started = Instant::now();
    let err = s
        .upload(
            &wat::parse_str(&wat).unwrap_or_default(),
            &faulty_manifest("chatty", "1.0.0", "x", "/chatty"),
            false,
        )
        .await
        .unwrap_err();
    assert!(
        err.contains("422") && !err.contains("took longer"),
        "{}",
        &err[..err.len().min(300)]
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // A manifest too large to store with every version is refused unread.
    let huge =
        faulty_manifest("huge", "1.0.0", "x", "/huge") + &format!("# {}\n", "x".repeat(300 << 10));
    let err = s.upload(&component, &huge, false).await.unwrap_err();
    assert!(
        err.contains("400") && err.contains("at most"),
        "{}",
        &err[..err.len().min(300)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_racing_on_two_nodes_cannot_together_pass_a_quota() {
    const TEAM: &str = "racing-team-token-77b1";
    let pg = PgRegistry::create("quota_race").await;
    let config = format!(
        "{}\n[[server.tokens]]\nname = \"racers\"\nsha256 = \"{}\"\nrole = \"deployer\"\nquota = \"150 KiB\"\n",
        pg.config(),
        sha256_hex(TEAM)
    );
    let tmp = tempfile::tempdir().unwrap();
    let nodes = [
        Server::start(&tmp.path().join("a"), &config),
        Server::start(&tmp.path().join("b"), &config),
    ];
    let component = guest("http-faulty");
    // Both nodes compile the component once, so the racing uploads below
    // reach the registry within milliseconds of each other.
    for (i, node) in nodes.iter().enumerate() {
        let warm = faulty_manifest(&format!("warm{i}"), "1.0.0", "w", &format!("/w{i}"));
        node.upload(&component, &warm, false).await.unwrap();
    }
    // Each version costs ~92 KiB: the quota holds one.
    let racers = (0..6).map(|i| {
        let client = nodes[i % 2].client(TEAM);
        let manifest = faulty_manifest(&format!("racer{i}"), "1.0.0", "r", &format!("/r{i}"));
        let component = component.clone();
        async move {
            client
                .post_multipart(
                    "/v1/modules",
                    &[
                        ("component", "c.wasm", component.as_slice()),
                        ("manifest", "warden.toml", manifest.as_bytes()),
                    ],
                )
                .await
                .map_err(|e| e.0)
        }
    });
    let results = futures_util::future::join_all(racers).await;
    let stored = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(stored, 1, "{results:?}");
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(err.contains("quota"), "{err}");
    }
    // The effect: the registry holds one version of the token.
    let (status, tokens) = http(&nodes[0].admin, "GET", "/v1/tokens", Some(ADMIN), b"").await;
    assert_eq!(status, 200, "{tokens}");
    let tokens: Value = serde_json::from_str(&tokens).unwrap();
    let racers = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "racers")
        .unwrap();
    assert!(racers["stored"].as_u64().unwrap() <= 150 * 1024, "{racers}");
    drop(nodes);
    pg.drop_db().await;
}
