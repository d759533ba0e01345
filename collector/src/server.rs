//! `vigil serve`: the HTTP server and the wiring of storage, PromQL, rules
//! and alerting, with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use vigil_promql::{Engine, EngineOptions};
use vigil_tsdb::Db;

use crate::config::{Config, SyncSetting};
use crate::storage::TsdbQueryable;
use crate::telemetry::{self, Telemetry};
use crate::{ingest, queries};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("opening the store in {dir}: {source}")]
    Storage {
        dir: String,
        source: vigil_tsdb::Error,
    },
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    #[error("flushing the store: {0}")]
    Flush(vigil_tsdb::Error),
    #[error("authentication: {0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("rule files rejected:\n{0}")]
    Rules(String),
    #[error("alerting configuration: {0}")]
    AlertingConfig(String),
    #[error("starting alerting: {0}")]
    Alerting(#[from] vigil_alerting::Error),
    #[error("{0}")]
    Remote(String),
    #[error("{0}")]
    Reports(String),
}

/// Everything a request handler needs.
pub struct App {
    pub cfg: Config,
    pub db: Arc<Db>,
    pub engine: Arc<Engine>,
    pub rules: Arc<vigil_rules::RuleManager>,
    /// Anomaly rules (issue 7): detectors, scores and anomaly alerts.
    pub anomaly: Arc<crate::anomaly::AnomalyManager>,
    pub alerting: Arc<vigil_alerting::Alerting>,
    pub reloads: crate::telemetry::ReloadCounters,
    reload_lock: tokio::sync::Mutex<()>,
    pub query_slots: Arc<Semaphore>,
    pub telemetry: Telemetry,
    pub ready: AtomicBool,
    pub tokens: Arc<crate::auth::Tokens>,
    /// remote_write forwarding and remote rule queries.
    pub remote: crate::forward::Remote,
    /// Cardinality budgets and their refusals.
    pub cardinality: crate::cardinality::Cardinality,
    /// Liveness of the pushing agents (`up`, `AgentDown`).
    pub agents: Arc<crate::agents::Liveness>,
    /// The scheduled report digest's deliveries.
    pub digests: Arc<crate::report::digest::DigestMetrics>,
}

impl App {
    pub fn queryable(&self) -> TsdbQueryable {
        TsdbQueryable(self.db.clone())
    }
}

/// Loads and validates the rule files named by the configuration, split
/// into threshold rules and anomaly rules.
fn load_rules(
    cfg: &Config,
) -> Result<(vigil_rules::RuleSet, crate::anomaly::AnomalyRuleSet), String> {
    crate::anomaly::load_rule_files(&cfg.rules.files)
}

fn load_alerting_config(cfg: &Config) -> Result<vigil_alerting::AlertingConfig, String> {
    match &cfg.alerting_config {
        Some(path) => vigil_alerting::load_config(path).map_err(|e| e.to_string()),
        None => Ok(vigil_alerting::AlertingConfig::default_config()),
    }
}

