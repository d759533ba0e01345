//! `vigil backtest`: rule files evaluated over a stored time range as if
//! they had been loaded at its start, against a data directory (read-only,
//! also while `vigil serve` runs on it) or any Prometheus-compatible query
//! API. The evaluation itself is [`vigil_rules::backtest`] (threshold and
//! recording rules) and [`crate::anomaly::backtest`] (anomaly rules); this
//! module wires them to storage, the alerting pipeline's dispatcher
//! (`--alerting-config`), backfill and the command line.
//!
//! Output, one JSON object per line on stdout, in time order per kind:
//! - alert transitions: `{"time", "rule", "labels", "state", "value"}`
//!   with `state` `pending`, `firing` or `resolved`;
//! - with `--alerting-config`: `{"time", "notification": {"receiver",
//!   "integration", "groupKey", "status", "alerts"}}`;
//! - anomaly rules: `{"time", "rule", "labels", "value", "score",
//!   "anomaly", "severity"}` per scored point (`--scores flagged` prints
//!   only the flagged ones).

mod notify;
mod remote;
mod source;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vigil_promql::{Engine, EngineOptions, Queryable};
use vigil_rules::backtest::{self as bt, Options, Transition};
use vigil_wire::Labels;

/// Which anomaly scores to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scores {
    /// Every scored point.
    All,
    /// Only the points the detector flagged.
    Flagged,
    /// None (transitions and notifications only).
    None,
}

/// The command's arguments.
#[derive(Debug, Clone)]
pub struct Args {
    pub data_dir: Option<PathBuf>,
    pub url: Option<String>,
    pub rule_files: Vec<String>,
    pub alerting_config: Option<PathBuf>,
    /// Silences (JSON array as `POST /api/v2/silences` takes them) that
    /// apply in the simulation, besides those stored in the data directory.
    pub silences: Option<PathBuf>,
    pub from: String,
    pub to: String,
    pub eval_interval: Duration,
    pub backfill: bool,
    pub scores: Scores,
    pub external_url: String,
}

/// Parses a time as Prometheus's API and promtool take it, plus relative
/// forms: RFC 3339, Unix seconds (with a fraction), `now`, `-7d` or
/// `now-7d` (Prometheus durations).
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_ms);
    }
    if let Some(rel) = s.strip_prefix("now-").or_else(|| s.strip_prefix('-')) {
        let d = crate::config::parse_duration(rel).map_err(|e| format!("time {s:?}: {e}"))?;
        return Ok(now_ms - d.as_millis() as i64);
    }
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("time {s:?}: not RFC 3339, Unix seconds, `now` or `-DURATION`: {e}"))
}

/// A finite value as a JSON number, anything else as Prometheus's string.
fn json_value(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v)
        .map(serde_json::Value::Number)
        .unwrap_or_else(|| serde_json::Value::String(vigil_promql::format_float(v)))
}

fn json_labels(l: &Labels) -> serde_json::Value {
    serde_json::Value::Object(
        l.iter()
            .map(|l| (l.name.clone(), serde_json::Value::String(l.value.clone())))
            .collect(),
    )
}

/// One transition line.
pub fn transition_json(t: &Transition) -> serde_json::Value {
    serde_json::json!({
        "time": bt::rfc3339(t.time_ms),
        "rule": t.rule,
        "labels": json_labels(&t.labels),
        "state": t.state.as_str(),
        "value": json_value(t.value),
    })
}

/// `vigil backtest`: prints the report and returns the exit code.
pub fn run(args: Args) -> i32 {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vigil backtest: {e:#}");
            2
        }
    }
}

