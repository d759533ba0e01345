//! From a discovered target to a scrape target, as Prometheus's
//! `PopulateLabels` does it: the discovered labels (the target's
//! `__address__`, its group's labels) get the job's defaults where unset
//! (`job`, `__scheme__`, `__metrics_path__`, `__scrape_interval__`,
//! `__scrape_timeout__`, `__param_<name>` from `params`), `relabel_configs`
//! run over them (a `keep`/`drop` may drop the target), the `__meta_*`
//! labels are removed, `instance` defaults to `__address__`; the URL,
//! interval and timeout are read from the `__`-labels, and every label
//! starting with `__` is left off the series.

use std::collections::BTreeMap;
use std::time::Duration;

use vigil_wire::Labels;
use vigil_wire::relabel::{Relabel, process};

use crate::config::ScrapeConfig;

/// A target that is scraped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The labels before relabeling (`discoveredLabels` in the targets API).
    pub discovered: Labels,
    /// The labels every series scraped from it carries.
    pub labels: Labels,
    /// `scheme://address/path?params`.
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
}

/// What became of a discovered target.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Active(Target),
    /// Dropped by `relabel_configs`; its discovered labels.
    Dropped(Labels),
    /// Unusable (no address, a bad interval); the reason.
    Failed(String),
}

/// The job-level settings targets start from.
#[derive(Debug, Clone)]
pub struct JobDefaults {
    pub job: String,
    pub scheme: String,
    pub metrics_path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub params: BTreeMap<String, Vec<String>>,
}

impl JobDefaults {
    /// `interval` is the job's (or the agent's) interval; the timeout is
    /// capped at it.
    pub fn new(cfg: &ScrapeConfig, interval: Duration) -> Self {
        Self {
            job: cfg.job.clone(),
            scheme: cfg.scheme.clone(),
            metrics_path: cfg.metrics_path.clone(),
            interval,
            timeout: cfg.timeout.0.min(interval),
            params: cfg.params.clone(),
        }
    }
}

