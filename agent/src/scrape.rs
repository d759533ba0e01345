//! Scraping the platform's own Prometheus endpoints: one collector per
//! target, producing the target's series with `job` and `instance` labels
//! plus Prometheus's synthetic `up`, `scrape_duration_seconds` and
//! `scrape_samples_scraped`.
//!
//! As Prometheus does with `honor_labels: false`, a scraped series that
//! already carries `job` or `instance` keeps them as `exported_job` /
//! `exported_instance`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vigil_wire::exposition::{self, Exposition};
use vigil_wire::labels::LabelLimits;
use vigil_wire::remote_write::MetricType;

use crate::Collector;
use crate::config::ScrapeConfig;
use crate::family::Family;

/// Largest response body accepted from a target.
const MAX_BODY: usize = 32 << 20;

/// The collector of one target.
pub struct ScrapeCollector {
    client: reqwest::Client,
    url: String,
    job: String,
    instance: String,
    bearer_token_file: Option<std::path::PathBuf>,
    was_up: Option<bool>,
}

impl ScrapeCollector {
    pub fn new(
        cfg: &ScrapeConfig,
        target: &str,
        interval: Duration,
    ) -> Result<Self, reqwest::Error> {
        let timeout = cfg.timeout.0.min(interval);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("vigil-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            url: format!("{}://{}{}", cfg.scheme, target, cfg.metrics_path),
            job: cfg.job.clone(),
            instance: target.to_string(),
            bearer_token_file: cfg.bearer_token_file.clone(),
            was_up: None,
        })
    }

    async fn fetch(&self) -> Result<Exposition, String> {
        let mut req = self.client.get(&self.url).header(
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

/// Groups parsed samples into families, relabelled with `job`/`instance`.
pub fn to_families(exp: &Exposition, job: &str, instance: &str) -> Vec<Family> {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    for s in &exp.samples {
        let name = s.labels.metric_name().unwrap_or("");
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
        let mut labels = s.labels.clone();
        for (l, v) in [("job", job), ("instance", instance)] {
            if let Some(existing) = labels.get(l).map(str::to_string) {
                labels.set(&format!("exported_{l}"), existing);
            }
            labels.set(l, v);
        }
        fam.push_labels(labels, s.value);
    }
    fams.into_values().collect()
}

impl Collector for ScrapeCollector {
    fn name(&self) -> String {
        format!("scrape/{}/{}", self.job, self.instance)
    }

    async fn collect(&mut self) -> Vec<Family> {
        let start = Instant::now();
        let result = self.fetch().await;
        let took = start.elapsed().as_secs_f64();
        let (mut out, up, n) = match result {
            Ok(exp) => {
                let n = exp.samples.len();
                (to_families(&exp, &self.job, &self.instance), true, n)
            }
            Err(e) => {
                if self.was_up != Some(false) {
                    tracing::warn!(url = %self.url, error = %e, "scrape failed; up=0");
                }
                (Vec::new(), false, 0)
            }
        };
        if up && self.was_up == Some(false) {
            tracing::info!(url = %self.url, "scrape target reachable again");
        }
        self.was_up = Some(up);
        let labels = [
            ("instance", self.instance.as_str()),
            ("job", self.job.as_str()),
        ];
        let mut f = Family::gauge("up", "Whether the target was scraped successfully.");
        f.push(&labels, if up { 1.0 } else { 0.0 });
        out.push(f);
        let mut f = Family::gauge("scrape_duration_seconds", "Duration of the scrape.");
        f.push(&labels, took);
        out.push(f);
        let mut f = Family::gauge(
            "scrape_samples_scraped",
            "Number of samples the target exposed.",
        );
        f.push(&labels, n as f64);
        out.push(f);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_group_histograms_and_relabel() {
        let text = "# HELP req_seconds Latency.\n# TYPE req_seconds histogram\nreq_seconds_bucket{le=\"1\"} 3\nreq_seconds_bucket{le=\"+Inf\"} 4\nreq_seconds_sum 2.5\nreq_seconds_count 4\n# TYPE hits_total counter\nhits_total{job=\"inner\"} 7\n";
        let exp = exposition::parse(text, &LabelLimits::default()).expect("parses");
        let fams = to_families(&exp, "api", "127.0.0.1:8080");
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
}
