//! The wasi:http incoming handler path: requests in, responses out, and the
//! response body bounded by `max-output`.

use bytes::Bytes;
use warden_runtime::RunError;
use warden_tests::{load, manifest_header};

fn manifest(extra: &str) -> String {
    format!(
        "{}[http]\nroute = \"/hello\"\n{extra}",
        manifest_header("http-hello")
    )
}

fn request(body: &str) -> http::Request<Bytes> {
    http::Request::post("/hello")
        .body(Bytes::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn handler_answers_with_config_and_body() {
    let tmp = tempfile::tempdir().unwrap();
    let (module, _) = load(
        "http-hello",
        &manifest("[config]\ngreeting = \"Hi\"\n"),
        tmp.path(),
    )
    .unwrap();
    let (response, _) = module.handle_http(request("abc")).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        String::from_utf8(response.body).unwrap(),
        "Hi from POST /hello\nabc"
    );
}

#[tokio::test]
async fn large_response_body_hits_the_output_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let (module, audit) = load(
        "http-hello",
        &manifest("[limits]\nmax-output = \"1 KiB\"\n"),
        tmp.path(),
    )
    .unwrap();
    let err = module
        .handle_http(request(&"x".repeat(4096)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::Limit(l) if l.limit == "max-output"),
        "{err}"
    );
    assert_eq!(audit.events().len(), 1);
}

#[tokio::test]
async fn task_modules_are_not_http_handlers() {
    let tmp = tempfile::tempdir().unwrap();
    let (module, _) = load("hello", &manifest_header("hello"), tmp.path()).unwrap();
    let err = module.handle_http(request("")).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("does not export wasi:http/incoming-handler"),
        "{err}"
    );
}

#[tokio::test]
async fn a_handler_that_traps_is_a_trap_not_a_wait_for_the_timeout() {
    // The response outparam lives in the store: waiting for it after the
    // handler trapped used to last until `timeout`, reported as a timeout.
    let tmp = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}[limits]\ntimeout = \"30s\"\n[http]\nroute = \"/f\"\n",
        manifest_header("http-faulty")
    );
    let (module, _) = load("http-faulty", &manifest, tmp.path()).unwrap();
    let request = http::Request::get("/f/trap").body(Bytes::new()).unwrap();
    let err = module.handle_http(request).await.unwrap_err();
    assert!(matches!(&err, RunError::Trap(_)), "{err}");
}
