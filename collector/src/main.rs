//! `vigil`: the collector binary. Parses the command line, loads the
//! configuration, starts logging and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use vigil::config::Config;

/// The collector serves many short-lived query allocations from several
/// threads at once. glibc malloc keeps per-thread arenas that it rarely
/// returns, so RSS climbed with query load (178–210 MiB under 2 concurrent
/// range-query clients over 1500 series); mimalloc returns freed pages and
/// held 81–91 MiB under the same load while answering 1.3–1.5× the queries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Observability and alerting for an AI agent platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Only log messages with this severity or above: debug, info, warn,
    /// error (default info, or the RUST_LOG filter when set).
    #[arg(long = "log.level", global = true)]
    log_level: Option<vigil_log::Level>,
    /// Output format of log messages: logfmt or json.
    #[arg(long = "log.format", global = true, default_value = "logfmt")]
    log_format: vigil_log::Format,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector.
    Serve(Box<ServeArgs>),
    /// Check configuration or rule files without starting.
    Check {
        #[command(subcommand)]
        what: CheckCommand,
    },
    /// Run rule unit tests (promtool's test format).
    Test {
        #[command(subcommand)]
        what: TestCommand,
    },
    /// Anomaly detection tools.
    Anomaly {
        #[command(subcommand)]
        what: AnomalyCommand,
    },
    /// Evaluate rule files over stored history as if they had been loaded
    /// at --from; print alert transitions (and, with --alerting-config, the
    /// notifications) as JSON lines.
    Backtest(BacktestArgs),
    /// Service level objectives.
    Slo {
        #[command(subcommand)]
        what: SloCommand,
    },
    /// Print a report over a period: incidents with time to acknowledge
    /// and resolve, the noisiest alerts, SLOs and error budget left, LLM
    /// spend per tenant and model against budget, agents that went down.
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Start of the period: RFC 3339, Unix seconds, or relative to now
    /// (`-7d`, `-24h`).
    #[arg(long, default_value = "-24h", allow_hyphen_values = true)]
    from: String,
    /// End of the period (same forms; `now`).
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    to: String,
    /// The Prometheus-compatible API to read: a Vigil collector (which
    /// adds its incident history) or Prometheus itself.
    #[arg(long, default_value = "http://127.0.0.1:9800")]
    url: String,
    /// File holding a bearer token for the API (the read token).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// markdown, html or json.
    #[arg(long, default_value = "markdown")]
    format: String,
}

#[derive(Subcommand)]
enum SloCommand {
    /// Turn an SLO spec into a Prometheus rule file (recording rules and
    /// multiwindow, multi-burn-rate alerts) on stdout.
    Generate {
        /// SLO spec file (see rules/slo/README.md).
        spec: PathBuf,
    },
}

#[derive(Subcommand)]
enum AnomalyCommand {
    /// Stream a `timestamp,value` CSV (NAB's format) through the detector
    /// the collector runs; prints `timestamp,value,score,is_anomaly` rows.
    Score {
        /// CSV file, or `-` for standard input.
        #[arg(long)]
        input: PathBuf,
        /// Anomaly rule file whose first rule's model settings to use.
        #[arg(long)]
        rule: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// YAML configuration file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:9800).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory (default ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Rule file glob; repeatable.
    #[arg(long = "rule-file")]
    rule_files: Vec<String>,
    /// Alertmanager configuration file.
    #[arg(long)]
    alerting_config: Option<PathBuf>,
    /// HA: peers that share silences and the notification log.
    #[command(flatten)]
    cluster: vigil_cluster::ClusterArgs,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["data_dir", "url"])))]
