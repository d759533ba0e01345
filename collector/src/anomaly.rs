//! Anomaly rules: Vigil's extension to rule files.
//!
//! They live in files of their own, so every other rule file stays loadable
//! by Prometheus. The format mirrors a Prometheus rule file, with `anomaly:`
//! in place of `alert:` and a `model:` block holding the detector settings
//! ([`vigil_models::DetectorConfig`]):
//!
//! ```yaml
//! groups:
//!   - name: anomalies
//!     interval: 1m
//!     rules:
//!       - anomaly: CPUUsageAnomaly
//!         expr: 1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))
//!         training_window: 7d
//!         for: 5m
//!         model:
//!           n_estimators: 100
//!           contamination: 0.1
//!         labels:
//!           team: sre
//!         annotations:
//!           summary: "Unusual CPU usage on {{ $labels.instance }}"
//! ```
//!
//! [`load_rule_files`] splits the configured rule files by kind; the
//! [`AnomalyManager`] runs the anomaly rules.
//!
//! A rule's model takes [`DetectorConfig`]'s defaults except two, so a rule
//! scores within minutes of a fresh start rather than after 100 intervals:
//! `min_points` is [`RULE_MIN_POINTS`] and `retrain_every`
//! [`RULE_RETRAIN_EVERY`] unless the rule sets them. A detector is warmed on
//! the stored history of its expression first, so these matter only where
//! that history is short; its own gate (no anomaly before `min_points`
//! scores exist to judge against) still holds back alerts for another
//! `min_points` intervals, and the frequent retraining replaces a first
//! model trained on few points while the series' pattern emerges.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use vigil_models::DetectorConfig;

pub mod backtest;
mod input;
mod manager;
mod persist;
mod state;

pub use manager::{AnomalyManager, AnomalyOptions, AnomalyRuleSet};

/// One anomaly rule file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyRuleFile {
    pub groups: Vec<AnomalyGroup>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyGroup {
    pub name: String,
    /// Evaluation interval (Prometheus duration notation); defaults to the
    /// collector's rule evaluation interval.
    #[serde(default)]
    pub interval: Option<String>,
    pub rules: Vec<AnomalyRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyRule {
    /// The alert name.
    pub anomaly: String,
    /// PromQL whose every output series is watched by its own detector.
    pub expr: String,
    /// How much stored history to train on at start-up (default 7d).
    #[serde(default)]
    pub training_window: Option<String>,
    /// How long a series must stay anomalous before the alert fires.
    #[serde(default, rename = "for")]
    pub for_duration: Option<String>,
    #[serde(default = "rule_model_default", deserialize_with = "rule_model")]
    pub model: DetectorConfig,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `min_points` of a rule that sets none: at a 1-minute interval with no
/// stored history, the first score comes 11 minutes after the start.
pub const RULE_MIN_POINTS: usize = 10;
/// `retrain_every` of a rule that sets none: a first model trained on
/// [`RULE_MIN_POINTS`] points is replaced within half an hour.
pub const RULE_RETRAIN_EVERY: usize = 30;

fn rule_model_default() -> DetectorConfig {
    DetectorConfig {
        min_points: RULE_MIN_POINTS,
        retrain_every: RULE_RETRAIN_EVERY,
        ..DetectorConfig::default()
    }
}

/// A rule's `model:` block with the rule defaults for what it leaves out
/// (see the module docs).
fn rule_model<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DetectorConfig, D::Error> {
    use serde::de::Error as _;
    let mut map: serde_json::Map<String, serde_json::Value> = Deserialize::deserialize(d)?;
    let window = map
        .get("window")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(DetectorConfig::default().window as u64);
    map.entry("min_points")
        .or_insert_with(|| (RULE_MIN_POINTS as u64).min(window).into());
    map.entry("retrain_every")
        .or_insert_with(|| RULE_RETRAIN_EVERY.into());
    serde_json::from_value(serde_json::Value::Object(map)).map_err(D::Error::custom)
}

/// True when a rule file's text holds anomaly rules rather than Prometheus
/// rules, so each kind goes to its own loader.
pub fn is_anomaly_rule_text(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim_start().trim_start_matches('-').trim_start();
        t.starts_with("anomaly:")
    })
}

