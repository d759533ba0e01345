//! Prometheus relabeling (`relabel_config`), one engine for every place a
//! label set is rewritten: the agent's `relabel_configs` (targets) and
//! `metric_relabel_configs` (scraped samples), and the collector's
//! `write_relabel_configs` (forwarded series).
//!
//! The semantics are Prometheus's (`model/relabel/relabel.go`):
//!
//! - defaults: `separator: ";"`, `regex: "(.*)"`, `replacement: "$1"`,
//!   `action: replace`; the regex is fully anchored as `^(?s:REGEX)$`;
//! - the source value is the values of `source_labels` (absent = empty)
//!   joined by `separator`;
//! - `replace`: when the regex matches, `target_label` and `replacement` are
//!   expanded (`$1`, `${1}`, `$name`, `${name}`, `$$` for a literal `$`; the
//!   longest name is taken, so `$1x` is the group named `1x`, which is
//!   empty); a target that expands to an invalid label name is skipped, an
//!   empty result deletes the target label;
//! - `keep` / `drop`: drop the label set unless / when the regex matches;
//! - `keepequal` / `dropequal`: drop unless / when the source value equals
//!   the value of `target_label`;
//! - `hashmod`: `target_label` = the last 8 bytes of the MD5 of the source
//!   value, as a big-endian u64, modulo `modulus`;
//! - `labelmap`: every label whose name matches gets copied to the name the
//!   replacement expands to;
//! - `labeldrop` / `labelkeep`: remove the labels whose names match / do not
//!   match;
//! - `lowercase` / `uppercase`: `target_label` = the source value in lower /
//!   upper case.
//!
//! Configurations are checked as Prometheus checks them, with its messages
//! (`relabel configuration for replace action requires 'target_label'
//! value`, `labeldrop action requires only 'regex', and no other fields`, …);
//! an unknown action or field is refused when the YAML is read.
//!
//! Label names follow Prometheus's legacy rules (`[a-zA-Z_][a-zA-Z0-9_]*`,
//! as Prometheus 2 and Prometheus 3 with `metric_name_validation_scheme:
//! legacy`), since that is what Vigil stores. Regular expressions use
//! Rust's `regex` crate, whose syntax is RE2's; one difference: `\d`, `\w`
//! and `\s` are Unicode-aware here and ASCII in Go (`[0-9]` is the same in
//! both).
//!
//! ```
//! use vigil_wire::Labels;
//! use vigil_wire::relabel::{Relabel, RelabelConfig, process};
//!
//! let cfg: RelabelConfig = RelabelConfig {
//!     source_labels: Some(vec!["__address__".into()]),
//!     regex: Some("(.*):\\d+".into()),
//!     target_label: "host".into(),
//!     ..RelabelConfig::default()
//! };
//! let steps = vec![Relabel::compile(&cfg).expect("valid")];
//! let out = process(Labels::from_pairs([("__address__", "db1:9100")]), &steps);
//! assert_eq!(out.expect("kept").get("host"), Some("db1"));
//! ```

use std::fmt;
use std::sync::LazyLock;

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;
use thiserror::Error;

use crate::labels::{Labels, is_valid_label_name};

/// The default `separator`.
pub const DEFAULT_SEPARATOR: &str = ";";
/// The default `regex`.
pub const DEFAULT_REGEX: &str = "(.*)";
/// The default `replacement`.
pub const DEFAULT_REPLACEMENT: &str = "$1";

/// What a relabeling step does. Read case-insensitively, as Prometheus
/// reads it (`Replace` is `replace`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RelabelAction {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl RelabelAction {
    /// Every action, in Prometheus's documentation order.
    pub const ALL: [RelabelAction; 11] = [
        Self::Replace,
        Self::Keep,
        Self::Drop,
        Self::KeepEqual,
        Self::DropEqual,
        Self::HashMod,
        Self::LabelMap,
        Self::LabelDrop,
        Self::LabelKeep,
        Self::Lowercase,
        Self::Uppercase,
    ];
    const NAMES: [&'static str; 11] = [
        "replace",
        "keep",
        "drop",
        "keepequal",
        "dropequal",
        "hashmod",
        "labelmap",
        "labeldrop",
        "labelkeep",
        "lowercase",
        "uppercase",
    ];

    /// The name as written in configuration files.
    pub fn as_str(self) -> &'static str {
        let i = Self::ALL.iter().position(|a| *a == self).unwrap_or(0);
        Self::NAMES[i]
    }

    /// Parses a name, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        let lower = s.to_ascii_lowercase();
        Self::NAMES
            .iter()
            .position(|n| *n == lower)
            .map(|i| Self::ALL[i])
    }
}

