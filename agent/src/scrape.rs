//! Scraping Prometheus endpoints: one scrape pool per `scrape:` job
//! ([`pool`]) turns discovered targets ([`crate::discovery`]) into scrape
//! targets ([`target`]) and runs one [`ScrapeCollector`] per target,
//! producing the target's series with the target's labels plus
//! Prometheus's synthetic `up`, `scrape_duration_seconds`,
//! `scrape_samples_scraped` and `scrape_samples_post_metric_relabeling`.
//!
//! As Prometheus does with `honor_labels: false`, a scraped series that
//! already carries one of the target's labels (`job`, `instance`, a group
//! label) keeps its value as `exported_<name>`. `metric_relabel_configs`
//! then run on every scraped series (not on the synthetic ones); a series
//! they drop, or leave without a name, is not kept.

pub mod pool;
pub mod target;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use vigil_wire::Labels;
use vigil_wire::exposition::{self, Exposition};
use vigil_wire::labels::LabelLimits;
use vigil_wire::relabel::Relabel;
use vigil_wire::remote_write::MetricType;

use crate::Collector;
use crate::family::Family;
pub use pool::{ScrapePool, Targets};
pub use target::Target;

/// Largest response body accepted from a target.
const MAX_BODY: usize = 32 << 20;

/// The last scrape of a target, for the targets API.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// `None` until the first scrape ends.
    pub up: Option<bool>,
    pub last_scrape: Option<SystemTime>,
    pub last_duration: Duration,
    pub last_error: String,
}

/// The collector of one target.
pub struct ScrapeCollector {
    client: reqwest::Client,
    name: String,
    target: Arc<Target>,
    bearer_token_file: Option<std::path::PathBuf>,
    metric_relabel: Arc<Vec<Relabel>>,
    health: Arc<Mutex<Health>>,
    was_up: Option<bool>,
}

impl ScrapeCollector {
    /// `name` identifies the collector in the agent's self-metrics
    /// (`scrape/<job>/<instance>`).
    pub fn new(
        name: String,
        client: reqwest::Client,
        target: Arc<Target>,
        bearer_token_file: Option<std::path::PathBuf>,
        metric_relabel: Arc<Vec<Relabel>>,
        health: Arc<Mutex<Health>>,
    ) -> Self {
        Self {
            client,
            name,
            target,
            bearer_token_file,
            metric_relabel,
            health,
            was_up: None,
        }
    }

    async fn fetch(&self) -> Result<Exposition, String> {
        let mut req = self
            .client
            .get(&self.target.url)
            .timeout(self.target.timeout)
            .header(
                reqwest::header::ACCEPT,
                "text/plain;version=0.0.4;q=1,*/*;q=0.1",
            );
        if let Some(f) = &self.bearer_token_file {
            // Re-read every time so a rotated token is picked up.
            let token = std::fs::read_to_string(f)
                .map_err(|e| format!("bearer_token_file {}: {e}", f.display()))?;
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .map_err(|_| "bearer token is not a valid header value".to_string())?;
            value.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, value);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        if resp.content_length().is_some_and(|l| l as usize > MAX_BODY) {
            return Err("response too large".into());
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_BODY {
            return Err("response too large".into());
        }
        let text = std::str::from_utf8(&body).map_err(|_| "response is not UTF-8".to_string())?;
        exposition::parse(text, &LabelLimits::default()).map_err(|e| format!("parse error: {e}"))
    }
}

/// The family a sample belongs to: its own name if declared, else the name
/// without a histogram/summary/counter suffix if that is declared.
fn family_of<'a>(name: &'a str, exp: &Exposition) -> &'a str {
    if exp.metadata.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count", "_total", "_created", "_info"] {
        if let Some(base) = name.strip_suffix(suffix)
            && exp.metadata.contains_key(base)
        {
            return base;
        }
    }
    name
}

/// Attaches the target's labels to a scraped series; a label the series
/// already has is kept as `exported_<name>` (`exported_exported_<name>` if
/// that is taken too), as Prometheus does with `honor_labels: false`.
fn attach(mut labels: Labels, target: &Labels) -> Labels {
    let mut conflicts = Vec::new();
    for l in target.iter() {
        if let Some(existing) = labels.get(&l.name) {
            conflicts.push((l.name.clone(), existing.to_string()));
        }
        labels.set(&l.name, l.value.clone());
    }
    for (name, value) in conflicts {
        let mut exported = format!("exported_{name}");
        while labels.get(&exported).is_some() {
            exported = format!("exported_{exported}");
        }
        labels.set(&exported, value);
    }
    labels
}

/// Groups parsed samples into families, with the target's labels attached
/// and `metric_relabel_configs` applied. Returns the families and the number
/// of samples kept.
pub fn to_families(exp: &Exposition, target: &Labels, steps: &[Relabel]) -> (Vec<Family>, usize) {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    let mut kept = 0;
    for s in &exp.samples {
        let labels = attach(s.labels.clone(), target);
        let Some(labels) = vigil_wire::relabel::process(labels, steps) else {
            continue;
        };
        // Relabeling may rename a series: it joins the family of its new name.
        let Some(name) = labels.metric_name() else {
            continue;
        };
        let fam_name = family_of(name, exp);
        let fam = fams.entry(fam_name.to_string()).or_insert_with(|| {
            let md = exp.metadata.get(fam_name);
            Family::new(
                fam_name,
                md.and_then(|m| m.help.clone()).unwrap_or_default(),
                md.and_then(|m| m.metric_type)
                    .unwrap_or(MetricType::Unknown),
            )
        });
        fam.push_labels(labels, s.value);
        kept += 1;
    }
    (fams.into_values().collect(), kept)
}

