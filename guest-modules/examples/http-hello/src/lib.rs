//! An HTTP module: answers with a greeting from its `[config]`, the request
//! path, and the request body echoed back.

use warden_sdk::http::{read_body, respond};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct HttpHello;

impl wasi::exports::http::incoming_handler::Guest for HttpHello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let greeting = warden_sdk::config::get("greeting")
            .ok()
            .flatten()
            .unwrap_or_else(|| "Hello".into());
        let text = format!(
            "{greeting} from {} {}\n{}",
            method_name(&request),
            request.path_with_query().unwrap_or_default(),
            String::from_utf8_lossy(&read_body(request, 1 << 20)),
        );
        respond(out, 200, &text);
    }
}

fn method_name(request: &IncomingRequest) -> String {
    use wasi::http::types::Method;
    match request.method() {
        Method::Get => "GET".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Other(m) => m,
        other => format!("{other:?}").to_uppercase(),
    }
}

wasi::http::proxy::export!(HttpHello);