impl fmt::Display for RelabelAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RelabelAction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RelabelAction;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a relabel action ({})", RelabelAction::NAMES.join(", "))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RelabelAction, E> {
                RelabelAction::parse(s).ok_or_else(|| {
                    E::custom(format!(
                        "unknown relabel action {s:?} (expected one of {})",
                        RelabelAction::NAMES.join(", ")
                    ))
                })
            }
            fn visit_enum<A: serde::de::EnumAccess<'de>>(
                self,
                data: A,
            ) -> Result<RelabelAction, A::Error> {
                use serde::de::VariantAccess as _;
                let (name, variant) = data.variant::<String>()?;
                variant.unit_variant()?;
                self.visit_str(&name)
            }
        }
        // As an enum, so a YAML scalar and a configuration-key walk both
        // reach it; the visitor lower-cases the name.
        d.deserialize_enum("RelabelAction", &Self::NAMES, V)
    }
}

/// One `relabel_config`, as written. Unset fields take Prometheus's
/// defaults; whether a field was written matters for the checks
/// `labeldrop`/`labelkeep`/`keepequal`/`dropequal` make.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values, joined by `separator`, form the source value.
    #[serde(default)]
    pub source_labels: Option<Vec<String>>,
    /// Joins the source label values. Default `;`.
    #[serde(default)]
    pub separator: Option<String>,
    /// Matched against the source value (or the label names for
    /// `labelmap`, `labeldrop`, `labelkeep`), fully anchored. Default `(.*)`.
    #[serde(default)]
    pub regex: Option<String>,
    /// `hashmod`'s modulus.
    #[serde(default)]
    pub modulus: u64,
    /// The label written by `replace` (which may use `$1`-style groups),
    /// `hashmod`, `lowercase` and `uppercase`, or compared by
    /// `keepequal`/`dropequal`.
    #[serde(default)]
    pub target_label: String,
    /// What `replace` writes and `labelmap` names. Default `$1`.
    #[serde(default)]
    pub replacement: Option<String>,
    /// Default `replace`.
    #[serde(default)]
    pub action: RelabelAction,
}

/// Why a relabel configuration was refused. The messages are Prometheus's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RelabelError {
    #[error("invalid regex {regex:?}: {reason}")]
    Regex { regex: String, reason: String },
    #[error("{0:?} is not a valid label name")]
    SourceLabel(String),
    #[error("{0}")]
    Invalid(String),
}

/// Prometheus's `relabelTargetLegacy`: a legacy label name in which
/// `$var`/`${var}` references may stand for characters.
static TARGET_WITH_VARS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[a-zA-Z0-9_]+\}|[a-zA-Z0-9_]+))+[a-zA-Z0-9_]*)+$")
        .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});

/// A relabeling step ready to run.
#[derive(Debug, Clone)]
pub struct Relabel {
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
    /// `regex` was not written: `replace` of an empty source value may take
    /// Prometheus's fast path (same result, no regex run).
    default_regex: bool,
    modulus: u64,
    target_label: String,
    replacement: String,
    action: RelabelAction,
}

/// Anchors a user regex as Prometheus does.
pub fn anchored(regex: &str) -> Result<Regex, RelabelError> {
    Regex::new(&format!("^(?s:{regex})$")).map_err(|e| RelabelError::Regex {
        regex: regex.to_string(),
        // Said about the regex as written, not the anchored one.
        reason: Regex::new(regex).err().unwrap_or(e).to_string(),
    })
}

