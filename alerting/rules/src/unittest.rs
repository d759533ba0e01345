//! `vigil test rules TESTFILE…`: promtool's rule unit-test format and
//! semantics (Prometheus 2.42 `cmd/promtool/unittest.go`).
//!
//! A test file names rule files (relative to itself, globs allowed), an
//! `evaluation_interval`, an optional `group_eval_order`, and test groups
//! with `input_series` (promtool's `a+bxN`, `_`, `stale` notation),
//! `alert_rule_test` and `promql_expr_test`. Rules are evaluated from time 0
//! to the last `eval_time` every `evaluation_interval`; alert expectations
//! are compared with the firing alerts of the evaluation at or just before
//! their `eval_time`. Failures are reported in promtool's layout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::Deserialize;
use vigil_promql::promqltest::{SeriesValue, expand_series_values, parse_series_selector};
use vigil_promql::{Engine, EngineOptions, MemStorage, Queryable, SeriesData, StorageError};
use vigil_template::printf::go_quote;
use vigil_wire::{Labels, Matcher, Sample, stale_nan};

use crate::alerting::AlertState;
use crate::duration::{format_go_duration, format_model_duration, parse_duration};
use crate::file::{GroupSpec, Scalar, parse_rule_file};
use crate::group::{EvalEnv, Group, RuleRuntimeKind, query_vector};
use crate::template::labels_value;
use crate::{AlertSender, OutgoingAlert, SampleAppender};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitTestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<Scalar>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    interval: Option<Scalar>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTestCase>,
    #[serde(default)]
    promql_expr_test: Vec<PromqlTestCase>,
    #[serde(default)]
    external_labels: BTreeMap<String, Scalar>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    #[serde(default)]
    values: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTestCase {
    /// promtool defaults a missing `eval_time` to 0.
    #[serde(default = "zero_time")]
    eval_time: Scalar,
    #[serde(default)]
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, Scalar>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromqlTestCase {
    expr: Scalar,
    #[serde(default = "zero_time")]
    eval_time: Scalar,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: Scalar,
}

/// In-memory storage that rules both read and write, like promtool's
/// test storage.
#[derive(Default)]
struct TestStorage(RwLock<MemStorage>);

impl Queryable for TestStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, StorageError> {
        self.0.read().select(matchers, start_ms, end_ms)
    }
}

impl SampleAppender for TestStorage {
    fn append(&self, samples: Vec<(Labels, Sample)>) -> Result<(), String> {
        let mut s = self.0.write();
        for (l, smp) in samples {
            s.add(l, vec![smp]);
        }
        Ok(())
    }
}

/// promtool discards notifications in unit tests.
struct DiscardSender;

impl AlertSender for DiscardSender {
    fn send(&self, _alerts: Vec<OutgoingAlert>) {}
}

/// A label set as compared and printed by promtool (`{a="b", c="d"}`);
/// a map keeps empty values, unlike [`Labels`].
type LabelMap = BTreeMap<String, String>;

fn labels_string(l: &LabelMap) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

fn to_map(l: &Labels) -> LabelMap {
    l.iter()
        .map(|x| (x.name.clone(), x.value.clone()))
        .collect()
}

/// Go's `strconv.FormatFloat(v, 'E', -1, 64)`.
fn format_float_upper_e(v: f64) -> String {
    crate::api::format_value_e(v)
        .to_uppercase()
        .replace("INF", "Inf")
        .replace("NAN", "NaN")
}

