//! RabbitMQ through `warden serve` against the real broker on
//! 127.0.0.1:5672: declare, publish with confirms, get with ack/nack,
//! every way around the grant, and queue triggers with retries and dead
//! letters.

mod common;

use common::*;

const HOST: &str = "[amqp.r]\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\n\
                    [amqp.small]\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\nmax-channels = 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_use_amqp_only_within_their_grant_and_handlers_ack_or_dead_letter() {
    let id = unique();
    let n = |s: &str| format!("wa{id}.{s}");
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), HOST);
    let probe = guest("amqp-probe");
    s.deploy(&probe, "aq", &format!(
                "[grants.amqp.bus]\nbackend = \"r\"\npublish = [\"wa{id}.*\"]\nconsume = [\"{}\", \"{}\"]\ndeclare = [\"wa{id}.*\"]\n[grants.amqp.small]\nbackend = \"small\"\n",
                n("q"),
                n("dq")
            )).await;
    let call = async |op: &str, query: String, body: &[u8]| {
        http(
            &s.ingress,
            "POST",
            &format!("/aq/bus/{op}?{query}"),
            None,
            body,
        )
        .await
    };
    let ok = async |op: &str, query: String| {
        let (status, body) = call(op, query.clone(), b"").await;
        assert_eq!(status, 200, "{op} {query}: {body}");
        body
    };
    // Topology inside the grant.
    ok("declare-exchange", format!("name={}", n("ex"))).await;
    ok("declare-exchange", format!("name={}", n("dlx"))).await;
    ok("declare-queue", format!("name={}&dlx={}", n("q"), n("dlx"))).await;
    ok("declare-queue", format!("name={}", n("dq"))).await;
    ok(
        "bind",
        format!("queue={}&exchange={}&key=k", n("q"), n("ex")),
    )
    .await;
    ok(
        "bind",
        format!("queue={}&exchange={}&key={}", n("dq"), n("dlx"), n("q")),
    )
    .await;

    // Publish with confirm, get, ack.
    let (status, body) = call("publish", format!("exchange={}&key=k", n("ex")), b"one").await;
    assert_eq!((status, body.as_str()), (200, "published"));
    assert_eq!(
        ok("get", format!("queue={}&settle=ack", n("q"))).await,
        "one"
    );
    assert_eq!(
        ok("get", format!("queue={}&settle=ack", n("q"))).await,
        "empty"
    );
    // Left unsettled when the invocation ends: back in the queue.
    call("publish", format!("exchange={}&key=k", n("ex")), b"two").await;
    assert_eq!(
        ok("get", format!("queue={}&settle=none", n("q"))).await,
        "two"
    );
    assert_eq!(
        ok("get", format!("queue={}&settle=ack", n("q"))).await,
        "two"
    );

    // Every way around the grant fails closed, before the broker.
    let q = n("q");
    for (op, query, expected, what) in [
        (
            "publish",
            "exchange=amq.direct&key=x".to_string(),
            403,
            "not in grants.amqp.bus.publish",
        ),
        (
            "publish",
            "exchange=&key=other-queue".to_string(),
            403,
            "not in grants.amqp.bus.publish",
        ),
        (
            "declare-queue",
            "name=other-queue".to_string(),
            403,
            "not in grants.amqp.bus.declare",
        ),
        (
            "declare-queue",
            format!("name={q}&dlx=amq.fanout"),
            403,
            "dead-letter exchange \"amq.fanout\"",
        ),
        (
            "declare-exchange",
            "name=amq.evil".to_string(),
            403,
            "not in grants.amqp.bus.declare",
        ),
        (
            "bind",
            format!("queue={q}&exchange=amq.topic&key=%23"),
            403,
            "exchange \"amq.topic\"",
        ),
        (
            "get",
            "queue=other-queue&settle=ack".to_string(),
            403,
            "not in grants.amqp.bus.consume",
        ),
        (
            "publish",
            format!("exchange={}&key=k&size=2000000", n("ex")),
            413,
            "payload is 2000000 bytes",
        ),
        (
            "publish",
            format!("exchange={}&key=k&headers=100", n("ex")),
            413,
            "100 headers",
        ),
        (
            "publish",
            format!("exchange={}&key=nobody", n("ex")),
            404,
            "no queue is bound",
        ),
        (
            "publish",
            format!("exchange={}&key=k", n("missing")),
            404,
            "NOT_FOUND",
        ),
    ] {
        let (status, body) = call(op, query.clone(), b"x").await;
        assert_eq!(status, expected, "{op} {query}: {body}");
        assert!(body.contains(what), "{op} {query}: {body}");
    }
    // Settling twice, and channels beyond the per-call cap or the pool.
    call("publish", format!("exchange={}&key=k", n("ex")), b"three").await;
    let (status, body) = call("get", format!("queue={q}&settle=ack-twice"), b"").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("already acked or nacked"), "{body}");
    assert_eq!(ok("get", format!("queue={q}&settle=ack")).await, "empty");
    assert_eq!(ok("channels", "n=4".into()).await, "opened 4");
    let (status, body) = call("channels", "n=5".into(), b"").await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("at most 4 amqp channels per invocation"),
        "{body}"
    );
    let (status, body) = http(&s.ingress, "POST", "/aq/small/channels?n=3", None, b"").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("all 2 channels busy"), "{body}");
    // The pool is whole again once that call ended.
    let (status, body) = http(&s.ingress, "POST", "/aq/small/channels?n=2", None, b"").await;
    assert_eq!((status, body.as_str()), (200, "opened 2"));

    let (status, body) = http(&s.ingress, "POST", "/aq/nope/get?queue=x", None, b"").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("amqp grant \"nope\" not in manifest"),
        "{body}"
    );

    // A consumer of another module's queue cannot be uploaded.
    let err = s
        .upload(
            &probe,
            &probe_manifest(
                "thief",
                &format!("[grants.amqp.bus]\nbackend = \"r\"\nconsume = [\"mine\"]\n[[subscribe]]\nsource = \"amqp:r\"\ntopic = \"{q}\"\n"),
            ),
            true,
        )
        .await
        .unwrap_err();
    assert!(err.contains("subscribe[0].topic"), "{err}");
    // Nor one that dead-letters where it may not publish.
    let err = s
        .upload(
            &probe,
            &probe_manifest(
                "sneak",
                &format!("[grants.amqp.bus]\nbackend = \"r\"\nconsume = [\"{q}\"]\n[[subscribe]]\nsource = \"amqp:r\"\ntopic = \"{q}\"\ndead-letter = \"amq.direct\"\n"),
            ),
            true,
        )
        .await
        .unwrap_err();
    assert!(err.contains("subscribe[0].dead-letter"), "{err}");

    // Queue trigger: ack after success; a failure is retried, then
    // dead-lettered to the exchange with the error in a header.
    s.deploy(&probe, "asub", &format!(
                "[grants.amqp.bus]\nbackend = \"r\"\nconsume = [\"{q}\"]\npublish = [\"{}/{q}\"]\n\
                 [[subscribe]]\nsource = \"amqp:r\"\ntopic = \"{q}\"\nmax-retries = 1\ndead-letter = \"{}\"\n",
                n("dlx"),
                n("dlx")
            )).await;
    call("publish", format!("exchange={}&key=k", n("ex")), b"hi").await;
    eventually("the queue trigger handled it", async || {
        s.stderr()
            .contains(&format!("handled amqp:r {q} hi attempt 1 []"))
    })
    .await;
    call("publish", format!("exchange={}&key=k", n("ex")), b"fail").await;
    eventually("retried, then dead-lettered", async || {
        s.stderr()
            .contains(&format!("handled amqp:r {q} fail attempt 2"))
    })
    .await;
    let mut dead = String::new();
    for _ in 0..100 {
        dead = ok("get", format!("queue={}&settle=ack", n("dq"))).await;
        if dead != "empty" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(dead, "fail");
    assert!(
        !s.stderr()
            .contains(&format!("handled amqp:r {q} fail attempt 3"))
    );
    // The handled message was acked: nothing left in the queue.
    eventually("the queue is empty", async || {
        let (_, body) = call("get", format!("queue={q}&settle=nack"), b"").await;
        body == "empty"
    })
    .await;
    eventually("denials and the dead letter audited", async || {
        let kinds = audit_kinds(&s, "").await;
        kinds.contains(&("aq".into(), "denied".into()))
            && kinds.contains(&("asub".into(), "dead-letter".into()))
    })
    .await;
}
