//! HTTP(S) probes of the platform's endpoints under blackbox_exporter's
//! metric names, so its dashboards and rules work unchanged: one collector
//! per target URL, producing `probe_success`, `probe_duration_seconds`,
//! `probe_http_status_code`, `probe_http_content_length`,
//! `probe_http_redirects`, `probe_http_ssl`, `probe_http_version`,
//! `probe_failed_due_to_regex` and, over TLS,
//! `probe_ssl_earliest_cert_expiry`, each labelled with the probe's `job`
//! and the URL as `instance` (what a Prometheus scrape of blackbox_exporter
//! with the usual relabelling gives).
//!
//! A probe that cannot connect, times out, fails TLS verification or gets
//! an unexpected status reports `probe_success 0` (and logs why when the
//! state changes), never an absent series.
//!
//! The certificate expiry is the leaf certificate's `notAfter`, the one
//! the TLS session exposes; blackbox_exporter takes the earliest over the
//! verified chain, which is the leaf for every publicly issued certificate.

pub mod x509;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::Collector;
use crate::config::HumanDuration;
use crate::family::Family;

/// Largest response body read to match `fail_if_body_not_matches_regexp`.
const MAX_BODY: usize = 4 << 20;

/// A group of HTTP(S) endpoints probed alike (blackbox_exporter's `http`
/// prober module, plus the targets).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// The `job` label. Default `blackbox`.
    #[serde(default = "default_job")]
    pub job: String,
    /// Full URLs (`https://api.internal/healthz`); each becomes `instance`.
    pub targets: Vec<String>,
    /// Probe interval; defaults to the global `interval`.
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    /// Time allowed for the whole probe. Default `10s` (capped at the
    /// interval).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// HTTP method. Default `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Status codes that count as success; empty means any 2xx (blackbox's
    /// default).
    #[serde(default)]
    pub valid_status_codes: Vec<u16>,
    /// Do not follow redirects (default: follow up to 10, as blackbox).
    #[serde(default)]
    pub no_follow_redirects: bool,
    /// Fail unless the final response came over TLS.
    #[serde(default)]
    pub fail_if_not_ssl: bool,
    /// Fail unless the body matches every one of these regular expressions.
    #[serde(default)]
    pub fail_if_body_not_matches_regexp: Vec<String>,
    /// TLS settings as Prometheus spells them.
    #[serde(default)]
    pub tls_config: Option<ProbeTlsConfig>,
}

/// `tls_config` of a probe.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeTlsConfig {
    /// The only CA trusted for the endpoint (default: the system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name the certificate must carry, instead of the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Accept any certificate (the expiry is still reported).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn default_job() -> String {
    "blackbox".into()
}
fn default_timeout() -> HumanDuration {
    Duration::from_secs(10).into()
}
fn default_method() -> String {
    "GET".into()
}

