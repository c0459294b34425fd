//! An HTTP module: answers with a greeting from its `[config]`, the request
//! path, and the request body echoed back.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

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
            String::from_utf8_lossy(&read_body(request)),
        );
        let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
            .expect("valid header");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body taken once");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("stream taken once");
        for chunk in text.as_bytes().chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .expect("writing the body");
        }
        drop(stream);
        OutgoingBody::finish(body, None).expect("finishing the body");
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

fn read_body(request: IncomingRequest) -> Vec<u8> {
    let mut data = Vec::new();
    let Ok(body) = request.consume() else {
        return data;
    };
    let Ok(stream) = body.stream() else {
        return data;
    };
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        data.extend_from_slice(&chunk);
    }
    data
}

wasi::http::proxy::export!(HttpHello);