/// Opens the store, starts alerting and the rule manager, and builds the
/// shared state. Invalid rule files or alerting configuration at start-up
/// are fatal, with every problem listed, as in Prometheus.
pub async fn open_app(cfg: Config, shutdown: CancellationToken) -> Result<Arc<App>, ServeError> {
    let tokens = Arc::new(crate::auth::Tokens::load(&cfg.auth)?);
    let (rule_set, anomaly_set) = load_rules(&cfg).map_err(ServeError::Rules)?;
    let alerting_cfg = load_alerting_config(&cfg).map_err(ServeError::AlertingConfig)?;
    if let Some(digest) = &cfg.reports.digest {
        digest
            .validate(&alerting_cfg)
            .map_err(ServeError::Reports)?;
    }
    let escalations = cfg
        .escalations(&alerting_cfg)
        .map_err(ServeError::AlertingConfig)?;
    let forwarder =
        crate::forward::Forwarder::open(&cfg).map_err(|e| ServeError::Remote(e.to_string()))?;
    let notifier =
        crate::notifier::Notifier::new(&cfg.alerting.external()).map_err(ServeError::Remote)?;
    let opts = vigil_tsdb::Options {
        commit_observer: forwarder
            .clone()
            .map(|f| f as Arc<dyn vigil_tsdb::CommitObserver>),
        retention: cfg.storage.retention.0,
        max_bytes: cfg.storage.retention_size.map(|b| b.0),
        sync: match cfg.storage.sync {
            SyncSetting::Normal => vigil_tsdb::SyncMode::Normal,
            SyncSetting::Full => vigil_tsdb::SyncMode::Full,
        },
        max_future_ms: cfg.storage.max_future.0.as_millis() as i64,
        read_cache_bytes: usize::try_from(cfg.query.decoded_cache_size.0).unwrap_or(usize::MAX),
        ..vigil_tsdb::Options::default()
    };
    let db_dir = cfg.data_dir.join("tsdb");
    let db = {
        let open_dir = db_dir.clone();
        tokio::task::spawn_blocking(move || Db::open(&open_dir, opts))
            .await
            .map_err(|e| ServeError::Http(std::io::Error::other(e)))?
            .map_err(|source| ServeError::Storage {
                dir: db_dir.display().to_string(),
                source,
            })?
    };
    let db = Arc::new(db);
    let engine = Arc::new(Engine::new(EngineOptions {
        lookback_delta_ms: cfg.query.lookback_delta.0.as_millis() as i64,
        max_samples: cfg.query.max_samples,
        timeout: cfg.query.timeout.0,
        ..EngineOptions::default()
    }));
    let alerting = vigil_alerting::Alerting::start(
        alerting_cfg,
        vigil_alerting::AlertingOptions {
            external_url: cfg.external_url(),
            data_dir: cfg.data_dir.join("alerting"),
            cluster: cfg.cluster.clone(),
            escalations,
            incident_retention: cfg.alerting.incident_retention.0,
            ..vigil_alerting::AlertingOptions::default()
        },
        shutdown.clone(),
    )
    .await?;
    let external_labels = vigil_wire::Labels::from_pairs(cfg.external_labels.clone());
    let (rule_storage, remote_query): (Arc<dyn vigil_promql::Queryable>, _) =
        match &cfg.rules.remote_query {
            None => (Arc::new(TsdbQueryable(db.clone())), None),
            Some(q) => {
                let r = crate::remote_query::RemoteQueryable::new(
                    q,
                    TsdbQueryable(db.clone()),
                    tokio::runtime::Handle::current(),
                )
                .map_err(|e| ServeError::Remote(format!("rules.remote_query: {e}")))?;
                tracing::info!(url = %q.url, "rules evaluate against a remote query API");
                let m = (r.url.clone(), r.metrics.clone());
                (Arc::new(r), Some(m))
            }
        };
    let rules = vigil_rules::RuleManager::new(
        engine.clone(),
        rule_storage,
        Arc::new(crate::pipeline::StoreAppender(db.clone())),
        Arc::new(crate::notifier::FanoutSender {
            inner: Arc::new(crate::pipeline::AlertingSender {
                alerting: alerting.clone(),
                runtime: tokio::runtime::Handle::current(),
            }),
            notifier: notifier.clone(),
        }),
        vigil_rules::ManagerOptions {
            external_labels,
            external_url: cfg.external_url(),
            default_interval: cfg.rules.evaluation_interval.0,
            for_grace_period: cfg.rules.for_grace_period.0,
            outage_tolerance: cfg.rules.outage_tolerance.0,
            resend_delay: cfg.rules.resend_delay.0,
            ..vigil_rules::ManagerOptions::default()
        },
    );
    tracing::info!(rules = rule_set.rule_count(), "rules loaded");
    rules.update(rule_set);
    // --- anomaly rules (owned by the anomaly work; keep this block together)
    let anomaly = crate::anomaly::AnomalyManager::new(
        engine.clone(),
        Arc::new(TsdbQueryable(db.clone())),
        Arc::new(crate::pipeline::StoreAppender(db.clone())),
        Arc::new(crate::notifier::FanoutSender {
            inner: Arc::new(crate::pipeline::AlertingSender {
                alerting: alerting.clone(),
                runtime: tokio::runtime::Handle::current(),
            }),
            notifier: notifier.clone(),
        }),
        crate::anomaly::AnomalyOptions {
            models_dir: cfg.data_dir.join("models"),
            default_interval: cfg.rules.evaluation_interval.0,
            save_interval: Duration::from_secs(300),
            external_url: cfg.external_url(),
            external_labels: vigil_wire::Labels::from_pairs(cfg.external_labels.clone()),
            for_grace_period: cfg.rules.for_grace_period.0,
            outage_tolerance: cfg.rules.outage_tolerance.0,
        },
    );
    tracing::info!(rules = anomaly_set.rule_count(), "anomaly rules loaded");
    anomaly.update(anomaly_set);
    // --- end anomaly rules
    let agents = Arc::new(crate::agents::Liveness::open(
        &cfg.data_dir,
        cfg.agents.options(),
    ));
    Ok(Arc::new(App {
        agents,
        digests: Default::default(),
        query_slots: Arc::new(Semaphore::new(cfg.query.max_concurrency)),
        cardinality: crate::cardinality::Cardinality::new(cfg.series_limits()),
        cfg,
        db,
        engine,
        rules,
        anomaly,
        alerting,
        reloads: Default::default(),
        reload_lock: tokio::sync::Mutex::new(()),
        telemetry: Telemetry::default(),
        ready: AtomicBool::new(false),
        tokens,
        remote: crate::forward::Remote {
            forwarder,
            query: remote_query,
            notifier,
        },
    }))
}

