//! A small client of the management API for `warden module …`: plain
//! HTTP/1.1 over one TCP connection per call.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[derive(Clone)]
pub struct Client {
    /// `host:port` of the admin listener.
    authority: String,
    token: String,
}

/// A non-2xx answer, or no answer.
#[derive(Debug)]
pub struct ClientError(pub String);

impl Client {
    /// `server` is `http://host:port` (https is not served by warden itself).
    pub fn new(server: &str, token: String) -> Result<Self, ClientError> {
        let authority = server
            .strip_prefix("http://")
            .ok_or_else(|| ClientError(format!("--server {server:?} must start with http://")))?
            .trim_end_matches('/')
            .to_string();
        Ok(Self { authority, token })
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send("GET", path, None, Bytes::new()).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.send("DELETE", path, None, Bytes::new()).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(
            "POST",
            path,
            Some("application/json".into()),
            Bytes::from(body.to_string()),
        )
        .await
    }

    /// `parts`: (field name, file name, bytes).
    pub async fn post_multipart(
        &self,
        path: &str,
        parts: &[(&str, &str, &[u8])],
    ) -> Result<Value, ClientError> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|e| ClientError(e.to_string()))?;
        let boundary = format!("warden-{}", hex::encode(raw));
        let mut body = Vec::new();
        for (name, file, data) in parts {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        self.send(
            "POST",
            path,
            Some(format!("multipart/form-data; boundary={boundary}")),
            Bytes::from(body),
        )
        .await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<String>,
        body: Bytes,
    ) -> Result<Value, ClientError> {
        let mut headers = vec![("authorization", format!("Bearer {}", self.token))];
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        let (status, bytes) = request(&self.authority, method, path, &headers, body)
            .await
            .map_err(|e| {
                ClientError(format!(
                    "cannot reach warden at http://{}: {e}",
                    self.authority
                ))
            })?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if status.is_success() {
            return Ok(value);
        }
        let error = value["error"].as_str().unwrap_or("request failed");
        let problems: Vec<&str> = value["problems"]
            .as_array()
            .map(|p| p.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        Err(ClientError(if problems.is_empty() {
            format!("{} ({status})", error)
        } else {
            format!("{error} ({status}): {}", problems.join("; "))
        }))
    }
}

/// One HTTP/1.1 request on a fresh connection to `authority` (`host:port`);
/// returns the status and the whole body.
pub async fn request(
    authority: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<(hyper::StatusCode, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority);
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, bytes))
}
