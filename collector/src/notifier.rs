//! `alerting.alertmanagers` in `vigil.yml`: hands the rule engine's alerts
//! to external Alertmanagers as Prometheus's notifier does, besides
//! Vigil's own alerting pipeline.
//!
//! The rule engine already follows Prometheus's sending rules (a firing
//! alert is re-sent every `rules.resend_delay` with `endsAt` a few
//! intervals ahead; a resolved one is sent with `endsAt` set to the
//! resolve time), so this module only transports: alerts enter a bounded
//! in-memory queue (10 000, the oldest dropped and counted when full, as
//! Prometheus's `--alertmanager.notification-queue-capacity`), and one task
//! posts batches of at most 64 to `POST <scheme>://<target><path_prefix>/api/v2/alerts`
//! of every configured Alertmanager concurrently. A failed post is counted
//! and not retried: the next resend carries the alert again, which is
//! Prometheus's behaviour too (the queue is not durable: an alert lost in a
//! crash is re-sent by the next evaluation after the restart).
//!
//! Metrics, named after Prometheus's `prometheus_notifications_*`:
//! `vigil_alertmanager_notifications_sent_total{alertmanager}`,
//! `vigil_alertmanager_notifications_errors_total{alertmanager}` (alerts in
//! failed posts), `vigil_alertmanager_notifications_latency_seconds`,
//! `vigil_alertmanager_notifications_dropped_total`,
//! `vigil_alertmanager_notifications_queue_length`,
//! `vigil_alertmanager_notifications_queue_capacity`,
//! `vigil_alertmanager_notifications_alertmanagers_discovered`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use vigil_queue::HttpClient;
use vigil_rules::{AlertSender, OutgoingAlert};
use vigil_wire::exposition::escape_label_value;

use crate::config::PromDuration;
use crate::remote::{BasicAuthConfig, HttpClientConfig, TlsClientConfig};

/// Alerts kept waiting at most (Prometheus's default queue capacity).
pub const QUEUE_CAPACITY: usize = 10_000;
/// Alerts per request at most (Prometheus's `maxBatchSize`).
pub const MAX_BATCH: usize = 64;

/// The `alertmanagers` of the `alerting` block of `vigil.yml` (Prometheus's
/// `alerting` block).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertmanagersSection {
    /// External Alertmanagers that receive every alert the rules raise,
    /// besides Vigil's own alerting pipeline. Default: none.
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

/// One `alertmanagers` entry: static targets sharing the client settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// `targets`: `host:port` of each Alertmanager.
    pub static_configs: Vec<StaticConfig>,
    /// `http` or `https`. Default `http`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// Prefix of the API path, e.g. `/alertmanager` behind a proxy.
    /// Default: none.
    #[serde(default)]
    pub path_prefix: String,
    /// Timeout of one post. Default `10s`.
    #[serde(default = "default_timeout")]
    pub timeout: PromDuration,
    /// Only `v2` (Alertmanager 0.16+; `v1` was removed in 0.27).
    #[serde(default = "default_api_version")]
    pub api_version: String,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    #[serde(default)]
    pub tls_config: TlsClientConfig,
}

/// `static_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    pub targets: Vec<String>,
}

fn default_scheme() -> String {
    "http".into()
}
fn default_timeout() -> PromDuration {
    PromDuration(Duration::from_secs(10))
}
fn default_api_version() -> String {
    "v2".into()
}

impl AlertmanagerConfig {
    fn http(&self) -> HttpClientConfig {
        HttpClientConfig {
            headers: BTreeMap::new(),
            bearer_token_file: self.bearer_token_file.clone(),
            basic_auth: self.basic_auth.clone(),
            tls_config: self.tls_config.clone(),
        }
    }

    /// The alerts endpoint of each target.
    pub fn urls(&self) -> Vec<String> {
        let prefix = self.path_prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() || prefix.starts_with('/') {
            prefix.to_string()
        } else {
            format!("/{prefix}")
        };
        self.static_configs
            .iter()
            .flat_map(|s| s.targets.iter())
            .map(|t| format!("{}://{t}{prefix}/api/v2/alerts", self.scheme))
            .collect()
    }
}

