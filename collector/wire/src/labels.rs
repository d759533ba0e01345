//! Label sets: the identity of a time series.
//!
//! A [`Labels`] is always sorted by name and free of duplicates and empty
//! values, matching Prometheus: an empty label value means "label absent".

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The reserved label holding the metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// One name/value pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// Why a label set was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LabelError {
    #[error("invalid label name {0:?}")]
    InvalidName(String),
    #[error("invalid metric name {0:?}")]
    InvalidMetricName(String),
    #[error("missing metric name")]
    MissingMetricName,
    #[error("duplicate label name {0:?}")]
    Duplicate(String),
    #[error("label value for {0:?} is not valid UTF-8")]
    InvalidValue(String),
    #[error("label name {name:?} is {len} bytes long, over the limit of {limit}")]
    NameTooLong {
        name: String,
        len: usize,
        limit: usize,
    },
    #[error("value of label {name:?} is {len} bytes long, over the limit of {limit}")]
    ValueTooLong {
        name: String,
        len: usize,
        limit: usize,
    },
    #[error("{count} labels, over the limit of {limit}")]
    TooMany { count: usize, limit: usize },
}

/// True for a valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// True for a valid Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Limits applied when validating an incoming label set.
#[derive(Debug, Clone, Copy)]
pub struct LabelLimits {
    pub max_name_len: usize,
    pub max_value_len: usize,
    pub max_labels: usize,
}

impl Default for LabelLimits {
    fn default() -> Self {
        Self {
            max_name_len: 1024,
            max_value_len: 4096,
            max_labels: 64,
        }
    }
}

/// A sorted, duplicate-free label set.
///
/// Shared, not copied: a clone is a reference count, so the ingest path can
/// hand a stored series' labels to a request that names that series again
/// without allocating, and the store can recognise them by address.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Arc<[Label]>);

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Label>::deserialize(d).map(|v| Self(v.into()))
    }
}

impl Labels {
    pub fn empty() -> Self {
        Self(Arc::from([]))
    }

    /// Whether `self` and `other` are the same shared label set (clones of
    /// one another), not merely equal.
    pub fn ptr_eq(&self, other: &Labels) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Whether this set is exactly `pairs`, in order (a stored, valid set
    /// compared with a request's raw labels before any are copied).
    pub fn eq_pairs<'a>(&self, pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> bool {
        pairs.len() == self.0.len()
            && self
                .0
                .iter()
                .zip(pairs)
                .all(|(l, (n, v))| l.name == n && l.value == v)
    }