/// Builds the target of `address` in a group with `group_labels`.
pub fn populate(
    d: &JobDefaults,
    address: &str,
    group_labels: &BTreeMap<String, String>,
    steps: &[Relabel],
) -> Outcome {
    // The target's own labels (its address) win over the group's.
    let mut labels = Labels::from_pairs(
        group_labels
            .iter()
            .filter(|(k, _)| k.as_str() != "__address__")
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    labels.set("__address__", address);
    for (name, value) in [
        ("job", d.job.clone()),
        ("__scrape_interval__", format_duration(d.interval)),
        ("__scrape_timeout__", format_duration(d.timeout)),
        ("__metrics_path__", d.metrics_path.clone()),
        ("__scheme__", d.scheme.clone()),
    ] {
        if labels.get(name).is_none() {
            labels.set(name, value);
        }
    }
    for (k, v) in &d.params {
        let name = format!("__param_{k}");
        if let Some(first) = v.first()
            && labels.get(&name).is_none()
        {
            labels.set(&name, first.clone());
        }
    }
    let discovered = labels.clone();
    let Some(mut labels) = process(labels, steps) else {
        return Outcome::Dropped(discovered);
    };
    let Some(address) = labels.get("__address__").map(str::to_string) else {
        return Outcome::Failed("no address".into());
    };
    if address.contains('/') {
        return Outcome::Failed(format!("{address:?} is not a valid hostname"));
    }
    let interval = labels.get("__scrape_interval__").unwrap_or("");
    let Some(interval) = parse_duration(interval) else {
        return Outcome::Failed(format!("error parsing scrape interval {interval:?}"));
    };
    if interval.is_zero() {
        return Outcome::Failed("scrape interval cannot be 0".into());
    }
    let timeout = labels.get("__scrape_timeout__").unwrap_or("");
    let Some(timeout) = parse_duration(timeout) else {
        return Outcome::Failed(format!("error parsing scrape timeout {timeout:?}"));
    };
    if timeout.is_zero() {
        return Outcome::Failed("scrape timeout cannot be 0".into());
    }
    if timeout > interval {
        return Outcome::Failed(format!(
            "scrape timeout cannot be greater than scrape interval ({:?} > {:?})",
            format_duration(timeout),
            format_duration(interval)
        ));
    }
    let meta: Vec<String> = labels
        .iter()
        .filter(|l| l.name.starts_with("__meta_"))
        .map(|l| l.name.clone())
        .collect();
    for n in meta {
        labels.remove(&n);
    }
    if labels.get("instance").is_none() {
        labels.set("instance", address.clone());
    }
    let url = match build_url(&labels, &address, &d.params) {
        Ok(u) => u,
        Err(e) => return Outcome::Failed(e),
    };
    let public = Labels::from_pairs(
        labels
            .iter()
            .filter(|l| !l.name.starts_with("__"))
            .map(|l| (l.name.clone(), l.value.clone())),
    );
    Outcome::Active(Target {
        discovered,
        labels: public,
        url,
        interval,
        timeout,
    })
}

/// The scrape URL from `__scheme__`, `__address__`, `__metrics_path__` and
/// the job's `params` overridden by `__param_<name>` labels (the first value
/// of a repeated parameter), as Prometheus's `Target.URL`.
fn build_url(
    labels: &Labels,
    address: &str,
    params: &BTreeMap<String, Vec<String>>,
) -> Result<String, String> {
    let scheme = labels.get("__scheme__").unwrap_or("http");
    if scheme != "http" && scheme != "https" {
        return Err(format!("unsupported scheme {scheme:?}"));
    }
    let path = labels.get("__metrics_path__").unwrap_or("");
    let mut url = reqwest::Url::parse(&format!("{scheme}://{address}"))
        .map_err(|e| format!("address {address:?}: {e}"))?;
    url.set_path(path);
    let mut query: BTreeMap<String, Vec<String>> = params.clone();
    for l in labels.iter() {
        if let Some(name) = l.name.strip_prefix("__param_") {
            let values = query.entry(name.to_string()).or_default();
            match values.first_mut() {
                Some(first) => *first = l.value.clone(),
                None => values.push(l.value.clone()),
            }
        }
    }
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, vs) in &query {
            for v in vs {
                pairs.append_pair(k, v);
            }
        }
    }
    Ok(url.to_string())
}

const UNITS: [(&str, u64, bool); 7] = [
    ("y", 365 * 24 * 3_600_000, true),
    ("w", 7 * 24 * 3_600_000, true),
    ("d", 24 * 3_600_000, false),
    ("h", 3_600_000, false),
    ("m", 60_000, false),
    ("s", 1_000, false),
    ("ms", 1, false),
];

/// A duration as Prometheus prints one (`15s`, `1m30s`, `500ms`, `0s`):
/// years and weeks only when exact.
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, mult, exact) in UNITS {
        if exact && ms % mult != 0 {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
            ms -= v * mult;
        }
    }
    out
}