impl AlertmanagersSection {
    /// Checks what serde cannot; the reason names the entry.
    pub fn validate(&self) -> Result<(), String> {
        for (i, am) in self.alertmanagers.iter().enumerate() {
            let what = format!("alerting.alertmanagers[{i}]");
            if am.scheme != "http" && am.scheme != "https" {
                return Err(format!("{what}: scheme must be http or https"));
            }
            if am.api_version != "v2" {
                return Err(format!(
                    "{what}: api_version {:?} is not supported (only v2)",
                    am.api_version
                ));
            }
            if am.timeout.0.is_zero() {
                return Err(format!("{what}: timeout must be positive"));
            }
            let targets: Vec<&String> = am.static_configs.iter().flat_map(|s| &s.targets).collect();
            if targets.is_empty() {
                return Err(format!("{what}: static_configs lists no targets"));
            }
            for t in targets {
                if t.is_empty() || t.contains('/') || t.contains(char::is_whitespace) {
                    return Err(format!(
                        "{what}: target {t:?} must be host:port (scheme and path_prefix are separate keys)"
                    ));
                }
            }
            if am.bearer_token_file.is_some() && am.basic_auth.is_some() {
                return Err(format!(
                    "{what}: at most one of bearer_token_file and basic_auth may be set"
                ));
            }
            if am.tls_config.cert_file.is_some() != am.tls_config.key_file.is_some() {
                return Err(format!(
                    "{what}: tls_config.cert_file and key_file must be set together"
                ));
            }
        }
        Ok(())
    }
}

/// One Alertmanager and its counters.
struct Target {
    url: String,
    client: HttpClient,
    sent: AtomicU64,
    errors: AtomicU64,
    latency_micros: AtomicU64,
    posts: AtomicU64,
}

/// The queue and the Alertmanagers it feeds.
pub struct Notifier {
    queue: Mutex<VecDeque<serde_json::Value>>,
    notify: Notify,
    targets: Vec<Target>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.targets.iter().map(|t| &t.url))
            .finish()
    }
}

fn rfc3339(ms: i64) -> Option<String> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// An alert as Alertmanager's `POST /api/v2/alerts` takes it.
fn postable(a: &OutgoingAlert) -> serde_json::Value {
    let labels: BTreeMap<&str, &str> = a
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    let mut v = serde_json::json!({
        "labels": labels,
        "annotations": a.annotations,
        "generatorURL": a.generator_url,
    });
    if let Some(s) = rfc3339(a.starts_at_ms) {
        v["startsAt"] = s.into();
    }
    if let Some(e) = a.ends_at_ms.and_then(rfc3339) {
        v["endsAt"] = e.into();
    }
    v
}

impl Notifier {
    /// `None` when no Alertmanager is configured. Fails on unreadable
    /// certificate files.
    pub fn new(cfg: &AlertmanagersSection) -> Result<Option<Arc<Self>>, String> {
        let mut targets = Vec::new();
        for (i, am) in cfg.alertmanagers.iter().enumerate() {
            let client = HttpClient::new(&am.http().options(am.timeout.0))
                .map_err(|e| format!("alerting.alertmanagers[{i}]: {e}"))?;
            for url in am.urls() {
                targets.push(Target {
                    url,
                    client: client.clone(),
                    sent: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                    latency_micros: AtomicU64::new(0),
                    posts: AtomicU64::new(0),
                });
            }
        }
        if targets.is_empty() {
            return Ok(None);
        }
        for t in &targets {
            tracing::info!(alertmanager = %t.url, "alerts are also sent to this Alertmanager");
        }
        Ok(Some(Arc::new(Self {
            queue: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            targets,
            dropped: AtomicU64::new(0),
        })))
    }