/// Parses and validates an anomaly rule file.
pub fn parse_anomaly_rules(file: &str, text: &str) -> Result<AnomalyRuleFile, String> {
    let parsed: AnomalyRuleFile =
        serde_saphyr::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    for group in &parsed.groups {
        if let Some(i) = &group.interval {
            crate::config::parse_duration(i)
                .map_err(|e| format!("{file}: group {:?}: interval: {e}", group.name))?;
        }
        for rule in &group.rules {
            let at = |what: &str, e: &dyn std::fmt::Display| {
                format!(
                    "{file}: group {:?}, anomaly {:?}: {what}: {e}",
                    group.name, rule.anomaly
                )
            };
            if !vigil_wire::labels::is_valid_metric_name(&rule.anomaly) {
                return Err(at("anomaly", &"invalid alert name"));
            }
            vigil_promql::parse(&rule.expr).map_err(|e| at("expr", &e.message))?;
            for d in [&rule.training_window, &rule.for_duration]
                .into_iter()
                .flatten()
            {
                crate::config::parse_duration(d).map_err(|e| at("duration", &e))?;
            }
            rule.model.validate().map_err(|e| at("model", &e))?;
            let template = vigil_rules::template::template_name(&rule.anomaly);
            for (key, text) in rule.labels.iter().chain(&rule.annotations) {
                vigil_rules::template::parse_rule_template(&template, text)
                    .map_err(|e| at(&format!("template {key:?}"), &e))?;
            }
            for name in rule.labels.keys() {
                if !vigil_wire::labels::is_valid_label_name(name) {
                    return Err(at("labels", &format!("invalid label name {name:?}")));
                }
            }
        }
    }
    Ok(parsed)
}