    /// Builds a label set from pairs, sorting them and dropping empty values.
    /// Later duplicates win; use [`Labels::try_from_pairs`] to reject them.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut v: Vec<Label> = pairs
            .into_iter()
            .map(|(n, v)| Label::new(n, v))
            .filter(|l| !l.value.is_empty())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(v.len());
        for l in v {
            match out.last_mut() {
                Some(last) if last.name == l.name => *last = l,
                _ => out.push(l),
            }
        }
        Self(out.into())
    }

    /// Builds and validates a label set as an ingest path must: names valid,
    /// no duplicates, a valid metric name, within `limits`.
    ///
    /// Takes owned strings (moved in) or borrowed ones (copied only once
    /// valid, e.g. slices of a remote_write request buffer).
    pub fn try_from_pairs<N, V>(
        pairs: impl IntoIterator<Item = (N, V)>,
        limits: &LabelLimits,
    ) -> Result<Self, LabelError>
    where
        N: AsRef<str> + Into<String>,
        V: AsRef<str> + Into<String>,
    {
        let pairs = pairs.into_iter();
        let mut v: Vec<Label> = Vec::with_capacity(pairs.size_hint().0);
        for (name, value) in pairs {
            let (n, val) = (name.as_ref(), value.as_ref());
            if n.len() > limits.max_name_len {
                return Err(LabelError::NameTooLong {
                    len: n.len(),
                    name: name.into(),
                    limit: limits.max_name_len,
                });
            }
            if val.len() > limits.max_value_len {
                return Err(LabelError::ValueTooLong {
                    len: val.len(),
                    name: name.into(),
                    limit: limits.max_value_len,
                });
            }
            if n != METRIC_NAME_LABEL && !is_valid_label_name(n) {
                return Err(LabelError::InvalidName(name.into()));
            }
            v.push(Label::new(name, value));
        }
        // Senders write labels sorted (Prometheus does); checking first
        // spares the sort on the common path.
        if !v.is_sorted_by(|a, b| a.name <= b.name) {
            v.sort_by(|a, b| a.name.cmp(&b.name));
        }
        for w in v.windows(2) {
            if w[0].name == w[1].name {
                return Err(LabelError::Duplicate(w[0].name.clone()));
            }
        }
        v.retain(|l| !l.value.is_empty());
        if v.len() > limits.max_labels {
            return Err(LabelError::TooMany {
                count: v.len(),
                limit: limits.max_labels,
            });
        }
        let labels = Self(v.into());
        match labels.get(METRIC_NAME_LABEL) {
            None => Err(LabelError::MissingMetricName),
            Some(n) if !is_valid_metric_name(n) => {
                Err(LabelError::InvalidMetricName(n.to_string()))
            }
            Some(_) => Ok(labels),
        }
    }

    /// Checks an already valid label set (a stored series named again)
    /// against `limits`, which may have been lowered since it was stored:
    /// the refusal [`Labels::try_from_pairs`] would give the same pairs.
    pub fn check_limits(&self, limits: &LabelLimits) -> Result<(), LabelError> {
        for l in self.0.iter() {
            if l.name.len() > limits.max_name_len {
                return Err(LabelError::NameTooLong {
                    len: l.name.len(),
                    name: l.name.clone(),
                    limit: limits.max_name_len,
                });
            }
            if l.value.len() > limits.max_value_len {
                return Err(LabelError::ValueTooLong {
                    len: l.value.len(),
                    name: l.name.clone(),
                    limit: limits.max_value_len,
                });
            }
        }
        if self.0.len() > limits.max_labels {
            return Err(LabelError::TooMany {
                count: self.0.len(),
                limit: limits.max_labels,
            });
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME_LABEL)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0.to_vec()
    }

    /// Sets (or with an empty value, removes) one label.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        let found = self.0.binary_search_by(|l| l.name.as_str().cmp(name));
        if found.is_err() && value.is_empty() {
            return;
        }
        let mut v = self.0.to_vec();
        match found {
            Ok(i) if value.is_empty() => {
                v.remove(i);
            }
            Ok(i) => v[i].value = value,
            Err(i) => v.insert(i, Label::new(name, value)),
        }
        self.0 = v.into();
    }

    pub fn remove(&mut self, name: &str) {
        self.set(name, "");
    }

    /// A copy without the metric name, as PromQL functions and aggregations
    /// produce.
    pub fn without_metric_name(&self) -> Self {
        Self(
            self.0
                .iter()
                .filter(|l| l.name != METRIC_NAME_LABEL)
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        )
    }

    /// Keeps only the named labels.
    pub fn keep(&self, names: &[String]) -> Self {
        Self(
            self.0
                .iter()
                .filter(|l| names.contains(&l.name))
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        )
    }

    /// Drops the named labels.
    pub fn drop_names(&self, names: &[String]) -> Self {
        Self(
            self.0
                .iter()
                .filter(|l| !names.contains(&l.name))
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        )
    }

    /// A stable 64-bit hash (FNV-1a over name, 0xff, value, 0xff...), used as
    /// an alert fingerprint and for sharding. Stable across versions and
    /// processes, unlike `std::hash`.
    pub fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for l in self.0.iter() {
            for b in l
                .name
                .bytes()
                .chain([0xff])
                .chain(l.value.bytes())
                .chain([0xff])
            {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}

impl fmt::Display for Labels {
    /// Prometheus's notation: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name().unwrap_or("");
        write!(f, "{name}{{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME_LABEL) {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(
                f,
                "{}=\"{}\"",
                l.name,
                crate::exposition::escape_label_value(&l.value)
            )?;
        }
        write!(f, "}}")
    }
}

impl FromIterator<Label> for Labels {
    fn from_iter<T: IntoIterator<Item = Label>>(iter: T) -> Self {
        Self::from_pairs(iter.into_iter().map(|l| (l.name, l.value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_empty_values_dropped() {
        let l = Labels::from_pairs([("b", "1"), ("a", "2"), ("c", "")]);
        let names: Vec<_> = l.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn validation_rejects_bad_input() {
        let lim = LabelLimits::default();
        let p = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            Labels::try_from_pairs(p(&[("__name__", "up"), ("a-b", "x")]), &lim),
            Err(LabelError::InvalidName("a-b".into()))
        );
        assert_eq!(
            Labels::try_from_pairs(p(&[("__name__", "up"), ("a", "x"), ("a", "y")]), &lim),
            Err(LabelError::Duplicate("a".into()))
        );
        assert_eq!(
            Labels::try_from_pairs(p(&[("__name__", ""), ("a", "x")]), &lim),
            Err(LabelError::MissingMetricName)
        );
        assert_eq!(
            Labels::try_from_pairs(p(&[("__name__", "1up")]), &lim),
            Err(LabelError::InvalidMetricName("1up".into()))
        );
        assert!(
            Labels::try_from_pairs(p(&[("__name__", "ns:up_total"), ("job", "x")]), &lim).is_ok()
        );
    }

    #[test]
    fn display_is_prometheus_notation() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a\"b")]);
        assert_eq!(l.to_string(), r#"up{job="a\"b"}"#);
    }
}
