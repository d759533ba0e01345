//! Rule files in Prometheus's format: the YAML model, loading from paths and
//! globs, and validation into a [`RuleSet`].
//!
//! Validation follows Prometheus's `rulefmt` so that every file Vigil
//! accepts is accepted by `promtool check rules` and the error messages read
//! the same (`group "g", rule 2, "Name": invalid label name: bad-label`).
//! Every error carries the file and, where the YAML gives it, the line and
//! column of the offending node.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use promql_parser::parser::Expr;
use serde::Deserialize;
use serde_saphyr::Spanned;
use vigil_template::Template;
use vigil_wire::labels::{is_valid_label_name, is_valid_metric_name};

use crate::duration::parse_duration;
use crate::template::{parse_rule_template, template_name};

/// A problem with a rule file: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct RuleFileError {
    pub file: String,
    /// 1-based; 0 when unknown.
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub column: usize,
    pub reason: String,
}

impl RuleFileError {
    fn render(&self) -> String {
        if self.line > 0 {
            format!(
                "{}: {}:{}: {}",
                self.file, self.line, self.column, self.reason
            )
        } else {
            format!("{}: {}", self.file, self.reason)
        }
    }
}

/// A YAML scalar read as text, so `expr: 1` and `severity: 2` work as in
/// Prometheus (which reads these fields as YAML nodes/strings).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or scalar")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<Spanned<RawGroup>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<Scalar>,
    #[serde(default)]
    interval: Option<Spanned<Scalar>>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    record: Option<Spanned<Scalar>>,
    #[serde(default)]
    alert: Option<Spanned<Scalar>>,
    #[serde(default)]
    expr: Option<Spanned<Scalar>>,
    #[serde(default, rename = "for")]
    for_: Option<Spanned<Scalar>>,
    #[serde(default)]
    keep_firing_for: Option<Spanned<Scalar>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, Scalar>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, Scalar>>,
}

/// What a rule produces. Open for extension (anomaly rules will join).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RuleKind {
    /// `record:` writes the expression's result under a new metric name.
    Recording,
    /// `alert:` turns each result element into an alert.
    Alerting(AlertSpec),
}

/// The alert-specific part of a rule.
#[derive(Debug, Clone)]
pub struct AlertSpec {
    /// `for`: how long an alert stays pending before it fires.
    pub hold: Duration,
    /// `keep_firing_for`: how long it keeps firing after the condition clears.
    pub keep_firing_for: Duration,
    /// Annotation templates in file order (sorted by name, as Prometheus).
    pub annotations: Vec<(String, String)>,
    pub(crate) annotation_templates: Vec<Template>,
    pub(crate) label_templates: Vec<Template>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// The `record` or `alert` name.
    pub name: String,
    pub kind: RuleKind,
    /// The expression as written.
    pub expr_text: String,
    /// The parsed expression.
    pub expr: Arc<Expr>,
    /// `labels:` (templates for alerts), sorted by name.
    pub labels: Vec<(String, String)>,
}

impl RuleSpec {
    /// The expression as Prometheus prints it (normalised), used in the
    /// API's `query` field and generator URLs.
    pub fn query_string(&self) -> String {
        self.expr.to_string()
    }

    /// Prometheus's key for matching a rule across reloads: name + labels.
    pub(crate) fn identity(&self) -> String {
        let mut s = self.name.clone();
        for (k, v) in &self.labels {
            s.push_str(&format!("\u{0}{k}={v}"));
        }
        s
    }
}

/// A validated group.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// The file it came from (as given/globbed).
    pub file: String,
    pub name: String,
    /// `interval:` if set; the manager's default otherwise.
    pub interval: Option<Duration>,
    /// `limit:` (0 = no limit).
    pub limit: usize,
    pub rules: Vec<Arc<RuleSpec>>,
}

/// A whole validated set of rule files, ready for [`crate::RuleManager::update`].
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub groups: Vec<GroupSpec>,
    /// The files it was loaded from.
    pub files: Vec<String>,
}

impl RuleSet {
    /// Number of rules over all groups.
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }
}

