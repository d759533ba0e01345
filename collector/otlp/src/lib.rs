//! OTLP metrics for Vigil, shared by the agent and the collector: reading
//! OTLP/HTTP bodies ([`decode`]), translating them into Prometheus series
//! ([`translate`]), the answers OTLP clients expect ([`answer`]), and the
//! OTLP/gRPC `MetricsService/Export` server ([`grpc`]).

pub mod answer;
pub mod decode;
pub mod grpc;
pub mod translate;

pub use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
pub use translate::{Family, HistogramPoint, OtlpOutcome, Sink, ValuePoint, translate};
