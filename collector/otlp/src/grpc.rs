//! OTLP/gRPC: `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`
//! on tonic's HTTP/2 server, gzip-compressed requests accepted (and answers
//! gzipped when the client asks). The service is written against tonic's
//! server plumbing and the opentelemetry-proto messages, so no protoc runs
//! at build time. What an export means is the [`Handler`]'s business (the
//! agent aggregates, the collector stores); the bearer token of the call's
//! `authorization` metadata and the peer address are handed to it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use tonic::codegen::{Body, CompressionEncoding, EnabledCompressionEncodings, Service, StdError};

use crate::answer;

/// The service's full name.
pub const SERVICE: &str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
/// The one method's path.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// Who called.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The token of `authorization: Bearer TOKEN`.
    pub bearer: Option<String>,
    pub peer: Option<SocketAddr>,
}

pub type ExportFuture =
    Pin<Box<dyn Future<Output = Result<ExportMetricsServiceResponse, tonic::Status>> + Send>>;

/// What to do with an export.
pub trait Handler: Send + Sync + 'static {
    fn export(self: Arc<Self>, req: ExportMetricsServiceRequest, ctx: CallContext) -> ExportFuture;
}

/// The `INVALID_ARGUMENT` status of a request of which `rejected` data
/// points were refused, its details carrying the same `google.rpc.Status`
/// as the OTLP/HTTP answer (with the partial-success count).
pub fn refusal(message: &str, rejected: u64) -> tonic::Status {
    let st = answer::rpc_status(answer::INVALID_ARGUMENT, message, rejected);
    tonic::Status::with_details(
        tonic::Code::InvalidArgument,
        message,
        bytes::Bytes::from(st.encode_to_vec()),
    )
}

struct MetricsService<H> {
    handler: Arc<H>,
    max_message: usize,
}

impl<H> Clone for MetricsService<H> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            max_message: self.max_message,
        }
    }
}

impl<H> tonic::server::NamedService for MetricsService<H> {
    const NAME: &'static str = SERVICE;
}

struct Export<H>(Arc<H>);

impl<H: Handler> tonic::server::UnaryService<ExportMetricsServiceRequest> for Export<H> {
    type Response = ExportMetricsServiceResponse;
    type Future = Pin<
        Box<dyn Future<Output = Result<tonic::Response<Self::Response>, tonic::Status>> + Send>,
    >;

    fn call(&mut self, request: tonic::Request<ExportMetricsServiceRequest>) -> Self::Future {
        let ctx = CallContext {
            bearer: request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| t.trim().to_string()),
            peer: request.remote_addr(),
        };
        let fut = self.0.clone().export(request.into_inner(), ctx);
        Box::pin(async move { fut.await.map(tonic::Response::new) })
    }
}

impl<H, B> Service<http::Request<B>> for MetricsService<H>
where
    H: Handler,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            let path = req.uri().path().to_string();
            return Box::pin(async move {
                Ok(tonic::Status::unimplemented(format!(
                    "{path}: only {EXPORT_PATH} is served here"
                ))
                .into_http())
            });
        }
        let svc = Export(self.handler.clone());
        let max = self.max_message;
        Box::pin(async move {
            let mut gzip = EnabledCompressionEncodings::default();
            gzip.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                .apply_compression_config(gzip, gzip)
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(svc, req).await)
        })
    }
}

/// Serves `MetricsService/Export` on `listener` until `shutdown`
/// completes, refusing messages over `max_message` bytes (decompressed).
pub async fn serve<H: Handler>(
    listener: tokio::net::TcpListener,
    handler: Arc<H>,
    max_message: usize,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(MetricsService {
            handler,
            max_message,
        })
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}

/// The OTLP/gRPC port.
pub const DEFAULT_PORT: u16 = 4317;

/// Where the gRPC listener binds when not configured: the HTTP listener's
/// address with port 4317.
pub fn default_addr(http: SocketAddr) -> SocketAddr {
    SocketAddr::new(http.ip(), DEFAULT_PORT)
}

/// Binds the gRPC listener. An address the configuration names must bind
/// (the error is the caller's to fail on); the default one gives way when
/// taken (an OpenTelemetry Collector, or a Vigil agent or collector beside
/// this one, usually holds 4317 already), with an error in the log that
/// names the setting, and `None`.
pub async fn bind(
    configured: Option<SocketAddr>,
    http: SocketAddr,
    setting: &str,
) -> Result<Option<tokio::net::TcpListener>, (SocketAddr, std::io::Error)> {
    let addr = configured.unwrap_or_else(|| default_addr(http));
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if configured.is_none() => {
            tracing::error!(
                %addr,
                error = %e,
                "OTLP/gRPC not served: the default port is taken; set {setting} to another address, or turn gRPC off"
            );
            Ok(None)
        }
        Err(e) => Err((addr, e)),
    }
}
