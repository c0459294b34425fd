//! Network grants: egress only to granted host:port, re-checked against the
//! resolved address, for raw sockets and outgoing wasi:http alike.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use warden_capability::AuditKind;
use warden_runtime::RunError;
use warden_tests::{load, load_confined, manifest_header};

/// A one-route HTTP server on 127.0.0.1 that answers 200 until the test ends.
async fn local_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
                    )
                    .await;
            });
        }
    });
    port
}

async fn probe(
    allow: &[String],
    addr: &str,
    via: &str,
) -> (Result<String, RunError>, Vec<warden_capability::AuditEvent>) {
    let tmp = tempfile::tempdir().unwrap();
    let grants = if allow.is_empty() {
        String::new()
    } else {
        let list: Vec<_> = allow.iter().map(|a| format!("{a:?}")).collect();
        format!("[grants.net]\nallow = [{}]\n", list.join(", "))
    };
    let manifest = format!(
        "{}[limits]\ntimeout = \"5s\"\n{grants}[config]\naddr = \"{addr}\"\nvia = \"{via}\"\n",
        manifest_header("net-probe")
    );
    let (module, audit) = load("net-probe", &manifest, tmp.path()).expect("load");
    let result = module.run_task().await.map(|o| o.stdout);
    (result, audit.events())
}

fn assert_denied(
    result: &Result<String, RunError>,
    audit: &[warden_capability::AuditEvent],
    what: &str,
) {
    match result {
        Err(RunError::Failed(_)) => {}
        other => panic!("{what}: expected the guest to be refused, got {other:?}"),
    }
    assert!(
        audit
            .iter()
            .any(|e| e.kind == AuditKind::Denied && e.rule == "net"),
        "{what}: the denial is audited: {audit:?}"
    );
}

#[tokio::test]
async fn granted_local_server_is_reachable_over_tcp_and_http() {
    let port = local_server().await;
    let grant = vec![format!("127.0.0.1:{port}")];
    let (tcp, _) = probe(&grant, &format!("127.0.0.1:{port}"), "tcp").await;
    assert_eq!(tcp.unwrap(), "HTTP/1.1 200 OK\n");
    let (http, _) = probe(&grant, &format!("127.0.0.1:{port}"), "http").await;
    assert_eq!(http.unwrap(), "HTTP 200\n");
}

#[tokio::test]
async fn non_granted_port_is_denied() {
    let port = local_server().await;
    let other = local_server().await;
    let grant = vec![format!("127.0.0.1:{port}")];
    for via in ["tcp", "http"] {
        let (result, audit) = probe(&grant, &format!("127.0.0.1:{other}"), via).await;
        assert_denied(&result, &audit, via);
    }
}

#[tokio::test]
async fn granted_name_resolving_to_loopback_is_denied() {
    let port = local_server().await;
    let grant = vec![format!("localhost:{port}")];
    for via in ["tcp", "http"] {
        let (result, audit) = probe(&grant, &format!("localhost:{port}"), via).await;
        assert_denied(&result, &audit, via);
    }
}

#[tokio::test]
async fn lookups_of_names_not_granted_are_denied() {
    let port = local_server().await;
    let grant = vec![format!("127.0.0.1:{port}")];
    let (result, audit) = probe(&grant, &format!("localhost:{port}"), "tcp").await;
    assert_denied(&result, &audit, "lookup");
    assert!(
        audit.iter().any(|e| e.detail.contains("name lookup")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn without_a_grant_the_component_is_rejected_before_running() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}[config]\naddr = \"127.0.0.1:1\"\n",
        manifest_header("net-probe")
    );
    let err = load("net-probe", &manifest, tmp.path())
        .err()
        .expect("must be rejected");
    let msg = err.to_string();
    assert!(msg.contains("wasi:sockets/tcp-create-socket"), "{msg}");
    assert!(msg.contains("wasi:http/outgoing-handler"), "{msg}");
}

#[tokio::test]
async fn a_scoped_tenants_module_reaches_no_internal_address_even_when_granted() {
    // A listener that counts the connections it gets: the effect.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(conn);
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    for via in ["tcp", "http"] {
        let manifest = format!(
            "{}[limits]\ntimeout = \"5s\"\n[grants.net]\nallow = [\"127.0.0.1:{port}\"]\n[config]\naddr = \"127.0.0.1:{port}\"\nvia = \"{via}\"\n",
            manifest_header("net-probe")
        );
        let (module, audit) =
            load_confined("net-probe", &manifest, tmp.path(), vec![]).expect("load");
        let result = module.run_task().await.map(|o| o.stdout);
        assert_denied(&result, &audit.events(), via);
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the internal server was reached"
    );
}