    /// Queues alerts for every Alertmanager; the oldest are dropped (and
    /// counted) past the capacity.
    pub fn enqueue(&self, alerts: &[OutgoingAlert]) {
        if alerts.is_empty() {
            return;
        }
        let mut q = self.queue.lock();
        q.extend(alerts.iter().map(postable));
        let over = q.len().saturating_sub(QUEUE_CAPACITY);
        if over > 0 {
            q.drain(..over);
            drop(q);
            self.dropped.fetch_add(over as u64, Ordering::Relaxed);
            tracing::warn!(
                dropped = over,
                "Alertmanager notification queue full; oldest alerts dropped"
            );
        } else {
            drop(q);
        }
        self.notify.notify_one();
    }

    /// Posts queued alerts until `shutdown`; what is queued then is sent
    /// once more.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let batch: Vec<serde_json::Value> = {
                let mut q = self.queue.lock();
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.notify.notified() => continue,
                }
            }
            let body = match serde_json::to_vec(&batch) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "encoding alerts for Alertmanager failed");
                    continue;
                }
            };
            let n = batch.len() as u64;
            // Concurrently, so one slow Alertmanager does not delay another
            // more than its own timeout.
            let mut posts = tokio::task::JoinSet::new();
            for i in 0..self.targets.len() {
                let me = self.clone();
                let body = body.clone();
                posts.spawn(async move { me.post_to(i, body, n).await });
            }
            while posts.join_next().await.is_some() {}
            if shutdown.is_cancelled() && self.queue.lock().is_empty() {
                return;
            }
        }
    }

    async fn post_to(&self, i: usize, body: Vec<u8>, n: u64) {
        let Some(t) = self.targets.get(i) else {
            return;
        };
        let started = Instant::now();
        let result = post(t, body).await;
        t.latency_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        t.posts.fetch_add(1, Ordering::Relaxed);
        t.sent.fetch_add(n, Ordering::Relaxed);
        if let Err(e) = result {
            t.errors.fetch_add(n, Ordering::Relaxed);
            tracing::error!(alertmanager = %t.url, alerts = n, error = %e, "sending alerts to Alertmanager failed");
        }
    }

    /// The `vigil_alertmanager_notifications_*` families.
    pub fn render_metrics(&self, out: &mut String) {
        let p = "vigil_alertmanager_notifications";
        type Get = fn(&Target) -> f64;
        let per: [(&str, &str, &str, Get); 2] = [
            (
                "sent_total",
                "counter",
                "Alerts sent to the Alertmanager (in successful and failed posts).",
                |t| t.sent.load(Ordering::Relaxed) as f64,
            ),
            (
                "errors_total",
                "counter",
                "Alerts in posts to the Alertmanager that failed.",
                |t| t.errors.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, kind, help, get) in per {
            let _ = writeln!(out, "# HELP {p}_{name} {help}\n# TYPE {p}_{name} {kind}");
            for t in &self.targets {
                let _ = writeln!(
                    out,
                    "{p}_{name}{{alertmanager=\"{}\"}} {}",
                    escape_label_value(&t.url),
                    get(t)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP {p}_latency_seconds Duration of posts to the Alertmanager.\n# TYPE {p}_latency_seconds summary"
        );
        for t in &self.targets {
            let am = escape_label_value(&t.url);
            let _ = writeln!(
                out,
                "{p}_latency_seconds_sum{{alertmanager=\"{am}\"}} {}\n{p}_latency_seconds_count{{alertmanager=\"{am}\"}} {}",
                t.latency_micros.load(Ordering::Relaxed) as f64 / 1e6,
                t.posts.load(Ordering::Relaxed)
            );
        }
        let queued = self.queue.lock().len();
        for (name, kind, help, v) in [
            (
                "dropped_total",
                "counter",
                "Alerts dropped because the queue was full.",
                self.dropped.load(Ordering::Relaxed) as f64,
            ),
            (
                "queue_length",
                "gauge",
                "Alerts waiting to be sent.",
                queued as f64,
            ),
            (
                "queue_capacity",
                "gauge",
                "Alerts the queue holds at most.",
                QUEUE_CAPACITY as f64,
            ),
            (
                "alertmanagers_discovered",
                "gauge",
                "Alertmanagers alerts are sent to.",
                self.targets.len() as f64,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {p}_{name} {help}\n# TYPE {p}_{name} {kind}\n{p}_{name} {v}"
            );
        }
    }
}

async fn post(t: &Target, body: Vec<u8>) -> Result<(), String> {
    let req = t
        .client
        .request(reqwest::Method::POST, &t.url)
        .map_err(|e| e.to_string())?;
    let resp = req
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    Err(format!(
        "HTTP {}: {}",
        status.as_u16(),
        text.trim().chars().take(200).collect::<String>()
    ))
}

/// Sends the rule engine's alerts both to Vigil's own alerting pipeline and
/// to the external Alertmanagers.
pub struct FanoutSender {
    pub inner: Arc<dyn AlertSender>,
    pub notifier: Option<Arc<Notifier>>,
}

impl AlertSender for FanoutSender {
    fn send(&self, alerts: Vec<OutgoingAlert>) {
        if let Some(n) = &self.notifier {
            n.enqueue(&alerts);
        }
        self.inner.send(alerts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> AlertmanagersSection {
        serde_saphyr::from_str(yaml).expect("parses")
    }

    #[test]
    fn urls_follow_scheme_targets_and_path_prefix() {
        let s = section(
            "alertmanagers:\n  - static_configs:\n      - targets: ['a:9093', 'b:9093']\n    scheme: https\n    path_prefix: am/\n",
        );
        s.validate().expect("valid");
        assert_eq!(
            s.alertmanagers[0].urls(),
            [
                "https://a:9093/am/api/v2/alerts",
                "https://b:9093/am/api/v2/alerts"
            ]
        );
        let plain = section("alertmanagers:\n  - static_configs:\n      - targets: ['a:9093']\n");
        assert_eq!(
            plain.alertmanagers[0].urls(),
            ["http://a:9093/api/v2/alerts"]
        );
    }

    #[test]
    fn bad_entries_are_refused_with_their_place() {
        for (yaml, why) in [
            (
                "alertmanagers:\n  - static_configs:\n      - targets: ['a:1']\n    api_version: v1\n",
                "only v2",
            ),
            (
                "alertmanagers:\n  - static_configs:\n      - targets: []\n",
                "no targets",
            ),
            (
                "alertmanagers:\n  - static_configs:\n      - targets: ['http://a:1']\n",
                "host:port",
            ),
            (
                "alertmanagers:\n  - static_configs:\n      - targets: ['a:1']\n    scheme: ftp\n",
                "scheme",
            ),
        ] {
            let e = section(yaml).validate().expect_err(yaml);
            assert!(
                e.contains(why) && e.contains("alertmanagers[0]"),
                "{yaml}: {e}"
            );
        }
    }

    #[test]
    fn the_queue_drops_the_oldest_and_counts_them() {
        let s = section("alertmanagers:\n  - static_configs:\n      - targets: ['127.0.0.1:1']\n");
        let n = Notifier::new(&s).expect("builds").expect("one target");
        let alert = |i: usize| OutgoingAlert {
            labels: vigil_wire::Labels::from_pairs([("alertname", format!("A{i}"))]),
            annotations: BTreeMap::new(),
            starts_at_ms: 0,
            ends_at_ms: Some(1000),
            generator_url: String::new(),
            value: None,
        };
        let alerts: Vec<OutgoingAlert> = (0..QUEUE_CAPACITY + 5).map(alert).collect();
        n.enqueue(&alerts);
        assert_eq!(n.queue.lock().len(), QUEUE_CAPACITY);
        assert_eq!(n.dropped.load(Ordering::Relaxed), 5);
        let first = n.queue.lock().front().cloned().expect("queued");
        assert_eq!(first["labels"]["alertname"], "A5");
        assert_eq!(first["endsAt"], "1970-01-01T00:00:01.000Z");
    }
}