fn run_inner(args: Args) -> anyhow::Result<i32> {
    use anyhow::{Context as _, bail};
    let now_ms = chrono::Utc::now().timestamp_millis();
    let from = parse_time(&args.from, now_ms).map_err(anyhow::Error::msg)?;
    let to = parse_time(&args.to, now_ms).map_err(anyhow::Error::msg)?;
    if to < from {
        bail!("--to ({}) is before --from ({})", args.to, args.from);
    }
    if args.backfill && args.data_dir.is_none() {
        bail!("--backfill writes into a data directory: it needs --data-dir");
    }
    let (rules, anomaly) = crate::anomaly::load_rule_files(&args.rule_files)
        .map_err(anyhow::Error::msg)
        .context("loading the rule files")?;
    let alerting = match &args.alerting_config {
        Some(path) => Some(
            vigil_alerting::load_config(path)
                .with_context(|| format!("loading {}", path.display()))?,
        ),
        None => None,
    };

    let engine = Arc::new(Engine::new(EngineOptions {
        // A backtest reads days of data per query; the serve limits guard
        // a shared server, not one command.
        max_samples: usize::MAX,
        timeout: Duration::from_secs(24 * 3600),
        ..EngineOptions::default()
    }));
    let (storage, pushdown): (Arc<dyn Queryable>, Option<Arc<remote::RemoteApi>>) =
        match (&args.data_dir, &args.url) {
            (Some(dir), None) => (Arc::new(source::SnapshotSource::open(dir)?), None),
            (None, Some(url)) => {
                let api = Arc::new(remote::RemoteApi::new(url)?);
                (api.clone(), Some(api))
            }
            _ => bail!("give exactly one of --data-dir DIR and --url PROMETHEUS_API"),
        };

    let mut opts = Options::new(from, to);
    opts.default_interval = args.eval_interval;
    opts.external_url = args.external_url.clone();
    opts.collect_sent = alerting.is_some();
    opts.collect_recorded = args.backfill;
    let report = bt::run(
        &rules,
        &engine,
        storage.clone(),
        pushdown.as_deref().map(|p| p as &dyn bt::RangeQuery),
        &opts,
    );
    let anomalies = crate::anomaly::backtest::run(
        &anomaly,
        &engine,
        storage.as_ref(),
        pushdown.as_deref().map(|p| p as &dyn bt::RangeQuery),
        &opts,
    );

    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::new(stdout);
    let mut failed = false;
    for e in report.errors.iter().chain(&anomalies.errors) {
        eprintln!("vigil backtest: {e}");
        failed = true;
    }
    // Transitions of both kinds of rules, in time order.
    let mut transitions: Vec<&Transition> = report
        .transitions
        .iter()
        .chain(&anomalies.transitions)
        .collect();
    transitions.sort_by_key(|t| t.time_ms);
    for t in transitions {
        writeln!(out, "{}", transition_json(t))?;
    }
    if args.scores != Scores::None {
        for p in &anomalies.points {
            if args.scores == Scores::Flagged && !p.anomaly {
                continue;
            }
            writeln!(out, "{}", p.to_json())?;
        }
    }
    if let Some(cfg) = alerting {
        let mut sent = report.sent;
        sent.extend(anomalies.sent);
        sent.sort_by_key(|(t, _)| *t);
        let silences = notify::load_silences(args.data_dir.as_deref(), args.silences.as_deref())?;
        for n in notify::simulate(cfg, silences, &sent, to, &args.external_url)? {
            writeln!(out, "{n}")?;
        }
    }
    out.flush()?;
    if args.backfill {
        let dir = args
            .data_dir
            .as_deref()
            .context("backfill needs --data-dir")?;
        // Close the read snapshot first: the writer below needs the lock
        // and a snapshot would keep SQLite's WAL from checkpointing.
        drop(storage);
        let summary = source::backfill(dir, &report.recorded)?;
        eprintln!("vigil backtest: backfill: {summary}");
    }
    eprintln!(
        "vigil backtest: {} rules, {} steps, {} range queries, {} transitions{}",
        rules.rule_count() + anomaly.rule_count(),
        report.steps,
        report.queries + anomalies.queries,
        report.transitions.len() + anomalies.transitions.len(),
        if failed { ", with errors" } else { "" }
    );
    Ok(if failed { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_prometheus_takes_them() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("-7d", now), Ok(now - 7 * 86_400_000));
        assert_eq!(parse_time("now-1h30m", now), Ok(now - 5_400_000));
        assert_eq!(parse_time("1700000000.5", now), Ok(1_700_000_000_500));
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20+01:00", now),
            Ok(1_700_000_000_000)
        );
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("-7x", now).is_err());
    }

    #[test]
    fn values_that_json_cannot_hold_are_strings() {
        assert_eq!(json_value(1.5), serde_json::json!(1.5));
        assert_eq!(json_value(f64::NAN), serde_json::json!("NaN"));
        assert_eq!(json_value(f64::INFINITY), serde_json::json!("+Inf"));
    }
}