impl Collector for ScrapeCollector {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn collect(&mut self) -> Vec<Family> {
        let start = Instant::now();
        let result = self.fetch().await;
        let took = start.elapsed();
        let (mut out, error, scraped, kept) = match result {
            Ok(exp) => {
                let n = exp.samples.len();
                let (fams, kept) = to_families(&exp, &self.target.labels, &self.metric_relabel);
                (fams, None, n, kept)
            }
            Err(e) => {
                if self.was_up != Some(false) {
                    tracing::warn!(url = %self.target.url, error = %e, "scrape failed; up=0");
                }
                (Vec::new(), Some(e), 0, 0)
            }
        };
        let up = error.is_none();
        if up && self.was_up == Some(false) {
            tracing::info!(url = %self.target.url, "scrape target reachable again");
        }
        self.was_up = Some(up);
        *self.health.lock() = Health {
            up: Some(up),
            last_scrape: Some(SystemTime::now()),
            last_duration: took,
            last_error: error.unwrap_or_default(),
        };
        let labels: Vec<(&str, &str)> = self
            .target
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        for (name, help, value) in [
            (
                "up",
                "Whether the target was scraped successfully.",
                if up { 1.0 } else { 0.0 },
            ),
            (
                "scrape_duration_seconds",
                "Duration of the scrape.",
                took.as_secs_f64(),
            ),
            (
                "scrape_samples_scraped",
                "Number of samples the target exposed.",
                scraped as f64,
            ),
            (
                "scrape_samples_post_metric_relabeling",
                "Number of samples kept after metric_relabel_configs.",
                kept as f64,
            ),
        ] {
            let mut f = Family::gauge(name, help);
            f.push(&labels, value);
            out.push(f);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(yaml: &str) -> Vec<Relabel> {
        let cfgs: Vec<vigil_wire::relabel::RelabelConfig> =
            serde_saphyr::from_str(yaml).expect("yaml");
        Relabel::compile_all("metric_relabel_configs", &cfgs).expect("valid")
    }

    #[test]
    fn families_group_histograms_and_relabel() {
        let text = "# HELP req_seconds Latency.\n# TYPE req_seconds histogram\nreq_seconds_bucket{le=\"1\"} 3\nreq_seconds_bucket{le=\"+Inf\"} 4\nreq_seconds_sum 2.5\nreq_seconds_count 4\n# TYPE hits_total counter\nhits_total{job=\"inner\"} 7\n";
        let exp = exposition::parse(text, &LabelLimits::default()).expect("parses");
        let target = Labels::from_pairs([("job", "api"), ("instance", "127.0.0.1:8080")]);
        let (fams, kept) = to_families(&exp, &target, &[]);
        assert_eq!(kept, 5);
        let hist = fams
            .iter()
            .find(|f| f.name == "req_seconds")
            .expect("histogram family");
        assert_eq!(hist.kind, MetricType::Histogram);
        assert_eq!(hist.series.len(), 4);
        let hits = fams
            .iter()
            .find(|f| f.name == "hits_total")
            .expect("counter");
        assert_eq!(hits.series[0].labels.get("job"), Some("api"));
        assert_eq!(hits.series[0].labels.get("exported_job"), Some("inner"));
        assert_eq!(
            hits.series[0].labels.get("instance"),
            Some("127.0.0.1:8080")
        );
    }

    #[test]
    fn conflicting_labels_are_exported_once_more_each_time() {
        let l = attach(
            Labels::from_pairs([
                ("__name__", "x"),
                ("env", "inner"),
                ("exported_env", "older"),
            ]),
            &Labels::from_pairs([("env", "prod")]),
        );
        assert_eq!(l.get("env"), Some("prod"));
        assert_eq!(l.get("exported_exported_env"), Some("inner"));
        assert_eq!(l.get("exported_env"), Some("older"));
    }

    #[test]
    fn metric_relabel_configs_drop_and_rename_series() {
        let text = "# TYPE go_goroutines gauge\ngo_goroutines 9\n# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\",path=\"/a\"} 3\nhttp_requests_total{code=\"500\",path=\"/a\"} 1\n";
        let exp = exposition::parse(text, &LabelLimits::default()).expect("parses");
        let s = steps(
            "- source_labels: [__name__]\n  regex: go_.*\n  action: drop\n\
             - regex: path\n  action: labeldrop\n\
             - source_labels: [code]\n  regex: '5..'\n  target_label: class\n  replacement: error\n",
        );
        let (fams, kept) = to_families(&exp, &Labels::from_pairs([("job", "api")]), &s);
        assert_eq!(kept, 2);
        assert_eq!(fams.len(), 1);
        let series = &fams[0].series;
        assert!(series.iter().all(|s| s.labels.get("path").is_none()));
        assert_eq!(
            series
                .iter()
                .filter(|s| s.labels.get("class") == Some("error"))
                .count(),
            1
        );
    }
}
