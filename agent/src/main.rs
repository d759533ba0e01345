//! `vigil-agent`: parses flags, loads the config, starts logging, and runs
//! the agent until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use vigil_agent::config::{Config, Overrides};

/// Vigil node agent: system, PostgreSQL, Redis and LLM usage metrics,
/// served on /metrics and shipped with remote_write.
#[derive(Debug, Parser)]
#[command(name = "vigil-agent", version)]
struct Args {
    /// YAML configuration file (see deploy/agent.example.yaml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// HTTP listen address (default 127.0.0.1:9801).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// remote_write URL (default http://127.0.0.1:9800/api/v1/write; "" disables shipping).
    #[arg(long = "remote-write")]
    remote_write: Option<String>,
    /// PostgreSQL DSN to watch (repeatable; replaces the file's list).
    #[arg(long = "postgres")]
    postgres: Vec<String>,
    /// Redis URL to watch (repeatable; replaces the file's list).
    #[arg(long = "redis")]
    redis: Vec<String>,
    /// Directory for the on-disk send buffer (default ./data-agent).
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
    /// Only log messages with this severity or above: debug, info, warn,
    /// error (default info, or the RUST_LOG filter when set).
    #[arg(long = "log.level")]
    log_level: Option<vigil_log::Level>,
    /// Output format of log messages: logfmt or json.
    #[arg(long = "log.format", default_value = "logfmt")]
    log_format: vigil_log::Format,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks files without running the agent.
    Check {
        #[command(subcommand)]
        what: Check,
    },
}

#[derive(Debug, Subcommand)]
enum Check {
    /// Loads and validates a configuration file: exit status 0 when the
    /// agent would start with it, 1 with the file, line and reason when not.
    Config { file: PathBuf },
}

/// `vigil-agent check config FILE`.
fn check_config(file: &std::path::Path) -> ExitCode {
    match Config::load(file) {
        Ok(c) => {
            let destinations = c.destinations();
            println!(
                "{}: OK ({} remote_write destination{}, {} scrape job{})",
                file.display(),
                destinations.len(),
                if destinations.len() == 1 { "" } else { "s" },
                c.scrape.len(),
                if c.scrape.len() == 1 { "" } else { "s" },
            );
            ExitCode::SUCCESS
        }
        // Read and parse errors name the file already.
        Err(
            e @ (vigil_agent::config::ConfigError::Read { .. }
            | vigil_agent::config::ConfigError::Parse { .. }),
        ) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Check {
        what: Check::Config { file },
    }) = &args.command
    {
        return check_config(file);
    }
    vigil_log::init(args.log_level, args.log_format);
    match real_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", vigil_log::chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn real_main(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    config.apply_overrides(Overrides {
        listen: args.listen,
        remote_write: args.remote_write,
        postgres: args.postgres,
        redis: args.redis,
        data_dir: args.data_dir,
    });
    config.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signals.cancel();
        });
        tokio::spawn(ignore_hangup());
        vigil_agent::run(config, shutdown).await
    })?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; waiting for Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// SIGHUP would terminate the process by default; the agent has no hot
/// reload yet, so it says so instead of dying (systemd's ExecReload sends
/// SIGHUP).
async fn ignore_hangup() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        tracing::warn!(
            "SIGHUP received: configuration reload is not supported; restart vigil-agent to apply changes"
        );
    }
}