fn indent_lines(s: &str, indent: &str) -> String {
    s.split('\n')
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.to_string()
            } else {
                format!("{indent}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn alerts_string(la: &[(LabelMap, LabelMap)]) -> String {
    if la.is_empty() {
        return "[]".into();
    }
    let one = |(l, a): &(LabelMap, LabelMap)| {
        format!(
            "Labels:{}\nAnnotations:{}",
            labels_string(l),
            labels_string(a)
        )
    };
    let mut s = format!("[\n0:{}", indent_lines(&format!("\n{}", one(&la[0])), "  "));
    for (i, x) in la[1..].iter().enumerate() {
        s.push_str(&format!(
            ",\n{}:{}",
            i + 1,
            indent_lines(&format!("\n{}", one(x)), "  ")
        ));
    }
    s.push_str("\n]");
    s
}

fn samples_string(s: &[(LabelMap, f64)]) -> String {
    if s.is_empty() {
        return "nil".into();
    }
    s.iter()
        .map(|(l, v)| format!("{} {}", labels_string(l), format_float_upper_e(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn zero_time() -> Scalar {
    Scalar("0s".into())
}

fn dur(s: &Scalar) -> Result<Duration, String> {
    parse_duration(&s.0)
}

fn parse_float(s: &str) -> Result<f64, String> {
    match s.trim() {
        "NaN" | ".nan" | ".NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" | ".inf" | "+.inf" | ".Inf" => Ok(f64::INFINITY),
        "-Inf" | "-.inf" | "-.Inf" => Ok(f64::NEG_INFINITY),
        t => t.parse().map_err(|_| format!("invalid float {t:?}")),
    }
}

/// Resolves `rule_files` relative to the test file and expands globs;
/// patterns that match nothing produce promtool's warning.
fn resolve_rule_files(dir: &Path, patterns: &[String], out: &mut dyn Write) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for p in patterns {
        let full = if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            dir.join(p)
        };
        let pattern = full.to_string_lossy().to_string();
        let mut matched: Vec<PathBuf> = glob::glob(&pattern)
            .map(|paths| {
                paths
                    .filter_map(Result::ok)
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        if matched.is_empty() {
            let _ = writeln!(out, "  WARNING: no file match pattern {p}");
        }
        matched.sort();
        files.extend(matched);
    }
    files
}

/// Runs each test file; writes promtool's report to `out`; returns the
/// exit code (0 when every file passed, else 1).
pub fn test_rules<P: AsRef<Path>>(files: &[P], out: &mut dyn Write) -> i32 {
    let mut failed = false;
    for f in files {
        let f = f.as_ref();
        let _ = writeln!(out, "Unit Testing:  {}", f.display());
        let errs = run_test_file(f, out);
        if errs.is_empty() {
            let _ = writeln!(out, "  SUCCESS");
        } else {
            failed = true;
            let _ = writeln!(out, "  FAILED:");
            for e in errs {
                let _ = writeln!(out, "{e}");
                let _ = writeln!(out);
            }
        }
        let _ = writeln!(out);
    }
    i32::from(failed)
}

fn run_test_file(path: &Path, out: &mut dyn Write) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return vec![format!("open {}: {e}", path.display())],
    };
    let file: UnitTestFile = match serde_saphyr::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!("line {}: ", l.line()))
                .unwrap_or_default();
            let msg = e.without_snippet().to_string();
            return vec![format!("yaml: {at}{}", msg.lines().next().unwrap_or(""))];
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let rule_files = resolve_rule_files(dir, &file.rule_files, out);
    let eval_interval = match file.evaluation_interval.as_ref().map(dur).transpose() {
        Ok(Some(d)) if !d.is_zero() => d,
        Ok(_) => Duration::from_secs(60),
        Err(e) => return vec![format!("evaluation_interval: {e}")],
    };
    let mut order: BTreeMap<String, usize> = BTreeMap::new();
    for (i, g) in file.group_eval_order.iter().enumerate() {
        if order.insert(g.clone(), i).is_some() {
            return vec![format!("group name repeated in evaluation order: {g}")];
        }
    }
    let mut errs = Vec::new();
    for tg in &file.tests {
        errs.extend(run_test_group(tg, eval_interval, &order, &rule_files));
    }
    errs
}

fn load_groups(
    files: &[PathBuf],
    interval: Duration,
    order: &BTreeMap<String, usize>,
) -> Result<Vec<Group>, Vec<String>> {
    let mut specs: Vec<GroupSpec> = Vec::new();
    let mut errs = Vec::new();
    for f in files {
        match parse_rule_file(f) {
            Ok(g) => specs.extend(g),
            Err(e) => errs.extend(e.into_iter().map(|e| e.to_string())),
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    // Groups run in group_eval_order; unnamed ones first, in file order.
    specs.sort_by_key(|g| order.get(&g.name).copied().unwrap_or(0));
    Ok(specs
        .into_iter()
        .map(|mut spec| {
            // promtool evaluates every group at the test's interval.
            spec.interval = Some(interval);
            Group::new(spec, interval, false)
        })
        .collect())
}

fn run_test_group(
    tg: &TestGroup,
    eval_interval: Duration,
    order: &BTreeMap<String, usize>,
    rule_files: &[PathBuf],
) -> Vec<String> {
    let interval = match tg.interval.as_ref().map(dur).transpose() {
        Ok(Some(d)) if !d.is_zero() => d,
        Ok(_) => eval_interval,
        Err(e) => return vec![format!("interval: {e}")],
    };
    let storage = Arc::new(TestStorage::default());
    if let Err(e) = load_series(&storage, &tg.input_series, interval.as_millis() as i64) {
        return vec![e];
    }
    let mut groups = match load_groups(rule_files, interval, order) {
        Ok(g) => g,
        Err(e) => return e,
    };
    let group_log = if tg.name.is_empty() {
        String::new()
    } else {
        format!(" (in TestGroup {})", tg.name)
    };
    // Alert tests by eval time.
    let mut alert_tests: BTreeMap<i64, Vec<&AlertTestCase>> = BTreeMap::new();
    for t in &tg.alert_rule_test {
        let at = match dur(&t.eval_time) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => return vec![format!("eval_time: {e}")],
        };
        if t.alertname.is_empty() {
            return vec![format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{group_log}",
                t.eval_time.0
            )];
        }
        alert_tests.entry(at).or_default().push(t);
    }
    let mut promql_times = Vec::new();
    for t in &tg.promql_expr_test {
        match dur(&t.eval_time) {
            Ok(d) => promql_times.push(d.as_millis() as i64),
            Err(e) => return vec![format!("eval_time: {e}")],
        }
    }
    let maxt = alert_tests
        .keys()
        .copied()
        .chain(promql_times.iter().copied())
        .max()
        .unwrap_or(0);
    let engine = Arc::new(Engine::new(EngineOptions::default()));
    let queryable: Arc<dyn Queryable> = storage.clone();
    let external_labels = Labels::from_pairs(
        tg.external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    let external_labels_value = labels_value(&external_labels);
    let sender = DiscardSender;
    let env = EvalEnv {
        engine: &engine,
        storage: &queryable,
        appender: storage.as_ref(),
        sender: &sender,
        external_labels: &external_labels,
        external_labels_value: &external_labels_value,
        external_url: &tg.external_url,
        resend_delay: Duration::from_secs(60),
    };
    let step = (eval_interval.as_millis() as i64).max(1);
    let mut errs = Vec::new();
    let alert_times: Vec<i64> = alert_tests.keys().copied().collect();
    let mut curr = 0usize;
    let mut ts = 0i64;
    while ts <= maxt {
        let mut eval_errs = Vec::new();
        for g in &mut groups {
            g.eval(ts, &env);
        }
        for g in &groups {
            for r in &g.rules {
                if let Some(e) = &r.last_error {
                    eval_errs.push(format!(
                        "    rule: {}, time: {}, err: {e}",
                        r.spec.name,
                        format_go_duration(Duration::from_millis(ts as u64))
                    ));
                }
            }
        }
        if !eval_errs.is_empty() {
            errs.extend(eval_errs);
            return errs;
        }
        while curr < alert_times.len() && ts <= alert_times[curr] && alert_times[curr] < ts + step {
            let t = alert_times[curr];
            for case in &alert_tests[&t] {
                errs.extend(check_alerts(case, &groups, &tg.name));
            }
            curr += 1;
        }
        ts += step;
    }
    for (case, at) in tg.promql_expr_test.iter().zip(promql_times) {
        if let Some(e) = check_expr(case, at, &engine, storage.as_ref()) {
            errs.push(e);
        }
    }
    errs
}

fn load_series(
    storage: &TestStorage,
    input: &[InputSeries],
    interval_ms: i64,
) -> Result<(), String> {
    let mut s = storage.0.write();
    for series in input {
        let labels = parse_series_selector(&series.series)
            .map_err(|e| format!("series {:?}: {e}", series.series))?;
        let values = series.values.as_ref().map(|v| v.0.as_str()).unwrap_or("");
        let expanded =
            expand_values(values).map_err(|e| format!("series {:?}: {e}", series.series))?;
        let samples: Vec<Sample> = expanded
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let t = i as i64 * interval_ms;
                match v {
                    SeriesValue::Value(x) => Some(Sample::new(t, x)),
                    SeriesValue::Stale => Some(Sample::new(t, stale_nan())),
                    SeriesValue::Missing => None,
                }
            })
            .collect();
        s.add(labels, samples);
    }
    Ok(())
}

/// Expands promtool's value notation (`0x15` is "0 repeated 15 more
/// times", as promtool 2.42 reads it, not hexadecimal).
fn expand_values(notation: &str) -> Result<Vec<SeriesValue>, String> {
    expand_series_values(notation)
}

fn check_alerts(case: &AlertTestCase, groups: &[Group], test_name: &str) -> Option<String> {
    let mut got: Vec<(LabelMap, LabelMap)> = Vec::new();
    for g in groups {
        for r in &g.rules {
            let RuleRuntimeKind::Alerting(ar) = &r.kind else {
                continue;
            };
            if r.spec.name != case.alertname {
                continue;
            }
            for a in ar.active.values().filter(|a| a.state == AlertState::Firing) {
                got.push((to_map(&a.labels), a.annotations.iter().cloned().collect()));
            }
        }
    }
    let mut exp: Vec<(LabelMap, LabelMap)> = case
        .exp_alerts
        .iter()
        .map(|a| {
            let mut l: LabelMap = a
                .exp_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect();
            l.insert("alertname".into(), case.alertname.clone());
            (
                l,
                a.exp_annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    if got == exp {
        return None;
    }
    let name = if test_name.is_empty() {
        String::new()
    } else {
        format!("    name: {test_name},\n")
    };
    let indent = "            ";
    Some(format!(
        "{name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
        case.alertname,
        format_model_duration(dur(&case.eval_time).unwrap_or_default()),
        indent_lines(&alerts_string(&exp), indent),
        indent_lines(&alerts_string(&got), indent)
    ))
}

fn check_expr(
    case: &PromqlTestCase,
    at_ms: i64,
    engine: &Engine,
    storage: &TestStorage,
) -> Option<String> {
    let time = format_model_duration(Duration::from_millis(at_ms as u64));
    let expr = &case.expr.0;
    let parsed = match vigil_promql::parse(expr) {
        Ok(p) => p,
        Err(e) => {
            return Some(format!(
                "    expr: {}, time: {time}, err: {e}",
                go_quote(expr)
            ));
        }
    };
    let spec = crate::file::RuleSpec {
        name: String::new(),
        kind: crate::file::RuleKind::Recording,
        expr_text: expr.clone(),
        expr: Arc::new(parsed),
        labels: Vec::new(),
    };
    let got = match query_vector(engine, storage, &spec, at_ms) {
        Ok(v) => v,
        Err(e) => {
            return Some(format!(
                "    expr: {}, time: {time}, err: {e}",
                go_quote(expr)
            ));
        }
    };
    let mut got: Vec<(LabelMap, f64)> = got.iter().map(|(l, v)| (to_map(l), *v)).collect();
    let mut exp = Vec::new();
    for s in &case.exp_samples {
        let labels = if s.labels.trim().is_empty() {
            Ok(Labels::empty())
        } else {
            parse_series_selector(&s.labels)
        };
        let labels = match labels {
            Ok(l) => l,
            Err(e) => {
                return Some(format!(
                    "    expr: {}, time: {time}, err: labels {}: {e}",
                    go_quote(expr),
                    go_quote(&s.labels)
                ));
            }
        };
        let v = match parse_float(&s.value.0) {
            Ok(v) => v,
            Err(e) => {
                return Some(format!(
                    "    expr: {}, time: {time}, err: {e}",
                    go_quote(expr)
                ));
            }
        };
        exp.push((to_map(&labels), v));
    }
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    got.sort_by(|a, b| a.0.cmp(&b.0));
    // Exact comparison, as promtool 2.42's reflect.DeepEqual (NaN never equal).
    let equal =
        exp.len() == got.len() && exp.iter().zip(&got).all(|(a, b)| a.0 == b.0 && a.1 == b.1);
    if equal {
        return None;
    }
    Some(format!(
        "    expr: {}, time: {time},\n        exp: {}\n        got: {}",
        go_quote(expr),
        samples_string(&exp),
        samples_string(&got)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_repetition_is_not_hex() {
        let v = expand_values("0x3 1+1x2 _ stale");
        let want = vec![
            SeriesValue::Value(0.0),
            SeriesValue::Value(0.0),
            SeriesValue::Value(0.0),
            SeriesValue::Value(0.0),
            SeriesValue::Value(1.0),
            SeriesValue::Value(2.0),
            SeriesValue::Value(3.0),
            SeriesValue::Missing,
            SeriesValue::Stale,
        ];
        assert_eq!(v, Ok(want));
    }

    /// Series values read as promtool 2.42 reads them, checked against the
    /// real promtool: each notation's first value and sample count, or the
    /// fact that it is refused.
    #[test]
    fn series_notation_matches_promtool() {
        if std::process::Command::new("promtool")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("promtool not installed; skipping the comparison");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("r.yml"), "groups: []\n").expect("rules");
        for notation in [
            "010", "0b11", "0x1F", "1_000", "0x10", "1e3", "0o17", "-0x3", "+5", ".5", "0x1Fx2",
            "Inf", "-Inf", "08", "0.5e1", "007x2", "1+1x3", "2-0.5x2", "3 _x2 4",
        ] {
            let test = format!(
                "rule_files: [r.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - series: m\n        values: '{notation}'\n    promql_expr_test:\n      - expr: m\n        eval_time: 0m\n        exp_samples: [{{labels: m, value: 12345}}]\n      - expr: count_over_time(m[1h])\n        eval_time: 59m\n        exp_samples: [{{labels: '{{}}', value: 12345}}]\n"
            );
            let path = dir.path().join("t.yml");
            std::fs::write(&path, test).expect("test file");
            let out = std::process::Command::new("promtool")
                .args(["test", "rules"])
                .arg(&path)
                .output()
                .expect("promtool runs");
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            let got: Vec<&str> = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("got: "))
                .collect();
            let ours = expand_values(notation);
            if got.len() != 2 {
                assert!(
                    ours.is_err(),
                    "{notation}: promtool refuses ({text}), Vigil reads {ours:?}"
                );
                continue;
            }
            let vals = ours.unwrap_or_else(|e| panic!("{notation}: promtool reads it, Vigil: {e}"));
            let first = match vals.first() {
                Some(SeriesValue::Value(v)) => samples_string(&[(
                    BTreeMap::from([("__name__".to_string(), "m".to_string())]),
                    *v,
                )]),
                other => panic!("{notation}: first value {other:?}"),
            };
            assert_eq!(first, got[0], "{notation}: first value");
            let count = vals
                .iter()
                .filter(|v| matches!(v, SeriesValue::Value(_)))
                .count();
            assert_eq!(
                format!("{{}} {}", format_float_upper_e(count as f64)),
                got[1],
                "{notation}: sample count"
            );
        }
    }

    /// A test case without `eval_time` is evaluated at 0, by promtool and
    /// by Vigil alike (both pass; a wrong time would see no sample).
    #[test]
    fn eval_time_defaults_to_zero_as_in_promtool() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("r.yml"),
            "groups:\n  - name: g\n    rules:\n      - alert: Up\n        expr: m > 0\n",
        )
        .expect("rules");
        let test = "rule_files: [r.yml]\ntests:\n  - interval: 1m\n    input_series:\n      - series: m\n        values: '5 _x20'\n    promql_expr_test:\n      - expr: m\n        exp_samples: [{labels: m, value: 5}]\n    alert_rule_test:\n      - alertname: Up\n        exp_alerts: [{exp_labels: {}}]\n";
        let path = dir.path().join("t.yml");
        std::fs::write(&path, test).expect("test");
        let mut out = Vec::new();
        assert_eq!(
            test_rules(&[&path], &mut out),
            0,
            "{}",
            String::from_utf8_lossy(&out)
        );
        if let Ok(o) = std::process::Command::new("promtool")
            .args(["test", "rules"])
            .arg(&path)
            .output()
        {
            assert!(
                o.status.success(),
                "promtool: {}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
    }

    #[test]
    fn go_float_e_format() {
        assert_eq!(format_float_upper_e(2.0), "2E+00");
        assert_eq!(format_float_upper_e(3.5), "3.5E+00");
        assert_eq!(format_float_upper_e(f64::INFINITY), "+Inf");
        assert_eq!(format_float_upper_e(f64::NAN), "NaN");
    }
}
