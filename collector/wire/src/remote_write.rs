//! Prometheus remote_write 1.0: protobuf messages in the snappy block format.
//!
//! The messages are declared with prost's derive rather than generated, with
//! the field numbers of `prometheus/prompb/{remote,types}.proto`. Native
//! histograms (field 4 of `TimeSeries`) are not declared and so are skipped
//! by the decoder, as unknown protobuf fields are.

use prost::Message;
use thiserror::Error;

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
}

#[derive(Clone, PartialEq, Eq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct MetricMetadata {
    #[prost(enumeration = "MetricType", tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    Unknown = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    GaugeHistogram = 4,
    Summary = 5,
    Info = 6,
    StateSet = 7,
}

impl MetricType {
    /// The name Prometheus's metadata API uses.
    pub fn as_prometheus_str(self) -> &'static str {
        match self {
            MetricType::Unknown => "unknown",
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
        }
    }

    pub fn from_prometheus_str(s: &str) -> Self {
        match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }
}

/// Why a remote_write body was refused.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("snappy: {0}")]
    Snappy(String),
    #[error("decompressed body of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Decodes a snappy-block-compressed `WriteRequest`, refusing bodies that
/// would decompress past `max_decompressed` bytes before allocating them.
pub fn decode_write_request(
    body: &[u8],
    max_decompressed: usize,
) -> Result<WriteRequest, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if len > max_decompressed {
        return Err(DecodeError::TooLarge {
            len,
            limit: max_decompressed,
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    Ok(WriteRequest::decode(raw.as_slice())?)
}

/// Encodes a `WriteRequest` as protobuf in the snappy block format.
pub fn encode_write_request(req: &WriteRequest) -> Vec<u8> {
    let raw = req.encode_to_vec();
    // Compressing an in-memory buffer cannot fail except past snappy's
    // 4 GiB input limit, which a request never approaches; fall back to an
    // empty body that the receiver will reject loudly rather than panic.
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    Label {
                        name: "job".into(),
                        value: "node".into(),
                    },
                ],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1_700_000_000_000,
                }],
                exemplars: vec![],
            }],
            metadata: vec![MetricMetadata {
                r#type: MetricType::Gauge as i32,
                metric_family_name: "up".into(),
                help: "Target up".into(),
                unit: String::new(),
            }],
        }
    }

    #[test]
    fn round_trip() {
        let req = sample_request();
        let body = encode_write_request(&req);
        let back = decode_write_request(&body, 1 << 20).expect("decodes");
        assert_eq!(back, req);
    }

    #[test]
    fn truncated_snappy_is_an_error() {
        let body = encode_write_request(&sample_request());
        assert!(decode_write_request(&body[..body.len() / 2], 1 << 20).is_err());
    }

    #[test]
    fn wrong_protobuf_is_an_error() {
        let body = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff\xff\xff\x0fgarbage")
            .expect("compress");
        assert!(matches!(
            decode_write_request(&body, 1 << 20),
            Err(DecodeError::Protobuf(_))
        ));
    }

    #[test]
    fn decompression_bomb_is_refused_before_allocation() {
        let big = vec![0u8; 1 << 20];
        let body = snap::raw::Encoder::new()
            .compress_vec(&big)
            .expect("compress");
        assert!(matches!(
            decode_write_request(&body, 1024),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode_write_request(&bytes, 1 << 20);
        }
    }
}