struct BacktestArgs {
    /// Data directory to read (read-only; `vigil serve` may be running on it).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Prometheus-compatible query API to evaluate against (e.g. http://127.0.0.1:9090).
    #[arg(long)]
    url: Option<String>,
    /// Rule file glob (Prometheus rule files and Vigil anomaly rule files); repeatable.
    #[arg(long = "rule-file", required = true)]
    rule_files: Vec<String>,
    /// Alertmanager configuration: also print the notifications routing,
    /// grouping, inhibition and silences would have sent.
    #[arg(long)]
    alerting_config: Option<PathBuf>,
    /// Extra silences for the simulation: a JSON array as POST /api/v2/silences takes them.
    #[arg(long)]
    silences: Option<PathBuf>,
    /// Start: RFC 3339, Unix seconds, `now` or `-7d`.
    #[arg(long, allow_hyphen_values = true)]
    from: String,
    /// End (same forms as --from).
    #[arg(long, allow_hyphen_values = true, default_value = "now")]
    to: String,
    /// Interval of rule groups that set none (Prometheus's evaluation_interval).
    #[arg(long = "eval-interval", default_value = "1m", value_parser = parse_interval)]
    eval_interval: std::time::Duration,
    /// Write recording rules' output into --data-dir (refused while serve runs on it).
    #[arg(long)]
    backfill: bool,
    /// Anomaly scores to print: all, flagged or none.
    #[arg(long, value_enum, default_value = "all")]
    scores: vigil::backtest::Scores,
    /// Base of alerts' generatorURL.
    #[arg(long = "web.external-url", default_value = "http://localhost:9800")]
    external_url: String,
}

fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    vigil::config::parse_duration(s)
}

#[derive(Subcommand)]
enum CheckCommand {
    /// Check a Vigil or Alertmanager configuration file.
    Config { file: PathBuf },
    /// Check rule files, like `promtool check rules`.
    Rules {
        /// Linting checks: all, duplicate-rules or none (comma-separated).
        #[arg(long, default_value = "duplicate-rules")]
        lint: String,
        /// Make lint errors exit with status 3.
        #[arg(long = "lint-fatal")]
        lint_fatal: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TestCommand {
    /// Run rule unit-test files, like `promtool test rules`.
    Rules {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Before anything allocates: pages faulted in as huge stay huge.
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            vigil_log::init(cli.log_level, cli.log_format);
            match serve(*args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // One record, on stderr like every log line: printing
                    // it again with eprintln! showed config errors twice.
                    tracing::error!("{}", vigil_log::chain(e.as_ref()));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { what } => exit(vigil::cli::check(match what {
            CheckCommand::Config { file } => vigil::cli::Check::Config(file),
            CheckCommand::Rules {
                files,
                lint,
                lint_fatal,
            } => vigil::cli::Check::Rules(files, lint, lint_fatal),
        })),
        Command::Test {
            what: TestCommand::Rules { files },
        } => exit(vigil::cli::test_rules(&files)),
        Command::Anomaly {
            what: AnomalyCommand::Score { input, rule },
        } => exit(vigil::cli::anomaly_score(&input, rule.as_deref())),
        Command::Backtest(a) => exit(vigil::backtest::run(vigil::backtest::Args {
            data_dir: a.data_dir,
            url: a.url,
            rule_files: a.rule_files,
            alerting_config: a.alerting_config,
            silences: a.silences,
            from: a.from,
            to: a.to,
            eval_interval: a.eval_interval,
            backfill: a.backfill,
            scores: a.scores,
            external_url: a.external_url,
        })),
        Command::Report(a) => exit(vigil::cli::report(
            &a.url,
            a.token_file.as_deref(),
            &a.from,
            &a.to,
            &a.format,
        )),
        Command::Slo {
            what: SloCommand::Generate { spec },
        } => exit(vigil::cli::slo_generate(&spec)),
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        cfg.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        cfg.data_dir = dir;
    }
    if !args.rule_files.is_empty() {
        cfg.rules.files = args.rule_files;
    }
    if let Some(path) = args.alerting_config {
        cfg.alerting_config = Some(path);
    }
    cfg.cluster = args.cluster.options().map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = vigil::signals::spawn(shutdown.clone())?;
        vigil::server::run(cfg, shutdown, signals).await?;
        Ok(())
    })
}

/// mimalloc advises its arenas for transparent huge pages, so on hosts with
/// THP in `madvise` (Debian's default) or `always` mode the collector's
/// resident memory grew in 2 MiB steps that partly used pages never gave
/// back: 57 MiB after a minute of the 5x soak with huge pages, 34 MiB
/// without. Small, short-lived query allocations gain nothing from them.
/// mimalloc's own start-up, before `main`, still faults its first 4 MiB
/// as huge pages; everything after is ordinary pages.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "could not opt out of transparent huge pages");
    }
}