/// The HTTP routes of the collector.
pub fn router(app: Arc<App>) -> Router {
    let body_limit = DefaultBodyLimit::max(app.cfg.limits.max_body_bytes.0 as usize);
    let ingest = Router::new()
        .route("/api/v1/write", post(ingest::remote_write))
        .route("/v1/metrics", post(crate::otlp::http))
        .route("/api/v1/import/prometheus", post(ingest::import_prometheus))
        .layer(body_limit);
    let read = Router::new()
        .route(
            "/api/v1/query",
            get(queries::instant_query).post(queries::instant_query),
        )
        .route(
            "/api/v1/query_range",
            get(queries::range_query).post(queries::range_query),
        )
        .route("/api/v1/series", get(queries::series).post(queries::series))
        .route(
            "/api/v1/labels",
            get(queries::label_names).post(queries::label_names),
        )
        .route("/api/v1/label/{name}/values", get(queries::label_values))
        .route("/api/v1/metadata", get(queries::metadata))
        .route(
            "/api/v1/query_exemplars",
            get(queries::query_exemplars).post(queries::query_exemplars),
        )
        .route("/api/v1/status/buildinfo", get(queries::buildinfo))
        .route("/api/v1/status/tsdb", get(crate::cardinality::status_tsdb))
        .route(
            "/api/v1/status/limits",
            get(crate::cardinality::status_limits),
        )
        .route("/api/v1/rules", get(queries::rules))
        .route("/api/v1/alerts", get(queries::alerts))
        .route("/api/vigil/v1/agents", get(crate::agents::list_agents))
        .route(
            "/api/vigil/v1/agents/{job}/{instance}",
            axum::routing::delete(crate::agents::forget_agent),
        )
        .layer(DefaultBodyLimit::max(8 << 20));
    let tokens = app.tokens.clone();
    let alertmanager_api = app.alerting.router();
    let ui_options = crate::ui::options(&app);
    let api = Router::new()
        .merge(ingest)
        .merge(read)
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload_endpoint).put(reload_endpoint))
        .route("/metrics", get(self_metrics))
        .with_state(app)
        .merge(alertmanager_api);
    // The web UI reads through the API router in-process, after checking
    // its own session; it is merged beside the API under the same layer.
    let ui = vigil_ui::Ui::new(ui_options, api.clone());
    let sessions = ui.sessions();
    let router = api.merge(vigil_ui::router(ui));
    if tokens.is_enabled() {
        router.layer(axum::middleware::from_fn_with_state(
            crate::auth::Guard { tokens, sessions },
            crate::auth::middleware,
        ))
    } else {
        router
    }
}

