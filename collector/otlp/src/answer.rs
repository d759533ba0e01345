//! What an OTLP receiver answers. Everything stored: 200 with an
//! `ExportMetricsServiceResponse` (its `partial_success` carrying a warning
//! when exemplars were not kept). Anything refused: 400 (gRPC
//! `INVALID_ARGUMENT`) with a `google.rpc.Status` whose message names each
//! refused metric and why, and whose `details` hold an
//! `ExportMetricsPartialSuccess` with `rejected_data_points`, so a client
//! reads the count as the OTLP spec defines it. The accepted points of such
//! a request are kept (as remote_write's partial writes are), and 400 is
//! not retried, so nothing is stored twice.

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use prost::Message;

use crate::decode::Format;

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// The type URL of the partial-success detail.
pub const PARTIAL_SUCCESS_TYPE: &str =
    "type.googleapis.com/opentelemetry.proto.collector.metrics.v1.ExportMetricsPartialSuccess";

/// gRPC's `INVALID_ARGUMENT`.
pub const INVALID_ARGUMENT: i32 = 3;

/// An HTTP answer, independent of the server framework.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The success response, with `warning` as its partial-success message.
pub fn response(warning: Option<String>) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: warning.map(|error_message| ExportMetricsPartialSuccess {
            rejected_data_points: 0,
            error_message,
        }),
    }
}

/// 200: everything stored.
pub fn accepted(format: Format, warning: Option<String>) -> Answer {
    let body = match (format, warning) {
        (Format::Protobuf, warning) => response(warning).encode_to_vec(),
        // Written by hand: the generated serde mapping writes an absent
        // `partialSuccess` as null, where proto3 JSON leaves it out.
        (Format::Json, None) => b"{}".to_vec(),
        (Format::Json, Some(m)) => serde_json::json!({"partialSuccess": {"errorMessage": m}})
            .to_string()
            .into_bytes(),
    };
    Answer {
        status: 200,
        content_type: format.content_type(),
        body,
    }
}

/// The `google.rpc.Status` of a refusal of `rejected` data points.
pub fn rpc_status(code: i32, message: &str, rejected: u64) -> RpcStatus {
    let detail = ExportMetricsPartialSuccess {
        rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: message.to_string(),
    };
    RpcStatus {
        code,
        message: message.to_string(),
        details: vec![ProtoAny {
            type_url: PARTIAL_SUCCESS_TYPE.into(),
            value: detail.encode_to_vec(),
        }],
    }
}

/// A 4xx/5xx answer (`status`) refusing `rejected` data points.
pub fn refused(format: Format, status: u16, message: &str, rejected: u64) -> Answer {
    let st = rpc_status(INVALID_ARGUMENT, message, rejected);
    let body = match format {
        Format::Protobuf => st.encode_to_vec(),
        // The proto3 JSON mapping of Status, the detail written with its
        // `@type` as `Any` is in JSON.
        Format::Json => serde_json::json!({
            "code": st.code,
            "message": st.message,
            "details": [{
                "@type": PARTIAL_SUCCESS_TYPE,
                "rejectedDataPoints": rejected.to_string(),
                "errorMessage": message,
            }],
        })
        .to_string()
        .into_bytes(),
    };
    Answer {
        status,
        content_type: format.content_type(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_carries_the_rejected_count() {
        let a = refused(Format::Protobuf, 400, "x: refused", 3);
        assert_eq!(a.status, 400);
        let st = RpcStatus::decode(a.body.as_slice()).expect("status");
        assert_eq!(st.code, INVALID_ARGUMENT);
        let d =
            ExportMetricsPartialSuccess::decode(st.details[0].value.as_slice()).expect("detail");
        assert_eq!(d.rejected_data_points, 3);
        let j = refused(Format::Json, 400, "x: refused", 3);
        let v: serde_json::Value = serde_json::from_slice(&j.body).expect("json");
        assert_eq!(v["details"][0]["rejectedDataPoints"], "3");
        let ok = accepted(Format::Json, Some("1 exemplars not kept".into()));
        let v: serde_json::Value = serde_json::from_slice(&ok.body).expect("json");
        assert_eq!(v["partialSuccess"]["errorMessage"], "1 exemplars not kept");
    }
}