/// Expands the rule-file patterns once and splits the files by kind:
/// anomaly rule files are parsed here, every other file by
/// [`vigil_rules::parse_rule_file`]. Everything is validated before
/// anything is returned, so a bad file (of either kind) rejects the whole
/// set, listing every problem with its file.
pub fn load_rule_files(
    patterns: &[String],
) -> Result<(vigil_rules::RuleSet, AnomalyRuleSet), String> {
    let join = |errs: Vec<vigil_rules::file::RuleFileError>| {
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let files = vigil_rules::file::expand_patterns(patterns).map_err(join)?;
    let mut threshold = vigil_rules::RuleSet::default();
    let mut anomaly = AnomalyRuleSet::default();
    let mut errors: Vec<String> = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for path in files {
        let name = path.to_string_lossy().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        if is_anomaly_rule_text(&text) {
            match parse_anomaly_rules(&name, &text) {
                Ok(parsed) => {
                    for group in parsed.groups {
                        for rule in &group.rules {
                            // Saved models are named by rule, so names must
                            // not collide.
                            if let Some(first) = names.insert(rule.anomaly.clone(), name.clone()) {
                                errors.push(format!(
                                    "{name}: anomaly {:?} is also defined in {first}; anomaly names must be unique",
                                    rule.anomaly
                                ));
                            }
                        }
                        anomaly.groups.push((name.clone(), group));
                    }
                }
                Err(e) => errors.push(e),
            }
        } else {
            match vigil_rules::file::parse_rules(&name, &text) {
                Ok(groups) => threshold.groups.extend(groups),
                Err(e) => errors.push(join(e)),
            }
            threshold.files.push(name);
        }
    }
    if errors.is_empty() {
        Ok((threshold, anomaly))
    } else {
        Err(errors.join("\n"))
    }
}

/// The model settings of the first rule of an anomaly rule file, for
/// `vigil anomaly score --rule FILE`.
pub fn detector_config_from_rule_file(path: &Path) -> Result<DetectorConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = parse_anomaly_rules(&path.display().to_string(), &text)?;
    file.groups
        .iter()
        .flat_map(|g| g.rules.iter())
        .next()
        .map(|r| r.model.clone())
        .ok_or_else(|| format!("{}: no anomaly rule found", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"groups:
  - name: anomalies
    rules:
      - anomaly: CPUUsageAnomaly
        expr: rate(node_cpu_seconds_total{mode="idle"}[5m])
        for: 5m
        model:
          n_estimators: 50
"#;

    #[test]
    fn parses_and_recognises_anomaly_files() {
        assert!(is_anomaly_rule_text(FILE));
        assert!(!is_anomaly_rule_text(
            "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: up == 0\n"
        ));
        let f = parse_anomaly_rules("a.yml", FILE).expect("parses");
        assert_eq!(f.groups[0].rules[0].model.n_estimators, 50);
        // What the rule leaves out takes the rule defaults.
        assert_eq!(f.groups[0].rules[0].model.min_points, RULE_MIN_POINTS);
        assert_eq!(f.groups[0].rules[0].model.retrain_every, RULE_RETRAIN_EVERY);
        let no_model = "groups:\n  - name: a\n    rules:\n      - anomaly: A\n        expr: up\n";
        let f = parse_anomaly_rules("a.yml", no_model).expect("parses");
        assert_eq!(f.groups[0].rules[0].model.min_points, RULE_MIN_POINTS);
        let set = FILE.replace("n_estimators: 50", "min_points: 200\n          window: 300");
        let f = parse_anomaly_rules("a.yml", &set).expect("parses");
        assert_eq!(f.groups[0].rules[0].model.min_points, 200);
        let small = FILE.replace("n_estimators: 50", "window: 5");
        let f = parse_anomaly_rules("a.yml", &small).expect("a small window lowers the default");
        assert_eq!(f.groups[0].rules[0].model.min_points, 5);
    }

    #[test]
    fn rule_files_are_split_by_kind_and_validated_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let threshold = dir.path().join("a.rules.yml");
        std::fs::write(
            &threshold,
            "groups:\n  - name: t\n    rules:\n      - alert: Down\n        expr: up == 0\n",
        )
        .expect("write");
        let anomaly = dir.path().join("b.anomaly.yml");
        std::fs::write(&anomaly, FILE).expect("write");
        let pattern = dir.path().join("*.yml").to_string_lossy().to_string();
        let (t, a) = load_rule_files(std::slice::from_ref(&pattern)).expect("loads");
        assert_eq!((t.rule_count(), a.rule_count()), (1, 1));
        assert_eq!(t.files, vec![threshold.to_string_lossy().to_string()]);
        assert_eq!(a.groups[0].0, anomaly.to_string_lossy().to_string());

        // A bad anomaly file rejects the whole set, naming the file.
        std::fs::write(&anomaly, FILE.replace("for: 5m", "for: soon")).expect("write");
        let err = load_rule_files(std::slice::from_ref(&pattern)).expect_err("rejects");
        assert!(err.contains("b.anomaly.yml"), "{err}");
        // So does a duplicated anomaly name.
        std::fs::write(&anomaly, FILE).expect("write");
        std::fs::write(dir.path().join("c.anomaly.yml"), FILE).expect("write");
        let err = load_rule_files(&[pattern]).expect_err("rejects");
        assert!(err.contains("must be unique"), "{err}");
    }

    #[test]
    fn the_default_anomaly_rules_load() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/anomaly/default.anomaly.yml");
        let text = std::fs::read_to_string(&path).expect("default rules exist");
        assert!(is_anomaly_rule_text(&text));
        let parsed = parse_anomaly_rules("default.anomaly.yml", &text).expect("valid");
        let names: Vec<&str> = parsed.groups[0]
            .rules
            .iter()
            .map(|r| r.anomaly.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "CPUUsageAnomaly",
                "RequestLatencyAnomaly",
                "LlmTokenRateAnomaly"
            ]
        );
    }

    #[test]
    fn bad_rules_are_rejected_with_the_reason() {
        let bad = FILE.replace("rate(node_cpu_seconds_total{mode=\"idle\"}[5m])", "rate(");
        let err = parse_anomaly_rules("a.yml", &bad).expect_err("rejects");
        assert!(err.contains("a.yml") && err.contains("expr"), "{err}");
        let bad = FILE.replace("n_estimators: 50", "n_trees: 50");
        assert!(parse_anomaly_rules("a.yml", &bad).is_err());
    }
}