async fn reload_endpoint(State(app): State<Arc<App>>) -> Response {
    match app.reload().await {
        Ok(()) => (StatusCode::OK, "reloaded\n").into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn healthy() -> &'static str {
    "Vigil is Healthy.\n"
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "Vigil is Ready.\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    }
}

async fn self_metrics(State(app): State<Arc<App>>) -> Response {
    let mut out = String::new();
    let stats = app.db.stats();
    telemetry::gauge(
        &mut out,
        "vigil_tsdb_series",
        "Series in the store.",
        stats.series as f64,
    );
    telemetry::gauge(
        &mut out,
        "vigil_tsdb_head_samples",
        "Samples held in the in-memory heads.",
        stats.head_samples as f64,
    );
    telemetry::gauge(
        &mut out,
        "vigil_tsdb_chunks",
        "Compressed chunks stored.",
        stats.chunk_count as f64,
    );
    telemetry::gauge(
        &mut out,
        "vigil_tsdb_chunk_bytes",
        "Bytes of compressed chunk data stored.",
        stats.chunk_bytes as f64,
    );
    telemetry::gauge(
        &mut out,
        "vigil_tsdb_chunk_samples",
        "Samples held in compressed chunks.",
        stats.chunk_samples as f64,
    );
    telemetry::gauge(
        &mut out,
        "vigil_tsdb_database_bytes",
        "Size of the database files on disk.",
        stats.db_file_bytes as f64,
    );
    let rc = stats.read_cache;
    for (name, help, v) in [
        (
            "vigil_tsdb_read_cache_bytes",
            "Bytes of decoded stored chunks held by the read cache.",
            rc.bytes,
        ),
        (
            "vigil_tsdb_read_cache_max_bytes",
            "Bound of the read cache (query.decoded_cache_size; 0: off).",
            rc.max_bytes,
        ),
        (
            "vigil_tsdb_read_cache_entries",
            "Decoded chunks held by the read cache.",
            rc.entries,
        ),
    ] {
        telemetry::gauge(&mut out, name, help, v as f64);
    }
    for (name, help, v) in [
        (
            "vigil_tsdb_read_cache_hits_total",
            "Stored chunks a query read from the read cache.",
            rc.hits,
        ),
        (
            "vigil_tsdb_read_cache_misses_total",
            "Stored chunks a query had to decode (then cached).",
            rc.misses,
        ),
        (
            "vigil_tsdb_read_cache_evictions_total",
            "Decoded chunks dropped from the read cache to stay within its bound.",
            rc.evictions,
        ),
    ] {
        telemetry::counter(&mut out, name, help, v);
    }
    telemetry::counter(
        &mut out,
        "vigil_samples_ingested_total",
        "Samples accepted into the store.",
        stats.samples_appended_total,
    );
    telemetry::labelled_counter(
        &mut out,
        "vigil_tsdb_wal_checkpoints_total",
        "Checkpoints of SQLite's WAL file: by the background thread, or inline by the writer once the file passed its bound (the background falls behind).",
        "where",
        [
            ("background".to_string(), stats.wal_checkpoints_background),
            ("inline".to_string(), stats.wal_checkpoints_inline),
        ]
        .into_iter(),
    );
    telemetry::labelled_counter(
        &mut out,
        "vigil_tsdb_samples_rejected_total",
        "Samples the store refused, by reason.",
        "reason",
        stats
            .rejected_total
            .iter()
            .map(|(k, v)| (k.to_string(), *v)),
    );
    {
        use std::fmt::Write as _;
        let name = "vigil_wal_fsync_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Latency of durable commits of the write-ahead record.\n# TYPE {name} histogram"
        );
        for (le, count) in &stats.commit_seconds_buckets {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {count}",
                vigil_wire::exposition::format_value(*le)
            );
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", stats.commits_total);
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {}",
            vigil_wire::exposition::format_value(stats.commit_seconds_sum),
            stats.commits_total
        );
    }
    app.telemetry.render(&mut out);
    app.cardinality.render(&mut out);
    app.reloads.render(&mut out);
    app.remote.render_metrics(&mut out);
    app.rules.render_metrics(&mut out);
    app.anomaly.render_metrics(&mut out);
    app.alerting.render_metrics(&mut out);
    app.agents.render_metrics(&mut out);
    app.digests.render(&mut out);
    telemetry::render_data_dir_filesystem(&mut out, &app.cfg.data_dir);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Runs the collector until `shutdown` is cancelled, then drains requests
