//! Request parameters as Prometheus's HTTP API reads them: from the query
//! string and, for POST, from a form-encoded body, merged; timestamps as
//! float seconds or RFC 3339; durations as float seconds or `5m` notation.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, header};

use crate::config::parse_duration;

/// The earliest and latest timestamps the API accepts as "unbounded",
/// matching the effect of Prometheus's minTime/maxTime.
pub const MIN_TIME_MS: i64 = i64::MIN / 4;
pub const MAX_TIME_MS: i64 = i64::MAX / 4;

/// All parameters of one request, in order, possibly repeated. Also an
/// axum extractor, so handlers take the merged parameters directly.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Params {
    type Rejection = axum::response::Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse as _;
        let method = req.method().clone();
        let query = req.uri().query().map(str::to_string);
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| e.into_response())?;
        Ok(Params::from_request(
            &method,
            query.as_deref(),
            &headers,
            &body,
        ))
    }
}

impl Params {
    pub fn from_request(
        method: &Method,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Self {
        let mut pairs: Vec<(String, String)> = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if method == Method::POST && is_form {
            pairs.extend(form_urlencoded::parse(body).into_owned());
        }
        Self(pairs)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Parses a timestamp as Prometheus does: float Unix seconds or RFC 3339.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        let ms = (secs * 1000.0).round();
        if ms < MIN_TIME_MS as f64 || ms > MAX_TIME_MS as f64 {
            return Ok(if ms < 0.0 { MIN_TIME_MS } else { MAX_TIME_MS });
        }
        return Ok(ms as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
}

/// Parses a duration as Prometheus does: float seconds or `1m30s` notation.
pub fn parse_duration_param(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs * 1000.0 > i64::MAX as f64 || secs * 1000.0 < i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    parse_duration(s)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .map_err(|_| format!("cannot parse {s:?} to a valid duration"))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1700000000.5"), Ok(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_duration_param("15"), Ok(15_000));
        assert_eq!(parse_duration_param("1m30s"), Ok(90_000));
        assert_eq!(parse_duration_param("0.5"), Ok(500));
        assert!(parse_duration_param("x").is_err());
    }

    #[test]
    fn query_and_form_merge() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded"
                .parse()
                .expect("valid header"),
        );
        let p = Params::from_request(
            &Method::POST,
            Some("match%5B%5D=up&start=1"),
            &headers,
            &Bytes::from_static(b"match[]=node_load1&end=2"),
        );
        assert_eq!(p.get_all("match[]"), ["up", "node_load1"]);
        assert_eq!(p.get("end"), Some("2"));
    }
}
