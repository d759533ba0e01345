//! Prometheus remote_write 1.0: protobuf messages in the snappy block format.
//!
//! The messages are declared with prost's derive rather than generated, with
//! the field numbers of `prometheus/prompb/{remote,types}.proto`.
//!
//! Two shapes of the request exist. [`WriteRequest`] is what Vigil sends
//! (the agent, forwarding): float samples only. A receiver decodes
//! [`ReceivedWriteRequest`], which also declares the native histograms of
//! Prometheus 2.42 (field 4 of `TimeSeries`), so that what a sender put in a
//! request is seen and can be refused by name, never skipped unnoticed as an
//! unknown protobuf field would be.

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

/// A `WriteRequest` as a receiver decodes it: every field of Prometheus
/// 2.42's `prompb.WriteRequest`, native histograms included.
#[derive(Clone, PartialEq, Message)]
pub struct ReceivedWriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<ReceivedTimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prompb.TimeSeries` with its native histograms.
#[derive(Clone, PartialEq, Message)]
pub struct ReceivedTimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// `prompb.Histogram`: one native histogram sample (sparse buckets, integer
/// or float counts).
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    #[prost(oneof = "HistogramCount", tags = "1, 2")]
    pub count: Option<HistogramCount>,
    #[prost(double, tag = "3")]
    pub sum: f64,
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    #[prost(oneof = "HistogramZeroCount", tags = "6, 7")]
    pub zero_count: Option<HistogramZeroCount>,
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

/// `count_int` / `count_float` of `prompb.Histogram`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HistogramCount {
    #[prost(uint64, tag = "1")]
    CountInt(u64),
    #[prost(double, tag = "2")]
    CountFloat(f64),
}

/// `zero_count_int` / `zero_count_float` of `prompb.Histogram`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HistogramZeroCount {
    #[prost(uint64, tag = "6")]
    ZeroCountInt(u64),
    #[prost(double, tag = "7")]
    ZeroCountFloat(f64),
}

/// `prompb.BucketSpan`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct BucketSpan {
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    #[prost(uint32, tag = "2")]
    pub length: u32,
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
    /// What the borrowing decoder ([`WriteRequestView`]) finds wrong itself.
    #[error("protobuf: {0}")]
    Malformed(&'static str),
}

/// Decodes a snappy-block-compressed `WriteRequest`, refusing bodies that
/// would decompress past `max_decompressed` bytes before allocating them.
pub fn decode_write_request(
    body: &[u8],
    max_decompressed: usize,
) -> Result<WriteRequest, DecodeError> {
    decode_message(body, max_decompressed)
}

/// Decodes a request as a receiver must: with its native histograms, see
/// [`ReceivedWriteRequest`].
pub fn decode_received_write_request(
    body: &[u8],
    max_decompressed: usize,
) -> Result<ReceivedWriteRequest, DecodeError> {
    decode_message(body, max_decompressed)
}

fn decode_message<M: Message + Default>(
    body: &[u8],
    max_decompressed: usize,
) -> Result<M, DecodeError> {
    let raw = decompress(body, max_decompressed)?;
    Ok(M::decode(raw.as_slice())?)
}

/// Decompresses a snappy-block body, refusing one that would decompress
/// past `max_decompressed` bytes before allocating it. The result is what
/// [`WriteRequestView::decode`] borrows from.
/// The decompressed size a snappy body declares in its header (not
/// checked against the data until it is decompressed).
pub fn decompressed_len(body: &[u8]) -> Result<usize, DecodeError> {
    snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))
}

pub fn decompress(body: &[u8], max_decompressed: usize) -> Result<Vec<u8>, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if len > max_decompressed {
        return Err(DecodeError::TooLarge {
            len,
            limit: max_decompressed,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))
}

/// One label of a [`WriteRequestView`], borrowed from the request buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelRef<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// One series of a [`WriteRequestView`]: ranges into its flat `labels` and
/// `samples`, and how many exemplars and native histograms it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesView {
    pub labels: std::ops::Range<usize>,
    pub samples: std::ops::Range<usize>,
    pub exemplars: usize,
    pub histograms: usize,
}

/// A [`ReceivedWriteRequest`] decoded without copying: label strings are
/// slices of the decompressed buffer, and labels and samples of all series
/// sit in two flat vectors. The ingest path builds owned label sets from it
/// only after validating, with exactly one allocation per string and per
/// label set, instead of prost's growing vectors per series and the copies
/// validation used to make. Exemplars and native histograms are decoded
/// (so a malformed one still refuses the request, as with prost) and
/// counted, not kept: the receiver refuses them by name.
#[derive(Debug, Default, PartialEq)]
pub struct WriteRequestView<'a> {
    pub series: Vec<SeriesView>,
    pub labels: Vec<LabelRef<'a>>,
    pub samples: Vec<crate::Sample>,
    pub metadata: Vec<MetricMetadata>,
}

impl<'a> WriteRequestView<'a> {
    /// Decodes a protobuf `WriteRequest` (already decompressed).
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut out = Self::default();
        let mut b = buf;
        while !b.is_empty() {
            let (tag, wt) = prost::encoding::decode_key(&mut b)?;
            match tag {
                1 => {
                    let ts = take_message(&mut b, wt)?;
                    out.decode_series(ts)?;
                }
                3 => {
                    let m = take_message(&mut b, wt)?;
                    out.metadata.push(MetricMetadata::decode(m)?);
                }
                _ => skip(&mut b, tag, wt)?,
            }
        }
        Ok(out)
    }

    fn decode_series(&mut self, mut b: &'a [u8]) -> Result<(), DecodeError> {
        let (labels_from, samples_from) = (self.labels.len(), self.samples.len());
        let (mut exemplars, mut histograms) = (0, 0);
        while !b.is_empty() {
            let (tag, wt) = prost::encoding::decode_key(&mut b)?;
            match tag {
                1 => {
                    let l = take_message(&mut b, wt)?;
                    self.labels.push(decode_label(l)?);
                }
                2 => {
                    let s = take_message(&mut b, wt)?;
                    self.samples.push(decode_sample(s)?);
                }
                3 => {
                    Exemplar::decode(take_message(&mut b, wt)?)?;
                    exemplars += 1;
                }
                4 => {
                    Histogram::decode(take_message(&mut b, wt)?)?;
                    histograms += 1;
                }
                _ => skip(&mut b, tag, wt)?,
            }
        }
        self.series.push(SeriesView {
            labels: labels_from..self.labels.len(),
            samples: samples_from..self.samples.len(),
            exemplars,
            histograms,
        });
        Ok(())
    }

    /// The labels of one series, in the order the sender wrote them.
    pub fn labels_of(&self, s: &SeriesView) -> &[LabelRef<'a>] {
        &self.labels[s.labels.clone()]
    }

    /// The samples of one series, in the order the sender wrote them.
    pub fn samples_of(&self, s: &SeriesView) -> &[crate::Sample] {
        &self.samples[s.samples.clone()]
    }
}

/// Reads a length-delimited field's bytes, checking the wire type as prost
/// does for a message or string field.
fn take_message<'a>(
    b: &mut &'a [u8],
    wt: prost::encoding::WireType,
) -> Result<&'a [u8], DecodeError> {
    prost::encoding::check_wire_type(prost::encoding::WireType::LengthDelimited, wt)?;
    let len = prost::encoding::decode_varint(b)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= b.len())
        .ok_or(DecodeError::Malformed("buffer underflow"))?;
    let (field, rest) = b.split_at(len);
    *b = rest;
    Ok(field)
}

fn skip(b: &mut &[u8], tag: u32, wt: prost::encoding::WireType) -> Result<(), DecodeError> {
    prost::encoding::skip_field(wt, tag, b, prost::encoding::DecodeContext::default())?;
    Ok(())
}

fn take_str<'a>(b: &mut &'a [u8], wt: prost::encoding::WireType) -> Result<&'a str, DecodeError> {
    let bytes = take_message(b, wt)?;
    std::str::from_utf8(bytes)
        .map_err(|_| DecodeError::Malformed("invalid string value: data is not UTF-8 encoded"))
}

fn decode_label(mut b: &[u8]) -> Result<LabelRef<'_>, DecodeError> {
    let mut l = LabelRef {
        name: "",
        value: "",
    };
    while !b.is_empty() {
        let (tag, wt) = prost::encoding::decode_key(&mut b)?;
        match tag {
            1 => l.name = take_str(&mut b, wt)?,
            2 => l.value = take_str(&mut b, wt)?,
            _ => skip(&mut b, tag, wt)?,
        }
    }
    Ok(l)
}

fn decode_sample(mut b: &[u8]) -> Result<crate::Sample, DecodeError> {
    use prost::bytes::Buf as _;
    use prost::encoding::WireType;
    // The layout every sender writes for a non-zero value: the value's key
    // and eight bytes, then the timestamp's key and varint. Read it
    // directly (a sample is the most frequent message of a request); any
    // other layout, and any error, takes the general loop below.
    if let [0x09, v0, v1, v2, v3, v4, v5, v6, v7, 0x10, rest @ ..] = b {
        let mut ts = rest;
        if let Ok(t) = prost::encoding::decode_varint(&mut ts)
            && ts.is_empty()
        {
            let value = f64::from_le_bytes([*v0, *v1, *v2, *v3, *v4, *v5, *v6, *v7]);
            return Ok(crate::Sample::new(t as i64, value));
        }
    }
    let mut s = crate::Sample::new(0, 0.0);
    while !b.is_empty() {
        let (tag, wt) = prost::encoding::decode_key(&mut b)?;
        match tag {
            1 => {
                prost::encoding::check_wire_type(WireType::SixtyFourBit, wt)?;
                if b.len() < 8 {
                    return Err(DecodeError::Malformed("buffer underflow"));
                }
                s.value = b.get_f64_le();
            }
            2 => {
                prost::encoding::check_wire_type(WireType::Varint, wt)?;
                s.timestamp_ms = prost::encoding::decode_varint(&mut b)? as i64;
            }
            _ => skip(&mut b, tag, wt)?,
        }
    }
    Ok(s)
}

/// Encodes a `WriteRequest` as protobuf in the snappy block format.
pub fn encode_write_request(req: &WriteRequest) -> Vec<u8> {
    encode_message(req)
}

/// Encodes any request shape (e.g. a [`ReceivedWriteRequest`] carrying
/// native histograms, as Prometheus sends them) in the snappy block format.
pub fn encode_message(req: &impl Message) -> Vec<u8> {
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
    fn a_receiver_sees_native_histograms_a_sender_request_skips() {
        let mut series = ReceivedTimeSeries {
            labels: sample_request().timeseries[0].labels.clone(),
            samples: vec![Sample {
                value: 2.0,
                timestamp: 1_700_000_000_000,
            }],
            exemplars: vec![],
            histograms: vec![Histogram {
                count: Some(HistogramCount::CountInt(5)),
                sum: 12.5,
                schema: 3,
                zero_threshold: 1e-128,
                zero_count: Some(HistogramZeroCount::ZeroCountInt(1)),
                positive_spans: vec![BucketSpan {
                    offset: 0,
                    length: 2,
                }],
                positive_deltas: vec![2, 0],
                timestamp: 1_700_000_000_000,
                ..Default::default()
            }],
        };
        let body = encode_message(&ReceivedWriteRequest {
            timeseries: vec![series.clone()],
            metadata: vec![],
        });
        let received = decode_received_write_request(&body, 1 << 20).expect("decodes");
        assert_eq!(received.timeseries[0], series);
        // The sender's shape has no field 4: the floats alone come through.
        let plain = decode_write_request(&body, 1 << 20).expect("decodes");
        assert_eq!(plain.timeseries[0].samples, series.samples);
        series.histograms.clear();
        assert_eq!(plain.timeseries[0].labels, series.labels);
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

    /// The view holds what prost decodes, series by series.
    fn assert_view_matches(raw: &[u8]) {
        let view = WriteRequestView::decode(raw);
        let owned = ReceivedWriteRequest::decode(raw);
        let (view, owned) = match (view, owned) {
            (Ok(v), Ok(o)) => (v, o),
            (Err(_), Err(_)) => return,
            (v, o) => panic!("view {v:?} but prost {o:?}"),
        };
        assert_eq!(view.series.len(), owned.timeseries.len());
        assert_eq!(view.metadata, owned.metadata);
        for (s, ts) in view.series.iter().zip(&owned.timeseries) {
            let labels: Vec<(&str, &str)> = view
                .labels_of(s)
                .iter()
                .map(|l| (l.name, l.value))
                .collect();
            let want: Vec<(&str, &str)> = ts
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            assert_eq!(labels, want);
            let samples: Vec<(i64, u64)> = view
                .samples_of(s)
                .iter()
                .map(|x| (x.timestamp_ms, x.value.to_bits()))
                .collect();
            let want: Vec<(i64, u64)> = ts
                .samples
                .iter()
                .map(|x| (x.timestamp, x.value.to_bits()))
                .collect();
            assert_eq!(samples, want);
            assert_eq!(s.exemplars, ts.exemplars.len());
            assert_eq!(s.histograms, ts.histograms.len());
        }
    }

    #[test]
    fn view_decodes_what_prost_decodes() {
        let mut req = ReceivedWriteRequest {
            timeseries: vec![],
            metadata: sample_request().metadata,
        };
        for i in 0..3 {
            req.timeseries.push(ReceivedTimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: format!("m{i}"),
                    },
                    Label {
                        name: "job".into(),
                        value: "nodé".into(),
                    },
                ],
                samples: (0..i)
                    .map(|k| Sample {
                        value: -1.5 * k as f64,
                        timestamp: -7 + k,
                    })
                    .collect(),
                exemplars: (0..i)
                    .map(|k| Exemplar {
                        labels: vec![],
                        value: 1.0,
                        timestamp: k,
                    })
                    .collect(),
                histograms: vec![Histogram::default(); i as usize],
            });
        }
        let raw = req.encode_to_vec();
        assert_view_matches(&raw);
        let view = WriteRequestView::decode(&raw).expect("decodes");
        assert_eq!(view.labels_of(&view.series[2])[1].value, "nodé");
        assert_eq!(view.samples_of(&view.series[2])[1].timestamp_ms, -6);
        // Every truncation is refused or decoded exactly as prost does.
        for cut in 0..raw.len() {
            assert_view_matches(&raw[..cut]);
        }
    }

    #[test]
    fn view_refuses_invalid_utf8_as_prost_does() {
        // Series { label { name: "\xff" } }.
        let raw = [0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff];
        assert!(ReceivedWriteRequest::decode(&raw[..]).is_err());
        assert!(WriteRequestView::decode(&raw).is_err());
    }

    proptest::proptest! {
        #[test]
        fn view_agrees_with_prost(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            assert_view_matches(&bytes);
        }

        #[test]
        fn samples_in_any_field_layout_decode_as_prost_does(
            samples in proptest::collection::vec(
                (proptest::prelude::any::<u64>(), proptest::prelude::any::<i64>(), 0u8..24),
                1..20,
            ),
        ) {
            // Each sample message in one of several layouts (mostly the
            // usual one): fields swapped, a field missing, a field repeated (the
            // last one wins), an unknown field after, a truncated varint.
            let mut series = Vec::new();
            for (bits, ts, layout) in samples {
                let mut m = Vec::new();
                let value = |m: &mut Vec<u8>, bits: u64| {
                    m.push(0x09);
                    m.extend_from_slice(&bits.to_le_bytes());
                };
                let time = |m: &mut Vec<u8>, ts: i64| {
                    m.push(0x10);
                    prost::encoding::encode_varint(ts as u64, m);
                };
                match layout {
                    1 => { time(&mut m, ts); value(&mut m, bits); }
                    2 => value(&mut m, bits),
                    3 => { value(&mut m, bits); time(&mut m, ts); time(&mut m, ts ^ 1); }
                    4 => { value(&mut m, bits); time(&mut m, ts); m.extend_from_slice(&[0x18, 0x01]); }
                    5 => { value(&mut m, bits); m.extend_from_slice(&[0x10, 0x80]); }
                    _ => { value(&mut m, bits); time(&mut m, ts); }
                }
                series.push(0x12);
                prost::encoding::encode_varint(m.len() as u64, &mut series);
                series.extend_from_slice(&m);
            }
            let mut raw = vec![0x0a];
            prost::encoding::encode_varint(series.len() as u64, &mut raw);
            raw.extend_from_slice(&series);
            assert_view_matches(&raw);
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode_write_request(&bytes, 1 << 20);
        }
    }
}
