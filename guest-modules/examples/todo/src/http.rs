//! The same list over HTTP, under the manifest's `[http] route`:
//! `GET` lists, `POST` with a title adds, `POST …/<id>/done` completes,
//! `DELETE …/<id>` removes.

use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

use crate::Todo;
use crate::exports::warden_examples::todo::api::Guest;

impl wasi::exports::http::incoming_handler::Guest for Todo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let segments: Vec<&str> = path.split(['/', '?']).filter(|s| !s.is_empty()).collect();
        // segments[0] is the route itself.
        let id = segments.get(1).and_then(|s| s.parse::<i64>().ok());
        let method = request.method();
        let (status, text) = match (method, id, segments.get(2).copied()) {
            (Method::Get, None, _) => match Todo::list() {
                Ok(items) => (
                    200,
                    items
                        .iter()
                        .map(|i| {
                            format!(
                                "[{}] {} {}\n",
                                if i.done { "x" } else { " " },
                                i.id,
                                i.title
                            )
                        })
                        .collect(),
                ),
                Err(e) => (500, e),
            },
            (Method::Post, None, _) => {
                let title = String::from_utf8_lossy(&read_body(request))
                    .trim()
                    .to_string();
                match Todo::add(title.clone()) {
                    Ok(id) => {
                        // Tell subscribers; the to-do is stored either way.
                        if let Err(e) = warden_sdk::events::publish("todo.added", title.as_bytes())
                        {
                            eprintln!("todo.added not published: {e:?}");
                        }
                        (201, format!("{id}\n"))
                    }
                    Err(e) => (400, e),
                }
            }
            (Method::Post, Some(id), Some("done")) => found(Todo::complete(id)),
            (Method::Delete, Some(id), None) => found(Todo::remove(id)),
            _ => (
                404,
                "GET, POST a title, POST <id>/done, DELETE <id>\n".into(),
            ),
        };
        respond(out, status, &text);
    }
}

fn found(result: Result<bool, String>) -> (u16, String) {
    match result {
        Ok(true) => (200, "ok\n".into()),
        Ok(false) => (404, "no such to-do\n".into()),
        Err(e) => (500, e),
    }
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
        .expect("valid header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
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

fn read_body(request: IncomingRequest) -> Vec<u8> {
    let mut data = Vec::new();
    let Ok(body) = request.consume() else {
        return data;
    };
    let Ok(stream) = body.stream() else {
        return data;
    };
    // Titles are short; a bounded read keeps a huge body from growing memory.
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        data.extend_from_slice(&chunk);
        if data.len() > 64 * 1024 {
            break;
        }
    }
    data
}

wasi::http::proxy::export!(Todo);
