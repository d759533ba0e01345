//! OTLP/HTTP request bodies: `application/x-protobuf` or `application/json`,
//! uncompressed or `Content-Encoding: gzip`, decompressed within a size
//! limit so a small body cannot expand without bound.

use std::io::Read;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use thiserror::Error;

/// The wire format of a request, which its answer uses too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// From a `Content-Type` header value (parameters ignored).
    pub fn from_content_type(ct: &str) -> Result<Format, DecodeError> {
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
            "application/json" => Ok(Format::Json),
            _ => Err(DecodeError::ContentType(ct.to_string())),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// Why a body could not be read. [`DecodeError::status`] is the HTTP
/// answer OTLP/HTTP expects for it.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error(
        "unsupported Content-Type {0:?}: OTLP/HTTP metrics are application/x-protobuf or application/json"
    )]
    ContentType(String),
    #[error("unsupported Content-Encoding {0:?}: send gzip or uncompressed OTLP")]
    ContentEncoding(String),
    #[error("invalid gzip body: {0}")]
    Gzip(std::io::Error),
    #[error("body decompresses to more than {0} bytes")]
    TooLarge(usize),
    #[error("invalid OTLP protobuf: {0}")]
    Protobuf(prost::DecodeError),
    #[error("invalid OTLP JSON: {0}")]
    Json(serde_json::Error),
}

impl DecodeError {
    /// 415 for a format or encoding not spoken, 413 for a body over the
    /// limit, 400 for a body that is not what it claims to be.
    pub fn status(&self) -> u16 {
        match self {
            DecodeError::ContentType(_) | DecodeError::ContentEncoding(_) => 415,
            DecodeError::TooLarge(_) => 413,
            DecodeError::Gzip(_) | DecodeError::Protobuf(_) | DecodeError::Json(_) => 400,
        }
    }

    /// The `reason` label counting this refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::ContentType(_) | DecodeError::ContentEncoding(_) => "bad_encoding",
            DecodeError::TooLarge(_) => "too_large",
            DecodeError::Gzip(_) | DecodeError::Protobuf(_) | DecodeError::Json(_) => "malformed",
        }
    }
}

/// Decompresses `body` as `encoding` says (`None`, `identity` or `gzip`),
/// refusing more than `max` bytes out.
pub fn decompress<'a>(
    encoding: Option<&str>,
    body: &'a [u8],
    max: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, DecodeError> {
    match encoding.map(str::trim) {
        None | Some("") => {}
        Some(e) if e.eq_ignore_ascii_case("identity") => {}
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(body)
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(DecodeError::Gzip)?;
            if out.len() > max {
                return Err(DecodeError::TooLarge(max));
            }
            return Ok(out.into());
        }
        Some(e) => return Err(DecodeError::ContentEncoding(e.to_string())),
    }
    if body.len() > max {
        return Err(DecodeError::TooLarge(max));
    }
    Ok(body.into())
}

/// Decodes an uncompressed body.
pub fn decode(format: Format, body: &[u8]) -> Result<ExportMetricsServiceRequest, DecodeError> {
    match format {
        Format::Protobuf => {
            ExportMetricsServiceRequest::decode(body).map_err(DecodeError::Protobuf)
        }
        Format::Json => serde_json::from_slice(body).map_err(DecodeError::Json),
    }
}

/// Reads an OTLP/HTTP metrics request from its `Content-Type`,
/// `Content-Encoding` and body.
pub fn decode_http(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    max: usize,
) -> Result<(Format, ExportMetricsServiceRequest), DecodeError> {
    let format = Format::from_content_type(content_type.unwrap_or(""))?;
    let raw = decompress(content_encoding, body, max)?;
    Ok((format, decode(format, &raw)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).expect("gzip");
        e.finish().expect("gzip")
    }

    #[test]
    fn gzip_and_plain_bodies_decode_alike() {
        let json = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"up","gauge":{"dataPoints":[{"asDouble":1}]}}]}]}]}"#;
        let (f, plain) = decode_http(Some("application/json"), None, json, 1 << 20).expect("plain");
        assert_eq!(f, Format::Json);
        let (_, zipped) = decode_http(
            Some("application/json; charset=utf-8"),
            Some("gzip"),
            &gzip(json),
            1 << 20,
        )
        .expect("gzip");
        assert_eq!(plain, zipped);
        let pb = plain.encode_to_vec();
        let (f, again) = decode_http(
            Some("application/x-protobuf"),
            Some("GZIP"),
            &gzip(&pb),
            1 << 20,
        )
        .expect("protobuf gzip");
        assert_eq!(f, Format::Protobuf);
        assert_eq!(again, plain);
    }

    #[test]
    fn refusals_have_their_status() {
        let s = |r: Result<_, DecodeError>| r.err().map(|e| e.status());
        assert_eq!(s(decode_http(Some("text/plain"), None, b"", 10)), Some(415));
        assert_eq!(
            s(decode_http(Some("application/json"), Some("br"), b"{}", 10)),
            Some(415)
        );
        assert_eq!(
            s(decode_http(
                Some("application/json"),
                Some("gzip"),
                b"not gzip",
                10
            )),
            Some(400)
        );
        // A gzip bomb stops at the limit.
        let big = gzip(&vec![b' '; 10_000]);
        assert_eq!(
            s(decode_http(
                Some("application/json"),
                Some("gzip"),
                &big,
                1000
            )),
            Some(413)
        );
        assert_eq!(
            s(decode_http(
                Some("application/x-protobuf"),
                None,
                &[0xff, 0xff],
                10
            )),
            Some(400)
        );
    }

    proptest! {
        // Any bytes, under any of the accepted encodings and formats: an
        // answer, never a panic.
        #[test]
        fn decoding_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512), zip in any::<bool>(), json in any::<bool>()) {
            let ct = if json { "application/json" } else { "application/x-protobuf" };
            let body = if zip { gzip(&body) } else { body };
            let _ = decode_http(Some(ct), zip.then_some("gzip"), &body, 1 << 16);
        }
    }
}