/// and flushes the store.
pub async fn run(
    cfg: Config,
    shutdown: CancellationToken,
    reload: Arc<tokio::sync::Notify>,
) -> Result<(), ServeError> {
    let listen = cfg.listen;
    if let Some(tls) = &cfg.tls {
        // Fail before binding when the certificate or key is unusable.
        crate::tls::server_config(tls)?;
    }
    let app = open_app(cfg, shutdown.clone()).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: listen,
            source,
        })?;
    let local = listener.local_addr().map_err(ServeError::Http)?;
    tracing::info!(addr = %local, data_dir = %app.cfg.data_dir.display(), "vigil collector listening");
    let otlp = &app.cfg.otlp;
    let grpc_listener = if !otlp.grpc {
        None
    } else if app.cfg.tls.is_some() && otlp.grpc_listen.is_none() {
        tracing::info!(
            "OTLP/gRPC not served: it has no TLS and `tls` is set; set otlp.grpc_listen to serve it in plain HTTP/2 (behind a TLS-terminating proxy)"
        );
        None
    } else {
        vigil_otlp::grpc::bind(otlp.grpc_listen, listen, "otlp.grpc_listen")
            .await
            .map_err(|(addr, source)| ServeError::Listen { addr, source })?
    };
    let grpc = match grpc_listener {
        Some(l) => {
            let addr = l.local_addr().map_err(ServeError::Http)?;
            tracing::info!(%addr, "serving OTLP/gRPC");
            let handler = Arc::new(crate::otlp::GrpcHandler(app.clone()));
            let max = app.cfg.limits.max_decompressed_bytes.0 as usize;
            let stop = shutdown.clone();
            Some(tokio::spawn(async move {
                vigil_otlp::grpc::serve(l, handler, max, async move { stop.cancelled().await })
                    .await
            }))
        }
        None => None,
    };

    let maintenance = tokio::spawn(maintenance_loop(app.clone(), shutdown.clone()));
    let reloader = tokio::spawn(reload_loop(app.clone(), reload.clone(), shutdown.clone()));
    let evaluator = tokio::spawn(app.rules.clone().run(shutdown.clone()));
    let remote_senders = app.remote.start(&shutdown);
    let anomaly_evaluator = tokio::spawn(app.anomaly.clone().run(shutdown.clone()));
    if !app.cfg.llm.is_empty() {
        tokio::spawn(crate::budget::run(
            app.cfg.llm.clone(),
            app.engine.clone(),
            Arc::new(app.queryable()),
            Arc::new(crate::pipeline::StoreAppender(app.db.clone())),
            app.cfg.rules.evaluation_interval.0,
            shutdown.clone(),
        ));
    }
    if let Some(digest) = app.cfg.reports.digest.clone() {
        tokio::spawn(crate::report::digest::run(
            digest,
            app.alerting.clone(),
            app.engine.clone(),
            Arc::new(app.queryable()),
            app.digests.clone(),
            shutdown.clone(),
        ));
    }
    let liveness = tokio::spawn(app.agents.clone().run(app.db.clone(), shutdown.clone()));
    let _watcher = crate::watch::watch_files(&app.cfg, reload.clone());
    app.ready.store(true, Ordering::Relaxed);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(period) = sd_notify::watchdog_enabled() {
        tokio::spawn(watchdog_loop(app.clone(), period, shutdown.clone()));
    }

    let server_shutdown = shutdown.clone();
    // The peer address identifies an agent when ingest is unauthenticated.
    let routes =
        router(app.clone()).into_make_service_with_connect_info::<crate::cardinality::PeerAddr>();
    match &app.cfg.tls {
        None => axum::serve(listener, routes)
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await
            .map_err(ServeError::Http)?,
        Some(tls) => {
            let tls_listener =
                crate::tls::TlsListener::new(listener, crate::tls::server_config(tls)?)
                    .map_err(ServeError::Http)?;
            axum::serve(tls_listener, routes)
                .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
                .await
                .map_err(ServeError::Http)?
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    app.ready.store(false, Ordering::Relaxed);
    if let Some(g) = grpc {
        match g.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "OTLP/gRPC server failed"),
            Err(e) => tracing::error!(error = %e, "OTLP/gRPC server task failed"),
        }
    }
    let _ = maintenance.await;
    let _ = reloader.await;
    let _ = evaluator.await;
    // Saves the anomaly detectors before the process exits.
    let _ = anomaly_evaluator.await;
    // Saves what is known of the agents.
    let _ = liveness.await;
    app.remote.stop(remote_senders).await;
    tracing::info!("flushing the store");
    let db = app.db.clone();
    tokio::task::spawn_blocking(move || db.flush())
        .await
        .map_err(|e| ServeError::Http(std::io::Error::other(e)))?
        .map_err(ServeError::Flush)?;
    tracing::info!("vigil collector stopped");
    Ok(())
}

