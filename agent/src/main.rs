//! `vigil-agent`: parses flags, loads the config, starts logging, and runs
//! the agent until SIGTERM or SIGINT; SIGHUP reloads the configuration (a
//! refused one leaves the running one in place).

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

/// The configuration the flags and the file give: defaults < file < flags.
fn load_config(file: Option<&std::path::Path>, overrides: &Overrides) -> anyhow::Result<Config> {
    let mut config = match file {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    config.apply_overrides(overrides.clone());
    config.validate()?;
    Ok(config)
}

fn real_main(args: Args) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        remote_write: args.remote_write,
        postgres: args.postgres,
        redis: args.redis,
        data_dir: args.data_dir,
    };
    let file = args.config;
    let mut config = load_config(file.as_deref(), &overrides)?;
    vigil_agent::RELOAD_STATUS.record(true);
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
        let mut hangups = hangups();
        loop {
            // One run per configuration: a reload stops this one as a
            // SIGTERM would (collections flushed into the buffers, an
            // in-flight send finished) and starts the next on the same
            // buffers, so nothing collected is lost.
            let run = shutdown.child_token();
            let mut agent = tokio::spawn(vigil_agent::run(config.clone(), run.clone()));
            let next = loop {
                tokio::select! {
                    r = &mut agent => {
                        return match r {
                            Ok(r) => r.map_err(anyhow::Error::from),
                            Err(e) => Err(anyhow::anyhow!("agent task failed: {e}")),
                        };
                    }
                    Some(()) = hangups.recv() => {
                        match load_config(file.as_deref(), &overrides) {
                            Ok(c) => break c,
                            Err(e) => {
                                vigil_agent::RELOAD_STATUS.record(false);
                                tracing::error!(
                                    "SIGHUP: configuration refused, the running one stays: {}",
                                    vigil_log::chain(e.as_ref())
                                );
                            }
                        }
                    }
                }
            };
            tracing::info!(
                "SIGHUP: configuration valid; restarting the collectors and senders with it"
            );
            run.cancel();
            match agent.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(e) => return Err(anyhow::anyhow!("agent task failed: {e}")),
            }
            if shutdown.is_cancelled() {
                return Ok(());
            }
            vigil_agent::RELOAD_STATUS.record(true);
            config = next;
        }
    })
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

/// SIGHUP (systemd's `ExecReload`, `kill -HUP`): each one asks for the
/// configuration to be reloaded.
fn hangups() -> tokio::sync::mpsc::Receiver<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP received: reloading the configuration");
                    // A reload already pending covers this one too.
                    let _ = tx.try_send(());
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot watch SIGHUP; configuration reload disabled"),
    }
    rx
}
