//! The same list over HTTP, under the manifest's `[http] route`:
//! `GET` lists, `POST` with a title adds, `POST …/<id>/done` completes,
//! `DELETE …/<id>` removes.

use warden_sdk::http::{read_body, respond};
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

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
                let title = String::from_utf8_lossy(&read_body(request, 64 * 1024))
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

wasi::http::proxy::export!(Todo);