/// Expands each pattern (a path or a glob) to files, in order, each file
/// once. A pattern that matches nothing yields an error.
pub fn expand_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Vec<PathBuf>, Vec<RuleFileError>> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    let mut errs = Vec::new();
    for p in patterns {
        let p = p.as_ref();
        let mut matched = Vec::new();
        match glob::glob(p) {
            Ok(paths) => {
                for entry in paths {
                    match entry {
                        Ok(path) if path.is_file() => matched.push(path),
                        Ok(_) => {}
                        Err(e) => errs.push(file_err(p, format!("{e}"))),
                    }
                }
            }
            Err(e) => errs.push(file_err(p, format!("invalid glob: {e}"))),
        }
        if matched.is_empty() && !glob_has_meta(p) {
            errs.push(file_err(p, "no such file".to_string()));
        }
        matched.sort();
        for m in matched {
            if seen.insert(m.clone()) {
                files.push(m);
            }
        }
    }
    if errs.is_empty() {
        Ok(files)
    } else {
        Err(errs)
    }
}

fn glob_has_meta(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

fn file_err(file: &str, reason: String) -> RuleFileError {
    RuleFileError {
        file: file.to_string(),
        line: 0,
        column: 0,
        reason,
    }
}

/// Loads and validates every file the patterns name. The whole set is
/// checked before anything is returned: on any error, all errors come back
/// and nothing is loaded (so a bad reload leaves the running rules alone).
pub fn load_rule_files<S: AsRef<str>>(patterns: &[S]) -> Result<RuleSet, Vec<RuleFileError>> {
    let files = expand_patterns(patterns)?;
    let mut set = RuleSet::default();
    let mut errs = Vec::new();
    for f in files {
        let name = f.to_string_lossy().to_string();
        match parse_rule_file(&f) {
            Ok(groups) => set.groups.extend(groups),
            Err(mut e) => errs.append(&mut e),
        }
        set.files.push(name);
    }
    if errs.is_empty() { Ok(set) } else { Err(errs) }
}

/// Reads and validates one file.
pub fn parse_rule_file(path: &Path) -> Result<Vec<GroupSpec>, Vec<RuleFileError>> {
    let name = path.to_string_lossy().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| vec![file_err(&name, e.to_string())])?;
    parse_rules(&name, &text)
}

/// Validates rule-file `text` (named `file` in errors).
pub fn parse_rules(file: &str, text: &str) -> Result<Vec<GroupSpec>, Vec<RuleFileError>> {
    let raw: RawFile = if text.trim().is_empty() {
        RawFile { groups: Vec::new() }
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line() as usize, l.column() as usize))
                .unwrap_or((0, 0));
            vec![RuleFileError {
                file: file.to_string(),
                line,
                column,
                reason: format!("yaml: {}", first_line(&e.without_snippet().to_string())),
            }]
        })?
    };
    let mut errs = Vec::new();
    let mut groups = Vec::new();
    let mut names = HashSet::new();
    for spanned in raw.groups {
        // Group-level errors point at the group's mapping, as Prometheus.
        let (gl, gc) = pos(&spanned);
        let g = spanned.value;
        let gname = g.name.value.0.clone();
        let err = |line, column, reason: String| RuleFileError {
            file: file.to_string(),
            line,
            column,
            reason,
        };
        if gname.is_empty() {
            errs.push(err(gl, gc, "Groupname must not be empty".into()));
        }
        if !names.insert(gname.clone()) {
            errs.push(err(
                gl,
                gc,
                format!("groupname: {gname:?} is repeated in the same file"),
            ));
        }
        let interval = match &g.interval {
            Some(i) => match parse_duration(&i.value.0) {
                Ok(d) if d.is_zero() => None,
                Ok(d) => Some(d),
                Err(e) => {
                    let (l, c) = pos(i);
                    errs.push(err(l, c, format!("group {gname:?}: {e}")));
                    None
                }
            },
            None => None,
        };
        let mut rules = Vec::new();
        for (i, r) in g.rules.into_iter().enumerate() {
            match validate_rule(file, &gname, i + 1, r) {
                Ok(spec) => rules.push(Arc::new(spec)),
                Err(mut e) => errs.append(&mut e),
            }
        }
        groups.push(GroupSpec {
            file: file.to_string(),
            name: gname,
            interval,
            limit: g.limit.unwrap_or(0).max(0) as usize,
            rules,
        });
    }
    if errs.is_empty() {
        Ok(groups)
    } else {
        Err(errs)
    }
}

/// The first line of a YAML error, without the "at line X, column Y" tail
/// (the position is reported separately).
fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or(s);
    match line.rfind(" at line ") {
        Some(i) if line[i..].contains(", column ") => &line[..i],
        _ => line,
    }
}

fn pos<T>(s: &Spanned<T>) -> (usize, usize) {
    (s.referenced.line() as usize, s.referenced.column() as usize)
}