impl Relabel {
    /// Checks a configuration as Prometheus's `Config.Validate` does and
    /// compiles its regex.
    pub fn compile(c: &RelabelConfig) -> Result<Self, RelabelError> {
        use RelabelAction::*;
        for name in c.source_labels.iter().flatten() {
            if !is_valid_label_name(name) {
                return Err(RelabelError::SourceLabel(name.clone()));
            }
        }
        let regex = anchored(c.regex.as_deref().unwrap_or(DEFAULT_REGEX))?;
        let separator = c.separator.as_deref().unwrap_or(DEFAULT_SEPARATOR);
        let replacement = c.replacement.as_deref().unwrap_or(DEFAULT_REPLACEMENT);
        let a = c.action;
        let t = c.target_label.as_str();
        let invalid = |m: String| Err(RelabelError::Invalid(m));
        if c.modulus == 0 && a == HashMod {
            return invalid(
                "relabel configuration for hashmod requires non-zero modulus".to_string(),
            );
        }
        if matches!(
            a,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        ) && t.is_empty()
        {
            return invalid(format!(
                "relabel configuration for {a} action requires 'target_label' value"
            ));
        }
        let has_var = t.contains('$');
        if a == Replace
            && ((!has_var && !is_valid_label_name(t)) || (has_var && !TARGET_WITH_VARS.is_match(t)))
        {
            return invalid(format!("{t:?} is invalid 'target_label' for {a} action"));
        }
        let plain_target = matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual);
        if plain_target && !is_valid_label_name(t) {
            return invalid(format!("{t:?} is invalid 'target_label' for {a} action"));
        }
        if plain_target && replacement != DEFAULT_REPLACEMENT {
            return invalid(format!("'replacement' can not be set for {a} action"));
        }
        if a == LabelMap && !TARGET_WITH_VARS.is_match(replacement) {
            return invalid(format!(
                "{replacement:?} is invalid 'replacement' for {a} action"
            ));
        }
        if a == HashMod && !is_valid_label_name(t) {
            return invalid(format!("{t:?} is invalid 'target_label' for {a} action"));
        }
        if matches!(a, KeepEqual | DropEqual)
            && (c.regex.is_some()
                || c.modulus != 0
                || separator != DEFAULT_SEPARATOR
                || replacement != DEFAULT_REPLACEMENT)
        {
            return invalid(format!(
                "{a} action requires only 'source_labels' and `target_label`, and no other fields"
            ));
        }
        if matches!(a, LabelDrop | LabelKeep)
            && (c.source_labels.is_some()
                || !t.is_empty()
                || c.modulus != 0
                || separator != DEFAULT_SEPARATOR
                || replacement != DEFAULT_REPLACEMENT)
        {
            return invalid(format!(
                "{a} action requires only 'regex', and no other fields"
            ));
        }
        Ok(Self {
            source_labels: c.source_labels.clone().unwrap_or_default(),
            separator: separator.to_string(),
            regex,
            default_regex: c.regex.is_none(),
            modulus: c.modulus,
            target_label: t.to_string(),
            replacement: replacement.to_string(),
            action: a,
        })
    }

    /// Compiles a list, naming the failing entry (`relabel_configs[2]: …`).
    pub fn compile_all(what: &str, cfgs: &[RelabelConfig]) -> Result<Vec<Self>, String> {
        cfgs.iter()
            .enumerate()
            .map(|(i, c)| Self::compile(c).map_err(|e| format!("{what}[{i}]: {e}")))
            .collect()
    }

    pub fn action(&self) -> RelabelAction {
        self.action
    }

    /// The values of `source_labels` joined by `separator`.
    fn source_value(&self, labels: &Labels) -> String {
        let mut v = String::new();
        for (i, n) in self.source_labels.iter().enumerate() {
            if i > 0 {
                v.push_str(&self.separator);
            }
            v.push_str(labels.get(n).unwrap_or(""));
        }
        v
    }

    /// Applies the step to `labels`; false drops the label set.
    pub fn apply(&self, labels: &mut Labels) -> bool {
        use RelabelAction::*;
        match self.action {
            Drop => return !self.regex.is_match(&self.source_value(labels)),
            Keep => return self.regex.is_match(&self.source_value(labels)),
            DropEqual => {
                return labels.get(&self.target_label).unwrap_or("") != self.source_value(labels);
            }
            KeepEqual => {
                return labels.get(&self.target_label).unwrap_or("") == self.source_value(labels);
            }
            Replace => {
                let v = self.source_value(labels);
                if v.is_empty()
                    && self.default_regex
                    && !self.target_label.contains('$')
                    && !self.replacement.contains('$')
                {
                    // Prometheus's fast path; the regex `(.*)` would match
                    // and expand to the same thing.
                    labels.set(&self.target_label, self.replacement.clone());
                    return true;
                }
                let Some(caps) = self.regex.captures(&v) else {
                    return true;
                };
                let mut target = String::new();
                caps.expand(&self.target_label, &mut target);
                if !is_valid_label_name(&target) {
                    return true;
                }
                let mut out = String::new();
                caps.expand(&self.replacement, &mut out);
                // An empty value deletes the label.
                labels.set(&target, out);
            }
            Lowercase => labels.set(&self.target_label, self.source_value(labels).to_lowercase()),
            Uppercase => labels.set(&self.target_label, self.source_value(labels).to_uppercase()),
            HashMod => {
                let sum = Md5::digest(self.source_value(labels).as_bytes());
                let mut tail = [0u8; 8];
                tail.copy_from_slice(&sum[8..16]);
                let m = u64::from_be_bytes(tail) % self.modulus.max(1);
                labels.set(&self.target_label, m.to_string());
            }
            LabelMap => {
                // Over a snapshot, as Prometheus's Builder.Range is.
                let before: Vec<_> = labels.iter().cloned().collect();
                for l in before {
                    if let Some(caps) = self.regex.captures(&l.name) {
                        let mut name = String::new();
                        caps.expand(&self.replacement, &mut name);
                        if is_valid_label_name(&name) {
                            labels.set(&name, l.value);
                        }
                    }
                }
            }
            LabelDrop | LabelKeep => {
                let keep_matching = self.action == LabelKeep;
                let gone: Vec<String> = labels
                    .iter()
                    .filter(|l| self.regex.is_match(&l.name) != keep_matching)
                    .map(|l| l.name.clone())
                    .collect();
                for n in gone {
                    labels.remove(&n);
                }
            }
        }
        true
    }
}

/// Runs relabeling steps in order, as Prometheus's `relabel.Process`:
/// `None` when a step dropped the label set. The result may be empty (the
/// caller decides what an empty set means).
pub fn process(mut labels: Labels, steps: &[Relabel]) -> Option<Labels> {
    for s in steps {
        if !s.apply(&mut labels) {
            return None;
        }
    }
    Some(labels)
}

#[cfg(test)]
mod tests;
