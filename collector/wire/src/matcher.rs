//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus's semantics:
//! regexes are fully anchored, and a missing label matches as the empty
//! string.

use std::fmt;

use regex::Regex;
use thiserror::Error;

use crate::labels::Labels;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        }
    }
}

#[derive(Debug, Error)]
#[error("invalid regular expression {pattern:?}: {reason}")]
pub struct MatcherError {
    pub pattern: String,
    pub reason: String,
}

/// One label matcher. Regex matchers hold their compiled, anchored regex.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl Matcher {
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let value = value.into();
        let regex = match op {
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => Some(
                Regex::new(&format!("^(?s:{value})$")).map_err(|e| MatcherError {
                    pattern: value.clone(),
                    reason: e.to_string(),
                })?,
            ),
            _ => None,
        };
        Ok(Self {
            name: name.into(),
            op,
            value,
            regex,
        })
    }

    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            regex: None,
        }
    }

    /// Whether a label value (empty when the label is absent) matches.
    pub fn matches_value(&self, v: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::RegexMatch, Some(r)) => r.is_match(v),
            (MatchOp::RegexNoMatch, Some(r)) => !r.is_match(v),
            // Regex ops are always built with a regex by `new`.
            (_, None) => false,
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).unwrap_or(""))
    }

    /// True when the matcher also matches series lacking the label, which an
    /// inverted index cannot enumerate directly.
    pub fn matches_empty(&self) -> bool {
        self.matches_value("")
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}\"{}\"",
            self.name,
            self.op.as_str(),
            crate::exposition::escape_label_value(&self.value)
        )
    }
}

/// True when every matcher matches.
pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored_and_absent_is_empty() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
        assert!(
            Matcher::new("job", MatchOp::RegexMatch, "no.*")
                .expect("ok")
                .matches(&l)
        );
        assert!(
            !Matcher::new("job", MatchOp::RegexMatch, "no")
                .expect("ok")
                .matches(&l)
        );
        assert!(
            Matcher::new("absent", MatchOp::Equal, "")
                .expect("ok")
                .matches(&l)
        );
        assert!(
            Matcher::new("absent", MatchOp::RegexMatch, ".*")
                .expect("ok")
                .matches_empty()
        );
        assert!(
            !Matcher::new("job", MatchOp::NotEqual, "node")
                .expect("ok")
                .matches(&l)
        );
        assert!(Matcher::new("x", MatchOp::RegexMatch, "(").is_err());
    }
}
