//! The agent's in-memory metric model: metric families as collectors produce
//! them, and their two renderings — Prometheus text for `/metrics` and
//! remote_write time series (with the collection timestamp) for shipping.

use std::collections::BTreeMap;

use vigil_wire::exposition::{write_family_header, write_sample};
use vigil_wire::remote_write::{self, MetricMetadata, MetricType, TimeSeries, WriteRequest};
use vigil_wire::{Labels, METRIC_NAME_LABEL};

/// One series of a family: its full label set (including `__name__`, which
/// for histograms carries the `_bucket`/`_sum`/`_count` suffix) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub value: f64,
}

/// A metric family: name, help, type and series.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: MetricType,
    pub series: Vec<Series>,
}

impl Family {
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: MetricType) -> Self {
        Self {
            name: name.into(),
            help: help.into(),
            kind,
            series: Vec::new(),
        }
    }

    pub fn gauge(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricType::Gauge)
    }

    pub fn counter(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricType::Counter)
    }

    /// Adds a series named after the family.
    pub fn push<K: AsRef<str>, V: AsRef<str>>(&mut self, labels: &[(K, V)], value: f64) {
        let name = self.name.clone();
        self.push_named(&name, labels, value);
    }

    /// Adds a series with an explicit metric name (histogram parts).
    pub fn push_named<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        metric: &str,
        labels: &[(K, V)],
        value: f64,
    ) {
        let pairs = std::iter::once((METRIC_NAME_LABEL.to_string(), metric.to_string())).chain(
            labels
                .iter()
                .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string())),
        );
        self.series.push(Series {
            labels: Labels::from_pairs(pairs),
            value,
        });
    }

    /// Adds a series from a ready label set (which must hold `__name__`).
    pub fn push_labels(&mut self, labels: Labels, value: f64) {
        self.series.push(Series { labels, value });
    }

    /// A family holding a single unlabelled sample.
    pub fn single(name: &str, help: &str, kind: MetricType, value: f64) -> Self {
        let mut f = Self::new(name, help, kind);
        f.push::<&str, &str>(&[], value);
        f
    }

    /// Total number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// Adds `extra` labels to every series (existing labels win, as Prometheus
/// does with external labels).
pub fn add_labels(families: &mut [Family], extra: &BTreeMap<String, String>) {
    if extra.is_empty() {
        return;
    }
    for f in families {
        for s in &mut f.series {
            for (k, v) in extra {
                if s.labels.get(k).is_none() {
                    s.labels.set(k, v.clone());
                }
            }
        }
    }
}

/// Renders families as Prometheus text. Families of the same name coming
/// from several sources (e.g. `pg_up` of two servers) are merged under one
/// `# HELP`/`# TYPE` header; series are written without timestamps, as
/// exporters do.
pub fn render_text<'a>(families: impl IntoIterator<Item = &'a Family>) -> String {
    let mut by_name: BTreeMap<&str, Vec<&Family>> = BTreeMap::new();
    for f in families {
        by_name.entry(f.name.as_str()).or_default().push(f);
    }
    let mut out = String::with_capacity(by_name.len() * 128);
    for (name, fams) in by_name {
        let Some(first) = fams.first() else { continue };
        if fams.iter().all(|f| f.is_empty()) {
            continue;
        }
        write_family_header(&mut out, name, &first.help, first.kind);
        for f in fams {
            for s in &f.series {
                write_sample(&mut out, &s.labels, s.value, None);
            }
        }
    }
    out
}

/// Converts families to a remote_write request, every sample stamped with
/// `timestamp_ms` (the collection time). Returns the request and its sample
/// count.
pub fn to_write_request(families: &[Family], timestamp_ms: i64) -> (WriteRequest, usize) {
    let mut req = WriteRequest::default();
    let mut samples = 0;
    for f in families {
        if f.is_empty() {
            continue;
        }
        req.metadata.push(MetricMetadata {
            r#type: f.kind as i32,
            metric_family_name: f.name.clone(),
            help: f.help.clone(),
            unit: String::new(),
        });
        for s in &f.series {
            samples += 1;
            req.timeseries.push(TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|l| remote_write::Label {
                        name: l.name.clone(),
                        value: l.value.clone(),
                    })
                    .collect(),
                samples: vec![remote_write::Sample {
                    value: s.value,
                    timestamp: timestamp_ms,
                }],
                exemplars: Vec::new(),
            });
        }
    }
    (req, samples)
}

/// Adds `extra` labels to every series of `req` that lacks them, keeping
/// each label list sorted by name as remote_write requires.
pub fn add_write_labels(req: &mut WriteRequest, extra: &[(String, String)]) {
    for ts in &mut req.timeseries {
        for (name, value) in extra {
            if let Err(i) = ts.labels.binary_search_by(|l| l.name.as_str().cmp(name)) {
                ts.labels.insert(
                    i,
                    remote_write::Label {
                        name: name.clone(),
                        value: value.clone(),
                    },
                );
            }
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_series_get_the_agent_identity_unless_they_carry_their_own() {
        let own = Family::single("node_load1", "load", MetricType::Gauge, 0.5);
        let mut scraped = Family::gauge("http_requests_in_flight", "scraped");
        scraped.push(&[("job", "api"), ("instance", "10.0.0.1:8080")], 3.0);
        let (mut req, n) = to_write_request(&[own, scraped], 1_000);
        assert_eq!(n, 2);
        add_write_labels(
            &mut req,
            &[
                ("job".to_string(), "vigil-agent".to_string()),
                ("instance".to_string(), "web-1".to_string()),
            ],
        );
        let pairs = |i: usize| -> Vec<(String, String)> {
            req.timeseries[i]
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        };
        let own = pairs(0);
        assert_eq!(
            own,
            [
                ("__name__".to_string(), "node_load1".to_string()),
                ("instance".to_string(), "web-1".to_string()),
                ("job".to_string(), "vigil-agent".to_string()),
            ]
        );
        let scraped = pairs(1);
        assert!(scraped.contains(&("job".to_string(), "api".to_string())));
        assert!(scraped.contains(&("instance".to_string(), "10.0.0.1:8080".to_string())));
        assert_eq!(scraped.len(), 3);
        for ts in &req.timeseries {
            assert!(ts.labels.windows(2).all(|w| w[0].name < w[1].name));
        }
    }

    #[test]
    fn text_merges_same_family_from_sources() {
        let a = Family::single("pg_up", "up", MetricType::Gauge, 1.0);
        let mut b = Family::gauge("pg_up", "up");
        b.push(&[("server", "b")], 0.0);
        let text = render_text([&a, &b]);
        assert_eq!(text.matches("# TYPE pg_up gauge").count(), 1);
        assert!(text.contains("pg_up 1\n"));
        assert!(text.contains("pg_up{server=\"b\"} 0\n"));
        let parsed = vigil_wire::exposition::parse(&text, &Default::default()).expect("parses");
        assert_eq!(parsed.samples.len(), 2);
    }

    #[test]
    fn write_request_carries_timestamp_and_external_labels() {
        let mut f = vec![Family::single("node_load1", "load", MetricType::Gauge, 0.5)];
        add_labels(
            &mut f,
            &BTreeMap::from([("instance".to_string(), "h1".to_string())]),
        );
        let (req, n) = to_write_request(&f, 42);
        assert_eq!(n, 1);
        assert_eq!(req.timeseries[0].samples[0].timestamp, 42);
        assert!(
            req.timeseries[0]
                .labels
                .iter()
                .any(|l| l.name == "instance" && l.value == "h1")
        );
    }
}