/// Retention and periodic head flushes, off the request path.
async fn maintenance_loop(app: Arc<App>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(60));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let db = app.db.clone();
        let result =
            tokio::task::spawn_blocking(move || db.enforce_retention(crate::params::now_ms()))
                .await;
        match result {
            Ok(Ok(dropped)) if dropped > 0 => tracing::info!(dropped, "retention deleted old data"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "retention failed"),
            Err(e) => tracing::warn!(error = %e, "retention task failed"),
        }
    }
}

/// How long file changes must stop before a reload reads the files.
const RELOAD_QUIET: Duration = Duration::from_millis(300);

/// Applies reload requests (SIGHUP, file changes) until shutdown.
async fn reload_loop(app: Arc<App>, reload: Arc<tokio::sync::Notify>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = reload.notified() => {
                // File changes arrive in bursts (editors write, rename,
                // chmod): wait until none has come for a moment, so one
                // save is one reload.
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = reload.notified() => continue,
                        _ = tokio::time::sleep(RELOAD_QUIET) => break,
                    }
                }
                if let Err(e) = app.reload().await {
                    tracing::error!(error = %e, "reload rejected; the running configuration stays");
                }
            }
        }
    }
}

impl App {
    /// Re-reads rule files and the alerting configuration; a bad new set is
    /// rejected and the running one kept.
    pub async fn reload(&self) -> Result<(), String> {
        let _serialised = self.reload_lock.lock().await;
        // Validate everything before applying anything.
        let rules = load_rules(&self.cfg);
        let alerting_cfg = load_alerting_config(&self.cfg);
        let ((set, anomaly_set), alerting_cfg) = match (rules, alerting_cfg) {
            (Ok(sets), Ok(a)) => (sets, a),
            (rules, alerting) => {
                let mut reasons = Vec::new();
                if let Err(e) = rules {
                    for line in e.lines() {
                        tracing::error!(problem = %line, "rule file rejected");
                    }
                    reasons.push(e);
                }
                if let Err(e) = alerting {
                    tracing::error!(problem = %e, "alerting configuration rejected");
                    reasons.push(e);
                }
                self.reloads.failure();
                return Err(reasons.join("\n"));
            }
        };
        let escalations = match self.cfg.escalations(&alerting_cfg) {
            Ok(e) => e,
            Err(e) => {
                self.reloads.failure();
                tracing::error!(problem = %e, "escalation rules rejected");
                return Err(e);
            }
        };
        if let Err(e) = self
            .alerting
            .reload_with_escalations(alerting_cfg, escalations)
            .await
        {
            self.reloads.failure();
            tracing::error!(error = %e, "alerting configuration rejected");
            return Err(e.to_string());
        }
        let count = set.rule_count();
        self.rules.update(set);
        let anomaly_count = anomaly_set.rule_count();
        self.anomaly.update(anomaly_set);
        self.reloads.success();
        tracing::info!(
            rules = count,
            anomaly_rules = anomaly_count,
            "configuration reloaded"
        );
        Ok(())
    }
}

/// Pings systemd's watchdog at half its period while the collector is
/// healthy: the store must answer a stats call, so a wedged writer stops
/// the pings and systemd restarts the service.
async fn watchdog_loop(app: Arc<App>, period: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(period / 2);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let db = app.db.clone();
        let alive =
            tokio::time::timeout(period / 2, tokio::task::spawn_blocking(move || db.stats())).await;
        if matches!(alive, Ok(Ok(_))) {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!(
                "store did not answer within half the watchdog period; withholding the watchdog ping"
            );
        }
    }
}
