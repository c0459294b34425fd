//! Calling a module's `wasi:http/incoming-handler` with one request
//! (`warden run --http`, and the server's ingress).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyIndices;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use crate::contract::HTTP_EXPORT;
use crate::error::RunError;
use crate::module::{InstanceError, LoadedModule, Output, charge_output};

/// A response as the guest produced it, body collected in full.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl LoadedModule {
    /// Sends `request` (whose URI may be just a path) to the module's HTTP
    /// handler. The response body counts against `max-output`.
    pub async fn handle_http(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<(HttpResponse, Output), RunError> {
        if !self.shape().exports_interface(HTTP_EXPORT) {
            return Err(RunError::Host(format!(
                "the component does not export {HTTP_EXPORT}"
            )));
        }
        let indices = ProxyIndices::new(self.instance_pre())
            .map_err(|e| RunError::Host(format!("{HTTP_EXPORT} has an unexpected type: {e:#}")))?;
        let max_output = self.limits().max_output;
        let (parts, body) = request.into_parts();
        let mut request = http::Request::from_parts(parts, Full::new(body));
        if request.uri().authority().is_none() {
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            *request.uri_mut() = format!("http://localhost{path}")
                .parse()
                .map_err(|e| RunError::Host(format!("invalid request path {path:?}: {e}")))?;
        }
        self.with_instance(async |store, instance| {
            let proxy = indices
                .load(&mut *store, instance)
                .map_err(InstanceError::Call)?;
            let (sender, receiver) = tokio::sync::oneshot::channel();
            let (req, out) = {
                let mut http = store.data_mut().http();
                let req = http
                    .new_incoming_request(Scheme::Http, request)
                    .map_err(InstanceError::Call)?;
                let out = http
                    .new_response_outparam(sender)
                    .map_err(InstanceError::Call)?;
                (req, out)
            };
            // The guest may stream the body after setting the response, so
            // read it while the handler is still running.
            let handle = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut *store, req, out);
            let collect = async {
                let response = match receiver.await {
                    Ok(Ok(response)) => response,
                    Ok(Err(code)) => {
                        return Err(RunError::Failed(format!(
                            "the handler answered with error {}",
                            describe(&code)
                        )));
                    }
                    Err(_) => {
                        return Err(RunError::Failed(
                            "the handler returned without setting a response".into(),
                        ));
                    }
                };
                let (parts, mut body) = response.into_parts();
                let mut data = Vec::new();
                while let Some(frame) = body.frame().await {
                    let frame =
                        frame.map_err(|e| RunError::Failed(format!("response body: {e:?}")))?;
                    if let Ok(chunk) = frame.into_data() {
                        charge_output(max_output, data.len() + chunk.len())?;
                        data.extend_from_slice(&chunk);
                    }
                }
                let headers = parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                Ok(HttpResponse {
                    status: parts.status.as_u16(),
                    headers,
                    body: data,
                })
            };
            // A trap ends the wait for a response that will never come (the
            // outparam lives in the store until it is dropped).
            let handle = async { handle.await.map_err(InstanceError::Call) };
            let collect = async { collect.await.map_err(InstanceError::Run) };
            let ((), response) = tokio::try_join!(handle, collect)?;
            Ok(response)
        })
        .await
    }
}

fn describe(code: &ErrorCode) -> String {
    format!("{code:?}")
}