/// Parses a Prometheus duration (`1h30m`, `15s`, `500ms`, `0`): units in
/// decreasing order, each at most once.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total: u64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // "ms" before "m": the longest unit name that fits.
        let (i, (unit, mult, _)) = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, (u, _, _))| rest.starts_with(u))
            .max_by_key(|(_, (u, _, _))| u.len())?;
        rest = &rest[unit.len()..];
        total = total.checked_add(n.checked_mul(*mult)?)?;
        next_unit = i + 1;
    }
    Some(Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> JobDefaults {
        JobDefaults {
            job: "node".into(),
            scheme: "http".into(),
            metrics_path: "/metrics".into(),
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(10),
            params: BTreeMap::new(),
        }
    }

    fn steps(yaml: &str) -> Vec<Relabel> {
        let cfgs: Vec<vigil_wire::relabel::RelabelConfig> =
            serde_saphyr::from_str(yaml).expect("yaml");
        Relabel::compile_all("relabel_configs", &cfgs).expect("valid")
    }

    fn group(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_instance_and_url() {
        let Outcome::Active(t) = populate(
            &defaults(),
            "10.0.0.1:9100",
            &group(&[("env", "prod"), ("__meta_filepath", "/x.json")]),
            &[],
        ) else {
            panic!("active")
        };
        assert_eq!(t.url, "http://10.0.0.1:9100/metrics");
        assert_eq!(
            t.labels,
            Labels::from_pairs([
                ("env", "prod"),
                ("instance", "10.0.0.1:9100"),
                ("job", "node")
            ])
        );
        assert_eq!(t.discovered.get("__meta_filepath"), Some("/x.json"));
        assert_eq!(t.discovered.get("__scrape_interval__"), Some("15s"));
        assert_eq!(t.discovered.get("__scheme__"), Some("http"));
        assert_eq!(t.interval, Duration::from_secs(15));
    }

    #[test]
    fn relabeling_rewrites_address_path_params_and_interval() {
        let mut d = defaults();
        d.params = BTreeMap::from([("module".to_string(), vec!["a".to_string(), "b".to_string()])]);
        let s = steps(
            "- source_labels: [__address__]\n  target_label: __param_target\n\
             - target_label: __address__\n  replacement: exporter:9115\n\
             - source_labels: [__meta_filepath]\n  regex: '.*/(.*)\\.json'\n  target_label: file\n\
             - target_label: __metrics_path__\n  replacement: /probe\n\
             - target_label: __scrape_interval__\n  replacement: 1m30s\n\
             - source_labels: [__param_target]\n  target_label: instance\n",
        );
        let Outcome::Active(t) = populate(
            &d,
            "example.org:443",
            &group(&[("__meta_filepath", "/etc/t/web.json")]),
            &s,
        ) else {
            panic!("active")
        };
        assert_eq!(
            t.url,
            "http://exporter:9115/probe?module=a&module=b&target=example.org%3A443"
        );
        assert_eq!(t.interval, Duration::from_secs(90));
        assert_eq!(
            t.labels,
            Labels::from_pairs([
                ("file", "web"),
                ("instance", "example.org:443"),
                ("job", "node")
            ])
        );
    }

    #[test]
    fn dropped_and_failed_targets() {
        let s = steps("- source_labels: [env]\n  regex: dev\n  action: drop\n");
        assert!(matches!(
            populate(&defaults(), "a:1", &group(&[("env", "dev")]), &s),
            Outcome::Dropped(l) if l.get("env") == Some("dev") && l.get("__address__") == Some("a:1")
        ));
        assert!(matches!(
            populate(&defaults(), "a:1", &group(&[("env", "prod")]), &s),
            Outcome::Active(_)
        ));
        let s = steps("- target_label: __scrape_timeout__\n  replacement: 1m\n");
        assert!(matches!(
            populate(&defaults(), "a:1", &group(&[]), &s),
            Outcome::Failed(e) if e.contains("greater than scrape interval")
        ));
        assert!(matches!(
            populate(&defaults(), "a/b:1", &group(&[]), &[]),
            Outcome::Failed(e) if e.contains("not a valid hostname")
        ));
        let s = steps("- regex: __address__\n  action: labeldrop\n");
        assert!(matches!(
            populate(&defaults(), "a:1", &group(&[]), &s),
            Outcome::Failed(e) if e == "no address"
        ));
    }

    #[test]
    fn durations_print_and_parse_as_prometheus() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(15), "15s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(86400 * 7), "1w"),
            (Duration::from_secs(86400 * 8), "8d"),
            (Duration::from_millis(61_001), "1m1s1ms"),
        ] {
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(s), Some(d), "{s}");
        }
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "s", "1", "1x", "15s1m", "1m1m", "-1s", "1.5s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
