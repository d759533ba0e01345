//! `vigil-alertmanager`: Vigil's alerting served standalone, with
//! Alertmanager's flag names, so Prometheus, `amtool` and tests can talk to
//! it like to an Alertmanager. Reloads on SIGHUP and `POST /-/reload`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use vigil_alerting::{Alerting, AlertingOptions, load_config};

#[derive(Parser, Debug)]
#[command(
    name = "vigil-alertmanager",
    about = "Alertmanager-compatible alerting (Vigil)"
)]
struct Args {
    /// Alertmanager configuration file.
    #[arg(long = "config.file", default_value = "alertmanager.yml")]
    config_file: PathBuf,
    /// Address to serve the API on (port 0 picks a free port).
    #[arg(long = "web.listen-address", default_value = "127.0.0.1:9803")]
    listen: SocketAddr,
    /// Directory for `alerting.db`.
    #[arg(long = "storage.path", default_value = "data/")]
    storage: PathBuf,
    /// URL under which Vigil is reachable (externalURL in notifications).
    #[arg(long = "web.external-url")]
    external_url: Option<String>,
    /// Timeout of one notification attempt.
    #[arg(long = "notify.timeout", default_value = "15s", value_parser = humantime::parse_duration)]
    notify_timeout: Duration,
    /// First retry delay after a failed notification.
    #[arg(long = "notify.retry-initial-backoff", default_value = "1s", value_parser = humantime::parse_duration)]
    retry_initial: Duration,
    /// Longest retry delay.
    #[arg(long = "notify.retry-max-backoff", default_value = "1m", value_parser = humantime::parse_duration)]
    retry_max: Duration,
    /// Give up on a notification this long after it was created.
    #[arg(long = "notify.give-up-after", default_value = "1h", value_parser = humantime::parse_duration)]
    give_up: Duration,
    /// How long the notification log and expired silences are kept.
    #[arg(long = "data.retention", default_value = "120h", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// HA: peers that share silences and the notification log.
    #[command(flatten)]
    cluster: vigil_cluster::ClusterArgs,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long = "log.level", default_value = "info")]
    log_level: String,
}

struct App {
    alerting: Arc<Alerting>,
    config_file: PathBuf,
}

async fn reload(app: &App) -> Result<(), String> {
    let cfg = load_config(&app.config_file).map_err(|e| e.to_string())?;
    app.alerting.reload(cfg).await.map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log_level)
                .context("invalid --log.level")?,
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: journald and log files get
        // plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cfg = load_config(&args.config_file)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let opts = AlertingOptions {
        external_url: args
            .external_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}")),
        data_dir: args.storage.clone(),
        notify_timeout: args.notify_timeout,
        retry_initial_backoff: args.retry_initial,
        retry_max_backoff: args.retry_max,
        give_up_after: args.give_up,
        retention: args.retention,
        cluster: args.cluster.options().map_err(anyhow::Error::msg)?,
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    let alerting = Alerting::start(cfg, opts, shutdown.clone()).await?;
    let app = Arc::new(App {
        alerting: Arc::clone(&alerting),
        config_file: args.config_file.clone(),
    });

    let ops = axum::Router::new()
        .route("/-/healthy", get(|| async { "OK" }))
        .route("/-/ready", get(|| async { "OK" }))
        .route(
            "/-/reload",
            post(|State(app): State<Arc<App>>| async move {
                match reload(&app).await {
                    Ok(()) => (StatusCode::OK, String::new()),
                    Err(e) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("failed to reload config: {e}"),
                    ),
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(app): State<Arc<App>>| async move {
                let mut out = String::new();
                app.alerting.render_metrics(&mut out);
                ([("content-type", "text/plain; version=0.0.4")], out)
            }),
        )
        .with_state(Arc::clone(&app));
    let router = alerting.router().merge(ops);

    {
        let app = Arc::clone(&app);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = hup.recv() => match reload(&app).await {
                        Ok(()) => info!("configuration reloaded on SIGHUP"),
                        Err(e) => error!(error = %e, "reload failed; keeping the running configuration"),
                    },
                }
            }
        });
    }
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            shutdown.cancel();
        });
    }
    // Tests and scripts read the bound address from this line.
    println!("vigil-alertmanager listening on http://{addr}");
    info!(%addr, "listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("server failed")?;
    Ok(())
}