fn validate_rule(
    file: &str,
    group: &str,
    idx: usize,
    r: RawRule,
) -> Result<RuleSpec, Vec<RuleFileError>> {
    // Prometheus names the rule by `alert` when set, else by `record`.
    let name = r
        .alert
        .as_ref()
        .filter(|a| !a.value.0.is_empty())
        .or(r.record.as_ref())
        .map(|s| s.value.0.clone())
        .unwrap_or_default();
    // Errors about the rule point at its record/alert node, as Prometheus.
    let (nl, nc) = r
        .record
        .as_ref()
        .or(r.alert.as_ref())
        .map(pos)
        .unwrap_or((0, 0));
    let mut errs: Vec<RuleFileError> = Vec::new();
    let mut push = |line: usize, column: usize, msg: String| {
        errs.push(RuleFileError {
            file: file.to_string(),
            line,
            column,
            reason: format!("group {group:?}, rule {idx}, {name:?}: {msg}"),
        });
    };
    let is_record = r.record.as_ref().is_some_and(|s| !s.value.0.is_empty());
    let is_alert = r.alert.as_ref().is_some_and(|s| !s.value.0.is_empty());
    if is_record && is_alert {
        push(
            nl,
            nc,
            "only one of 'record' and 'alert' must be set".into(),
        );
    }
    if !is_record && !is_alert {
        push(nl, nc, "one of 'record' or 'alert' must be set".into());
    }
    let expr_text = r
        .expr
        .as_ref()
        .map(|e| e.value.0.clone())
        .unwrap_or_default();
    let mut expr = None;
    match &r.expr {
        Some(e) if !e.value.0.is_empty() => match vigil_promql::parse(&e.value.0) {
            Ok(x) => expr = Some(x),
            Err(err) => {
                let (l, c) = pos(e);
                push(l, c, format!("could not parse expression: {err}"));
            }
        },
        _ => push(nl, nc, "field 'expr' must be set in rule".into()),
    }
    let parse_dur =
        |d: &Option<Spanned<Scalar>>, push: &mut dyn FnMut(usize, usize, String)| match d {
            Some(s) => match parse_duration(&s.value.0) {
                Ok(d) => d,
                Err(e) => {
                    let (l, c) = pos(s);
                    push(l, c, e);
                    Duration::ZERO
                }
            },
            None => Duration::ZERO,
        };
    let hold = parse_dur(&r.for_, &mut push);
    let keep = parse_dur(&r.keep_firing_for, &mut push);
    let labels: Vec<(String, String)> = r
        .labels
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let annotations: Vec<(String, String)> = r
        .annotations
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    if is_record {
        if !annotations.is_empty() {
            push(
                nl,
                nc,
                "invalid field 'annotations' in recording rule".into(),
            );
        }
        if r.for_.is_some() {
            push(nl, nc, "invalid field 'for' in recording rule".into());
        }
        if r.keep_firing_for.is_some() {
            push(
                nl,
                nc,
                "invalid field 'keep_firing_for' in recording rule".into(),
            );
        }
        if !is_valid_metric_name(&name) {
            push(nl, nc, format!("invalid recording rule name: {name}"));
        }
    }
    for (k, _) in &labels {
        if !is_valid_label_name(k) || k == "__name__" {
            push(0, 0, format!("invalid label name: {k}"));
        }
    }
    for (k, _) in &annotations {
        if !is_valid_label_name(k) {
            push(0, 0, format!("invalid annotation name: {k}"));
        }
    }
    let mut label_templates = Vec::new();
    let mut annotation_templates = Vec::new();
    if is_alert {
        let tname = template_name(&name);
        for (k, v) in &labels {
            match parse_rule_template(&tname, v) {
                Ok(t) => label_templates.push(t),
                Err(e) => push(0, 0, format!("label {k:?}: {e}")),
            }
        }
        for (k, v) in &annotations {
            match parse_rule_template(&tname, v) {
                Ok(t) => annotation_templates.push(t),
                Err(e) => push(0, 0, format!("annotation {k:?}: {e}")),
            }
        }
    }
    let Some(expr) = expr else {
        return Err(errs);
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    let kind = if is_record {
        RuleKind::Recording
    } else {
        RuleKind::Alerting(AlertSpec {
            hold,
            keep_firing_for: keep,
            annotations,
            annotation_templates,
            label_templates,
        })
    };
    Ok(RuleSpec {
        name,
        kind,
        expr_text,
        expr: Arc::new(expr),
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse_rules("p.yml", &text);
        }

        #[test]
        fn rule_shaped_yaml_never_panics(
            name in "[a-zA-Z_:{}$ .|-]{0,12}",
            expr in "[a-z0-9_(){}\\[\\]=<>!~\" .+*/-]{0,24}",
            dur in "[0-9a-z]{0,5}",
            tmpl in "[{}$a-z .|\"]{0,20}",
        ) {
            let text = format!(
                "groups:\n  - name: g\n    rules:\n      - alert: '{}'\n        expr: '{}'\n        for: '{}'\n        annotations:\n          a: '{}'\n",
                name.replace('\'', ""), expr.replace('\'', ""), dur, tmpl.replace('\'', "")
            );
            match parse_rules("p.yml", &text) {
                Ok(groups) => prop_assert_eq!(groups[0].rules.len(), 1),
                Err(errs) => prop_assert!(errs.iter().all(|e| e.file == "p.yml" && !e.reason.is_empty())),
            }
        }
    }

    fn errs(text: &str) -> Vec<RuleFileError> {
        match parse_rules("f.yml", text) {
            Ok(g) => panic!("expected errors, got {} groups", g.len()),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_a_valid_file() {
        let text = "groups:\n  - name: g\n    interval: 30s\n    limit: 5\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n        labels: {tier: 1}\n      - alert: Down\n        expr: up == 0\n        for: 5m\n        keep_firing_for: 1m\n        labels: {severity: critical}\n        annotations:\n          summary: '{{ $labels.instance }} down'\n";
        let groups = match parse_rules("f.yml", text) {
            Ok(g) => g,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(
            (g.name.as_str(), g.interval, g.limit),
            ("g", Some(Duration::from_secs(30)), 5)
        );
        assert_eq!(
            g.rules[0].labels,
            vec![("tier".to_string(), "1".to_string())]
        );
        match &g.rules[1].kind {
            RuleKind::Alerting(a) => {
                assert_eq!(a.hold, Duration::from_secs(300));
                assert_eq!(a.keep_firing_for, Duration::from_secs(60));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(g.rules[1].query_string(), "up == 0");
    }

    #[test]
    fn errors_carry_positions_like_promtool() {
        let text = "groups:\n  - name: g\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up\n      - alert: Down\n        expr: up == 0\n        labels: {\"bad-label\": x}\n        annotations:\n          summary: \"{{ $labels.instance \"\n      - record: \"bad name\"\n        expr: up\n        for: 1m\n  - name: g\n    rules: []\n";
        let e = errs(text);
        let shown: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!((e[0].line, e[0].column), (5, 15), "{shown:#?}");
        assert!(
            shown[0].starts_with(
                "f.yml: 5:15: group \"g\", rule 1, \"job:up:sum\": could not parse expression"
            ),
            "{shown:#?}"
        );
        assert!(
            shown.contains(
                &"f.yml: group \"g\", rule 2, \"Down\": invalid label name: bad-label".to_string()
            ),
            "{shown:#?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.contains("annotation \"summary\": template: __alert_Down")),
            "{shown:#?}"
        );
        assert!(shown.contains(&"f.yml: 11:17: group \"g\", rule 3, \"bad name\": invalid field 'for' in recording rule".to_string()), "{shown:#?}");
        assert!(shown.contains(&"f.yml: 11:17: group \"g\", rule 3, \"bad name\": invalid recording rule name: bad name".to_string()), "{shown:#?}");
        assert!(
            shown.iter().any(|s| s.starts_with("f.yml: 14:")
                && s.ends_with("groupname: \"g\" is repeated in the same file")),
            "{shown:#?}"
        );
    }

    #[test]
    fn yaml_errors_have_positions() {
        let e = errs("groups:\n  - name: g\n    rulez:\n      - record: x\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].line >= 3, "{:?}", e[0]);
        assert!(e[0].reason.contains("rulez"), "{:?}", e[0]);
        let e = errs("groups: [\n");
        assert!(e[0].reason.starts_with("yaml: "), "{:?}", e[0]);
    }

    #[test]
    fn missing_fields() {
        let e = errs(
            "groups:\n  - name: g\n    rules:\n      - expr: up\n      - alert: A\n      - record: r\n        alert: B\n        expr: up\n",
        );
        let shown: Vec<String> = e.iter().map(|e| e.reason.clone()).collect();
        assert!(
            shown
                .iter()
                .any(|s| s.ends_with("one of 'record' or 'alert' must be set")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.ends_with("field 'expr' must be set in rule")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.ends_with("only one of 'record' and 'alert' must be set")),
            "{shown:?}"
        );
    }
}
