//! vigil-agent: the node agent of Vigil.
//!
//! It collects host metrics ([`system`]), PostgreSQL ([`postgres`]) and
//! Redis ([`redis_collector`]) metrics under the community exporters' names,
//! receives LLM usage as OTLP metrics or usage events ([`llm`]), scrapes the
//! Prometheus endpoints found by static, file and HTTP service discovery
//! ([`discovery`], [`scrape`]), serves everything on
//! `/metrics` ([`http`]) and ships it with remote_write ([`ship`]) through a
//! bounded on-disk buffer ([`buffer`]) that survives outages and restarts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vigil_agent::AgentError> {
//! let config = vigil_agent::config::Config::default();
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! vigil_agent::run(config, shutdown).await
//! # }
//! ```

/// The on-disk send buffer, shared with the collector's remote_write
/// queues (crate `vigil-queue`).
pub use vigil_queue::buffer;
pub mod cgroup;
pub mod config;
pub mod discovery;
pub mod family;
pub mod http;
pub mod llm;
pub mod pipeline;
pub mod postgres;
pub mod probe;
pub mod redis_collector;
pub mod scrape;
pub mod ship;
pub mod system;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::family::{Family, now_ms};
use crate::pipeline::Pipeline;

/// Outcome of the last configuration load (start or SIGHUP), for
/// `vigil_agent_config_last_reload_successful` and
/// `vigil_agent_config_last_reload_success_timestamp_seconds` (after
/// Prometheus's `prometheus_config_*`). Process-wide: it outlives the
/// [`run`] a reload replaces.
#[derive(Debug)]
pub struct ReloadStatus {
    pub successful: std::sync::atomic::AtomicBool,
    pub last_success_ms: std::sync::atomic::AtomicU64,
}

pub static RELOAD_STATUS: ReloadStatus = ReloadStatus {
    successful: std::sync::atomic::AtomicBool::new(true),
    last_success_ms: std::sync::atomic::AtomicU64::new(0),
};

impl ReloadStatus {
    pub fn record(&self, ok: bool) {
        use std::sync::atomic::Ordering;
        self.successful.store(ok, Ordering::Relaxed);
        if ok {
            self.last_success_ms
                .store(u64::try_from(now_ms()).unwrap_or(0), Ordering::Relaxed);
        }
    }
}

/// Why the agent could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Buffer(#[from] buffer::BufferError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
    #[error("building the HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Ship(#[from] ship::ShipError),
    #[error("listener TLS: {0}")]
    Tls(#[from] vigil_tls::TlsError),
}

/// A source of metric families, polled on an interval.
pub trait Collector: Send + 'static {
    /// Identifies the collector in logs and in
    /// `vigil_agent_collection_duration_seconds{collector}`; unique per
    /// instance (e.g. `postgres/127.0.0.1:5432`).
    fn name(&self) -> String;

    /// Collects one snapshot. Never fails: a source that is down reports it
    /// in its own series (`pg_up 0`) and logs.
    fn collect(&mut self) -> impl Future<Output = Vec<Family>> + Send;

    /// Whether to take one last snapshot at shutdown so state held only in
    /// memory (LLM aggregates) reaches the buffer.
    fn flush_on_shutdown(&self) -> bool {
        false
    }
}

/// Runs a collector every `every` until `shutdown`, publishing each
/// snapshot with the time its collection started.
pub async fn run_collector<C: Collector>(
    mut c: C,
    every: Duration,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
) {
    let name = c.name();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let ts = now_ms();
        let start = Instant::now();
        let families = tokio::select! {
            f = c.collect() => f,
            _ = shutdown.cancelled() => break,
        };
        pipeline.stats.record_collection(&name, start.elapsed());
        pipeline.publish(&name, ts, families);
    }
    if c.flush_on_shutdown() {
        let ts = now_ms();
        let families = c.collect().await;
        pipeline.publish(&name, ts, families);
        tracing::debug!(collector = %name, "flushed in-memory state at shutdown");
    }
}

