//! Helpers for `wasi:http` handlers (feature `http`): read a request body
//! with a bound, answer with a status and a text body.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// The request body, read until its end or until more than `max` bytes
/// arrived (then what was read so far): a huge body cannot grow memory.
pub fn read_body(request: IncomingRequest, max: usize) -> Vec<u8> {
    let mut data = Vec::new();
    let Ok(body) = request.consume() else {
        return data;
    };
    let Ok(stream) = body.stream() else {
        return data;
    };
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        data.extend_from_slice(&chunk);
        if data.len() > max {
            break;
        }
    }
    data
}

/// Answers `status` with `text` as a `text/plain` body.
pub fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
        .expect("valid header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let body = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("stream taken once");
    // A blocking write takes at most 4096 bytes at once.
    for chunk in text.as_bytes().chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .expect("writing the body");
    }
    drop(stream);
    OutgoingBody::finish(body, None).expect("finishing the body");
}