impl ProbeConfig {
    /// What serde cannot check: URLs, method, status codes, regexes.
    pub fn validate(&self, at: &str) -> Result<(), String> {
        if self.job.is_empty() {
            return Err(format!("{at}: job must not be empty"));
        }
        if self.targets.is_empty() {
            return Err(format!("{at}: targets is empty"));
        }
        for t in &self.targets {
            let url = reqwest::Url::parse(t).map_err(|e| format!("{at}: target {t:?}: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("{at}: target {t:?}: scheme must be http or https"));
            }
        }
        reqwest::Method::from_bytes(self.method.as_bytes())
            .map_err(|_| format!("{at}: method {:?} is not an HTTP method", self.method))?;
        for code in &self.valid_status_codes {
            if !(100..=599).contains(code) {
                return Err(format!(
                    "{at}: valid_status_codes: {code} is not an HTTP status"
                ));
            }
        }
        for re in &self.fail_if_body_not_matches_regexp {
            regex::Regex::new(re)
                .map_err(|e| format!("{at}: fail_if_body_not_matches_regexp {re:?}: {e}"))?;
        }
        if self.timeout.0.is_zero() {
            return Err(format!("{at}: timeout must be greater than zero"));
        }
        Ok(())
    }
}

/// The collector of one probe target.
pub struct ProbeCollector {
    client: reqwest::Client,
    method: reqwest::Method,
    url: String,
    job: String,
    headers: Vec<(String, String)>,
    valid_status_codes: Vec<u16>,
    fail_if_not_ssl: bool,
    body_regexes: Vec<regex::Regex>,
    redirect_count: Arc<AtomicU32>,
    was_ok: Option<bool>,
}

/// What one probe observed.
#[derive(Debug, Default)]
struct Outcome {
    success: bool,
    duration: f64,
    status: Option<u16>,
    content_length: Option<u64>,
    redirects: u32,
    ssl: bool,
    http_version: Option<f64>,
    cert_expiry: Option<i64>,
    failed_due_to_regex: Option<bool>,
    error: Option<String>,
}

impl ProbeCollector {
    pub fn new(cfg: &ProbeConfig, target: &str, interval: Duration) -> Result<Self, String> {
        let timeout = cfg.timeout.0.min(interval);
        // Probes of one target run one at a time, so one counter per
        // collector holds the redirects of the current probe.
        let redirect_count = Arc::new(AtomicU32::new(0));
        let counter = redirect_count.clone();
        let follow = !cfg.no_follow_redirects;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            let hops = attempt.previous().len();
            if !follow {
                return attempt.stop();
            }
            counter.store(u32::try_from(hops).unwrap_or(u32::MAX), Ordering::Relaxed);
            if hops > 10 {
                attempt.error("stopped after 10 redirects")
            } else {
                attempt.follow()
            }
        });
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(redirects)
            .tls_info(true)
            .user_agent(concat!("vigil-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = &cfg.tls_config {
            let tls = vigil_tls::client_config(&vigil_tls::ClientTls {
                ca_file: t.ca_file.clone(),
                cert_file: None,
                key_file: None,
                server_name: t.server_name.clone(),
                insecure_skip_verify: t.insecure_skip_verify,
            })
            .map_err(|e| format!("probe {target}: tls_config: {e}"))?;
            builder = builder.tls_backend_preconfigured(tls);
        }
        let client = builder
            .build()
            .map_err(|e| format!("probe {target}: {e}"))?;
        let method = reqwest::Method::from_bytes(cfg.method.as_bytes())
            .map_err(|_| format!("probe {target}: invalid method {:?}", cfg.method))?;
        let body_regexes = cfg
            .fail_if_body_not_matches_regexp
            .iter()
            .map(|r| regex::Regex::new(r).map_err(|e| format!("probe {target}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            client,
            method,
            url: target.to_string(),
            job: cfg.job.clone(),
            headers: cfg
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            valid_status_codes: cfg.valid_status_codes.clone(),
            fail_if_not_ssl: cfg.fail_if_not_ssl,
            body_regexes,
            redirect_count,
            was_ok: None,
        })
    }

    async fn probe(&self) -> Outcome {
        let start = Instant::now();
        let mut out = Outcome::default();
        self.redirect_count.store(0, Ordering::Relaxed);
        let mut req = self.client.request(self.method.clone(), &self.url);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let result = req.send().await;
        match result {
            Err(e) => out.error = Some(error_chain(&e)),
            Ok(resp) => {
                let status = resp.status().as_u16();
                out.status = Some(status);
                out.content_length = resp.content_length();
                out.ssl = resp.url().scheme() == "https";
                out.redirects = self.redirect_count.load(Ordering::Relaxed);
                out.http_version = Some(match resp.version() {
                    reqwest::Version::HTTP_09 => 0.9,
                    reqwest::Version::HTTP_10 => 1.0,
                    reqwest::Version::HTTP_2 => 2.0,
                    reqwest::Version::HTTP_3 => 3.0,
                    _ => 1.1,
                });
                if let Some(info) = resp.extensions().get::<reqwest::tls::TlsInfo>()
                    && let Some(der) = info.peer_certificate()
                {
                    match x509::not_after(der) {
                        Ok(t) => out.cert_expiry = Some(t),
                        Err(e) => {
                            tracing::warn!(target = %self.url, error = %e, "could not read the server certificate's expiry")
                        }
                    }
                }
                let status_ok = if self.valid_status_codes.is_empty() {
                    (200..300).contains(&status)
                } else {
                    self.valid_status_codes.contains(&status)
                };
                let mut ok = status_ok;
                if !status_ok {
                    out.error = Some(format!("HTTP status {status} is not accepted"));
                }
                if self.fail_if_not_ssl && !out.ssl {
                    ok = false;
                    out.error = Some("the final response did not come over TLS".into());
                }
                if !self.body_regexes.is_empty() {
                    let body = read_body(resp).await;
                    let matched = match &body {
                        Ok(text) => self.body_regexes.iter().all(|r| r.is_match(text)),
                        Err(_) => false,
                    };
                    out.failed_due_to_regex = Some(!matched);
                    if let Err(e) = body {
                        ok = false;
                        out.error = Some(e);
                    } else if !matched {
                        ok = false;
                        out.error =
                            Some("the body does not match fail_if_body_not_matches_regexp".into());
                    }
                }
                out.success = ok;
            }
        }
        out.duration = start.elapsed().as_secs_f64();
        out
    }

    fn families(&self, o: &Outcome) -> Vec<Family> {
        let labels = [("job", self.job.as_str()), ("instance", self.url.as_str())];
        let gauge = |name: &str, help: &str, value: f64| {
            let mut f = Family::gauge(name, help);
            f.push(&labels, value);
            f
        };
        let mut fams = vec![
            gauge(
                "probe_success",
                "Displays whether or not the probe was a success",
                f64::from(u8::from(o.success)),
            ),
            gauge(
                "probe_duration_seconds",
                "Returns how long the probe took to complete in seconds",
                o.duration,
            ),
            gauge(
                "probe_http_status_code",
                "Response HTTP status code",
                o.status.map_or(0.0, f64::from),
            ),
            gauge(
                "probe_http_content_length",
                "Length of http content response",
                o.content_length.map_or(-1.0, |l| l as f64),
            ),
            gauge(
                "probe_http_redirects",
                "The number of redirects",
                f64::from(o.redirects),
            ),
            gauge(
                "probe_http_ssl",
                "Indicates if SSL was used for the final redirect",
                f64::from(u8::from(o.ssl)),
            ),
            gauge(
                "probe_http_version",
                "Returns the version of HTTP of the probe response",
                o.http_version.unwrap_or(0.0),
            ),
        ];
        if let Some(failed) = o.failed_due_to_regex {
            fams.push(gauge(
                "probe_failed_due_to_regex",
                "Indicates if probe failed due to regex",
                f64::from(u8::from(failed)),
            ));
        }
        if let Some(expiry) = o.cert_expiry {
            fams.push(gauge(
                "probe_ssl_earliest_cert_expiry",
                "Returns last SSL chain expiry in unixtime",
                expiry as f64,
            ));
        }
        fams
    }
}

async fn read_body(resp: reqwest::Response) -> Result<String, String> {
    if resp.content_length().is_some_and(|l| l as usize > MAX_BODY) {
        return Err("body larger than 4 MiB".into());
    }
    let bytes = resp.bytes().await.map_err(|e| error_chain(&e))?;
    if bytes.len() > MAX_BODY {
        return Err("body larger than 4 MiB".into());
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// reqwest's top-level message ("error sending request") hides the cause
/// (refused, timed out, certificate unknown); the log names it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

impl Collector for ProbeCollector {
    fn name(&self) -> String {
        format!("probe/{}", self.url)
    }

    async fn collect(&mut self) -> Vec<Family> {
        let outcome = self.probe().await;
        if self.was_ok != Some(outcome.success) {
            match (&outcome.error, outcome.success) {
                (_, true) => tracing::info!(target = %self.url, job = %self.job, "probe succeeds"),
                (Some(e), false) => {
                    tracing::warn!(target = %self.url, job = %self.job, error = %e, "probe fails")
                }
                (None, false) => tracing::warn!(target = %self.url, job = %self.job, "probe fails"),
            }
            self.was_ok = Some(outcome.success);
        }
        self.families(&outcome)
    }
}