/// Runs the agent until `shutdown` is cancelled: collectors, the HTTP
/// server and the shipper. On shutdown every collector stops, in-memory
/// state is flushed into the disk buffer, an in-flight send is allowed to
/// finish, and the function returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AgentError> {
    config.validate()?;
    // Unusable certificates fail before anything is started.
    let tls = match &config.tls {
        Some(t) => Some(vigil_tls::server_config(
            &t.cert_file,
            &t.key_file,
            t.client_ca_file.as_deref(),
        )?),
        None => None,
    };
    // Bind first so a busy port fails before anything is started.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| AgentError::Listen {
            addr: config.listen,
            source,
        })?;
    let grpc_listener = if config.llm.enabled && config.otlp.grpc {
        vigil_otlp::grpc::bind(config.otlp.grpc_listen, config.listen, "otlp.grpc_listen")
            .await
            .map_err(|(addr, source)| AgentError::Listen { addr, source })?
    } else {
        None
    };
    let mut destinations = Vec::new();
    for d in config.destinations() {
        let b = buffer::DiskBuffer::open(
            &d.buffer_dir,
            config.buffer.max_bytes,
            config.buffer.segment_bytes,
        )?;
        if b.pending_records() > 0 {
            tracing::info!(
                remote_name = %d.name,
                records = b.pending_records(),
                samples = b.pending_samples(),
                "replaying data buffered by a previous run"
            );
        }
        destinations.push((d, b));
    }
    if destinations.is_empty() {
        tracing::info!("remote_write.url is empty: shipping disabled, serving /metrics only");
    } else if !config.remote_writes.is_empty() {
        warn_orphaned_buffer(
            &config.data_dir.join("buffer"),
            config.buffer.max_bytes,
            config.buffer.segment_bytes,
        );
    }
    let llm_state = Arc::new(llm::LlmState::new(&config.llm));
    let identity = config.identity();
    tracing::info!(job = %identity.0, instance = %identity.1, "series of the agent's own collectors carry these labels");
    let shipping: Vec<config::Destination> = destinations.iter().map(|(d, _)| d.clone()).collect();
    let pipeline = Arc::new(Pipeline::new(
        destinations
            .into_iter()
            .map(|(d, b)| pipeline::Destination::new(d.name, d.config.url, b))
            .collect(),
        config.external_labels.clone(),
        identity.clone(),
        llm_state.clone(),
    ));
    let interval = |o: Option<config::HumanDuration>| o.map_or(config.interval.0, |d| d.0);

    let mut tasks = JoinSet::new();
    let child = shutdown.child_token();
    if config.system.enabled {
        let c = system::SystemCollector::new(&config.system);
        tasks.spawn(run_collector(
            c,
            interval(config.system.interval),
            pipeline.clone(),
            child.clone(),
        ));
    }
    for pg in &config.postgres {
        let c = postgres::PostgresCollector::new(pg);
        tasks.spawn(run_collector(
            c,
            interval(pg.interval),
            pipeline.clone(),
            child.clone(),
        ));
    }
    for r in &config.redis {
        let c = redis_collector::RedisCollector::new(r);
        tasks.spawn(run_collector(
            c,
            interval(r.interval),
            pipeline.clone(),
            child.clone(),
        ));
    }
    for (i, sc) in config.scrape.iter().enumerate() {
        let pool = scrape::ScrapePool::new(i, sc.clone(), interval(sc.interval), pipeline.clone())
            .map_err(AgentError::Client)?;
        tasks.spawn(pool.run(child.clone()));
    }
    if config.cgroups.enabled {
        tasks.spawn(run_collector(
            cgroup::CgroupCollector::new(&config.cgroups),
            interval(config.system.interval),
            pipeline.clone(),
            child.clone(),
        ));
    }
    for pc in &config.probes {
        for target in &pc.targets {
            let c = probe::ProbeCollector::new(pc, target, interval(pc.interval))
                .map_err(AgentError::Client)?;
            tasks.spawn(run_collector(
                c,
                interval(pc.interval),
                pipeline.clone(),
                child.clone(),
            ));
        }
    }
    if config.llm.enabled {
        let c = llm::LlmCollector::new(llm_state.clone());
        tasks.spawn(run_collector(
            c,
            interval(config.llm.interval),
            pipeline.clone(),
            child.clone(),
        ));
    }
    tasks.spawn(run_collector(
        pipeline::SelfCollector::new(pipeline.clone()),
        config.interval.0,
        pipeline.clone(),
        child.clone(),
    ));

    let mut shippers = Vec::new();
    for (d, dest) in shipping.iter().zip(pipeline.destinations()) {
        let s = ship::shipper(&d.config, &identity, dest.clone())?;
        tracing::info!(remote_name = %d.name, url = %d.config.url, buffer = %d.buffer_dir.display(), "shipping with remote_write");
        shippers.push(tokio::spawn(s.run(shutdown.child_token())));
    }

    let local = listener.local_addr().map_err(AgentError::Serve)?;
    tracing::info!(address = %local, tls = tls.is_some(), "vigil-agent listening");
    let grpc = match grpc_listener {
        Some(l) => {
            let addr = l.local_addr().map_err(AgentError::Serve)?;
            tracing::info!(address = %addr, "vigil-agent serving OTLP/gRPC");
            let handler = std::sync::Arc::new(http::GrpcHandler(llm_state.clone()));
            let stop = shutdown.clone();
            Some(tokio::spawn(async move {
                vigil_otlp::grpc::serve(l, handler, http::MAX_BODY, async move {
                    stop.cancelled().await
                })
                .await
            }))
        }
        None => None,
    };
    let app = http::router(pipeline.clone(), llm_state, config.llm.enabled);
    let server_shutdown = shutdown.clone();
    let server = match tls {
        None => tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
                .await
        }),
        Some(tls) => {
            let listener = vigil_tls::TlsListener::new(listener, tls).map_err(AgentError::Serve)?;
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
                    .await
            })
        }
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    shutdown.cancelled().await;
    tracing::info!("shutting down: flushing collected data into the buffer");
    child.cancel();
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            tracing::error!(error = %e, "collector task failed");
        }
    }
    for s in shippers {
        if let Err(e) = s.await {
            tracing::error!(error = %e, "shipper task failed");
        }
    }
    pipeline.sync_buffer();
    if let Some(g) = grpc {
        match g.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "OTLP/gRPC server failed"),
            Err(e) => tracing::error!(error = %e, "OTLP/gRPC server task failed"),
        }
    }
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(AgentError::Serve(e)),
        Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
    }
    tracing::info!("vigil-agent stopped");
    Ok(())
}

/// Warns when the single-destination buffer directory still holds unsent
/// data after the configuration moved to `remote_writes`: no destination
/// ships it, and saying so beats losing it quietly.
fn warn_orphaned_buffer(dir: &std::path::Path, max_bytes: u64, segment_bytes: u64) {
    if !dir.is_dir() {
        return;
    }
    match buffer::DiskBuffer::open(dir, max_bytes, segment_bytes) {
        Ok(b) if b.pending_records() > 0 => tracing::warn!(
            dir = %dir.display(),
            samples = b.pending_samples(),
            "remote_writes is configured, so unsent data left in the single-destination buffer is not shipped; ship it with the old configuration or delete the directory"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot check the single-destination buffer for unsent data")
        }
    }
}
