//! Calls the collector's HTTP API in-process, through its router: the UI
//! reads exactly what API clients read, without a network hop and without
//! reaching into the collector's internals.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use crate::Ui;

/// Largest API answer the UI reads (a big table is cut by the page anyway).
const MAX_BODY: usize = 64 << 20;

/// An API answer: status and parsed JSON (`Value::Null` when not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
}

impl Answer {
    /// `data` of a Prometheus-style success envelope, or the error text.
    pub fn data(self) -> Result<Value, String> {
        if self.status.is_success() && self.json["status"] == "success" {
            return Ok(self.json["data"].clone());
        }
        Err(self.error())
    }

    /// The error of a Prometheus envelope, an Alertmanager JSON string, or
    /// the status.
    pub fn error(&self) -> String {
        if let Some(e) = self.json["error"].as_str() {
            return e.to_string();
        }
        if let Some(e) = self.json.as_str() {
            return e.to_string();
        }
        format!("the API answered {}", self.status)
    }
}

impl Ui {
    pub(crate) async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let req = match req.body(body) {
            Ok(r) => r,
            Err(e) => {
                return Answer {
                    status: StatusCode::BAD_REQUEST,
                    json: Value::String(format!("bad request {uri}: {e}")),
                };
            }
        };
        let resp = match self.api.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status();
        let json = match axum::body::to_bytes(resp.into_body(), MAX_BODY).await {
            Ok(b) => serde_json::from_slice(&b)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).trim().to_string())),
            Err(e) => Value::String(format!("reading the answer of {uri}: {e}")),
        };
        Answer { status, json }
    }

    pub(crate) async fn get(&self, uri: &str) -> Answer {
        self.call(Method::GET, uri, None).await
    }
}
