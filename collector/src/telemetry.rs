//! The collector's own metrics, served on `/metrics` in the Prometheus text
//! format. Each event is counted in one place, next to the log line for it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use vigil_wire::exposition::format_value;

/// Counters for the ingest and query paths.
#[derive(Default)]
pub struct Telemetry {
    pub write_requests_total: AtomicU64,
    pub import_requests_total: AtomicU64,
    /// OTLP exports received (HTTP and gRPC).
    pub otlp_requests_total: AtomicU64,
    /// Requests refused before touching the store, by reason.
    pub requests_rejected: Mutex<BTreeMap<&'static str, u64>>,
    /// Samples refused, by reason (validation here, plus the store's).
    pub samples_rejected: Mutex<BTreeMap<String, u64>>,
    pub queries_total: AtomicU64,
    pub query_errors: Mutex<BTreeMap<&'static str, u64>>,
    pub query_seconds_sum_micros: AtomicU64,
    /// Per refusal reason: when it was last logged and how many were not
    /// logged since.
    refusals_logged: Mutex<BTreeMap<String, (Instant, u64)>>,
}

/// A refusal reason is logged at most once per this interval; the next line
/// says how many were refused meanwhile.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Telemetry {
    /// Logs a refused ingest request with its sender and reason (the
    /// counter alone told an operator that something was refused, not who
    /// or why). Rate-limited per reason, so a sender retrying a bad batch
    /// cannot flood the log.
    pub fn log_refusal(&self, sender: &str, reason: &str, message: &str) {
        let now = Instant::now();
        let suppressed = {
            let mut logged = self.refusals_logged.lock();
            match logged.get_mut(reason) {
                Some((last, skipped)) if now.duration_since(*last) < REFUSAL_LOG_INTERVAL => {
                    *skipped += 1;
                    return;
                }
                Some((last, skipped)) => {
                    *last = now;
                    std::mem::take(skipped)
                }
                None => {
                    logged.insert(reason.to_string(), (now, 0));
                    0
                }
            }
        };
        tracing::warn!(
            sender,
            reason,
            suppressed,
            "ingest request refused: {message}"
        );
    }

    pub fn request_rejected(&self, reason: &'static str) {
        *self.requests_rejected.lock().entry(reason).or_insert(0) += 1;
    }

    pub fn samples_rejected(&self, reason: &str, n: u64) {
        if n > 0 {
            *self
                .samples_rejected
                .lock()
                .entry(reason.to_string())
                .or_insert(0) += n;
        }
    }

    pub fn query_error(&self, error_type: &'static str) {
        *self.query_errors.lock().entry(error_type).or_insert(0) += 1;
    }

    pub fn render(&self, out: &mut String) {
        counter(
            out,
            "vigil_write_requests_total",
            "Remote-write requests received.",
            self.write_requests_total.load(Ordering::Relaxed),
        );
        counter(
            out,
            "vigil_import_requests_total",
            "Text-exposition import requests received.",
            self.import_requests_total.load(Ordering::Relaxed),
        );
        counter(
            out,
            "vigil_otlp_requests_total",
            "OTLP metrics exports received (OTLP/HTTP and OTLP/gRPC).",
            self.otlp_requests_total.load(Ordering::Relaxed),
        );
        labelled_counter(
            out,
            "vigil_ingest_requests_rejected_total",
            "Ingest requests refused whole, by reason; nothing of them was stored.",
            "reason",
            self.requests_rejected
                .lock()
                .iter()
                .map(|(k, v)| (k.to_string(), *v)),
        );
        labelled_counter(
            out,
            "vigil_samples_rejected_total",
            "Samples refused, by reason (native_histogram and exemplar: data Vigil does not store, refused by name); the rest of their request was stored.",
            "reason",
            self.samples_rejected
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), *v)),
        );
        counter(
            out,
            "vigil_queries_total",
            "PromQL queries answered.",
            self.queries_total.load(Ordering::Relaxed),
        );
        labelled_counter(
            out,
            "vigil_query_errors_total",
            "PromQL queries that failed, by errorType.",
            "error_type",
            self.query_errors
                .lock()
                .iter()
                .map(|(k, v)| (k.to_string(), *v)),
        );
        let secs = self.query_seconds_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "# HELP vigil_query_duration_seconds_sum Total time spent evaluating queries."
        );
        let _ = writeln!(out, "# TYPE vigil_query_duration_seconds_sum counter");
        let _ = writeln!(
            out,
            "vigil_query_duration_seconds_sum {}",
            format_value(secs)
        );
    }
}

pub fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

pub fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
        format_value(v)
    );
}

pub fn labelled_counter(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (k, v) in values {
        let _ = writeln!(
            out,
            "{name}{{{label}=\"{}\"}} {v}",
            vigil_wire::exposition::escape_label_value(&k)
        );
    }
}

/// Outcomes of configuration reloads, as Prometheus's
/// `prometheus_config_last_reload_successful`.
#[derive(Default)]
pub struct ReloadCounters {
    pub successes: AtomicU64,
    pub failures: AtomicU64,
    pub last_successful: std::sync::atomic::AtomicBool,
}

impl ReloadCounters {
    pub fn success(&self) {
        self.successes.fetch_add(1, Ordering::Relaxed);
        self.last_successful.store(true, Ordering::Relaxed);
    }

    pub fn failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.last_successful.store(false, Ordering::Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        labelled_counter(
            out,
            "vigil_config_reloads_total",
            "Reloads of rule files and alerting configuration, by result.",
            "result",
            [
                (
                    "success".to_string(),
                    self.successes.load(Ordering::Relaxed),
                ),
                ("failure".to_string(), self.failures.load(Ordering::Relaxed)),
            ]
            .into_iter(),
        );
        let ok = self.failures.load(Ordering::Relaxed) == 0
            || self.last_successful.load(Ordering::Relaxed);
        gauge(
            out,
            "vigil_config_last_reload_successful",
            "Whether the last reload succeeded (1) or was rejected (0).",
            if ok { 1.0 } else { 0.0 },
        );
    }
}

/// Free and total bytes of the filesystem holding the data directory, as
/// node_exporter's `node_filesystem_avail_bytes`/`size_bytes`, so a rule
/// can predict it filling (`VigilDataDiskFillingUp`). Nothing is written
/// when the directory cannot be inspected.
pub fn render_data_dir_filesystem(out: &mut String, data_dir: &std::path::Path) {
    match rustix::fs::statvfs(data_dir) {
        Ok(st) => {
            let frsize = st.f_frsize;
            gauge(
                out,
                "vigil_data_dir_filesystem_avail_bytes",
                "Bytes available to Vigil on the filesystem of the data directory.",
                (st.f_bavail.saturating_mul(frsize)) as f64,
            );
            gauge(
                out,
                "vigil_data_dir_filesystem_size_bytes",
                "Size in bytes of the filesystem of the data directory.",
                (st.f_blocks.saturating_mul(frsize)) as f64,
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, dir = %data_dir.display(), "cannot inspect the data directory's filesystem");
        }
    }
}
