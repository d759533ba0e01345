//! Alerts: the v2 API's postable shape, the stored form, and Alertmanager's
//! rules for defaulting, validating, merging and ordering them.

use std::cmp::Ordering;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::matchers::{LabelSet, fingerprint};

/// An alert as the rule engine or Prometheus posts it (`/api/v2/alerts`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct PostableAlert {
    pub labels: LabelSet,
    #[serde(default)]
    pub annotations: LabelSet,
    #[serde(
        rename = "startsAt",
        default,
        with = "opt_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(
        rename = "endsAt",
        default,
        with = "opt_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(
        rename = "generatorURL",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub generator_url: String,
}

/// An alert as held by Vigil.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: LabelSet,
    pub annotations: LabelSet,
    #[serde(with = "go_time")]
    pub starts_at: DateTime<Utc>,
    #[serde(with = "go_time")]
    pub ends_at: DateTime<Utc>,
    pub generator_url: String,
    #[serde(with = "go_time")]
    pub updated_at: DateTime<Utc>,
    /// The end time was not given and is `now + resolve_timeout`.
    pub timeout: bool,
    pub fingerprint: u64,
}

impl Alert {
    /// Applies the v2 API's defaults: a missing start is now (or the end),
    /// a missing end is `now + resolve_timeout` with the timeout flag set.
    /// Labels with empty values are dropped, as Prometheus does.
    pub fn from_postable(
        p: PostableAlert,
        now: DateTime<Utc>,
        resolve_timeout: chrono::Duration,
    ) -> Result<Self, String> {
        let labels: LabelSet = p
            .labels
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if labels.is_empty() {
            return Err("at least one label pair required".into());
        }
        for name in labels.keys() {
            if !vigil_wire::labels::is_valid_label_name(name) {
                return Err(format!("invalid label name {name:?}"));
            }
        }
        let starts_at = match (p.starts_at, p.ends_at) {
            (Some(s), _) => s,
            (None, Some(e)) => e,
            (None, None) => now,
        };
        let (ends_at, timeout) = match p.ends_at {
            Some(e) => (e, false),
            None => (now + resolve_timeout, true),
        };
        if ends_at < starts_at {
            return Err("start time must be before end time".into());
        }
        let fingerprint = fingerprint(&labels);
        Ok(Self {
            labels,
            annotations: p.annotations,
            starts_at,
            ends_at,
            generator_url: p.generator_url,
            updated_at: now,
            timeout,
            fingerprint,
        })
    }

    /// Resolved at `t`: the end time is not after `t`.
    pub fn resolved_at(&self, t: DateTime<Utc>) -> bool {
        self.ends_at <= t
    }

    pub fn status_at(&self, t: DateTime<Utc>) -> &'static str {
        if self.resolved_at(t) {
            "resolved"
        } else {
            "firing"
        }
    }

    /// Alertmanager's `Alert.Merge`: `other` is the newer update unless its
    /// `updated_at` says otherwise; the earliest start wins, and an explicit
    /// end time beats a timeout one.
    pub fn merge(&self, other: &Alert, now: DateTime<Utc>) -> Alert {
        if other.updated_at < self.updated_at {
            return other.merge(self, now);
        }
        let mut res = other.clone();
        if self.starts_at < other.starts_at {
            res.starts_at = self.starts_at;
        }
        if other.resolved_at(now) {
            if self.resolved_at(now) && self.ends_at > other.ends_at {
                res.ends_at = self.ends_at;
            }
        } else if self.ends_at > other.ends_at && !self.timeout {
            res.ends_at = self.ends_at;
        }
        res
    }

    /// Whether the new alert overlaps this one's activity so that they
    /// describe the same occurrence (otherwise the new one replaces it).
    pub fn overlaps(&self, new: &Alert) -> bool {
        (new.ends_at > self.starts_at && new.ends_at < self.ends_at)
            || (new.starts_at > self.starts_at && new.starts_at < self.ends_at)
    }
}

/// Alertmanager's `AlertSlice` order: by `job`, then `instance`, then the
/// label sets (alerts lacking a key sort after those that have it).
pub fn notification_order(a: &LabelSet, b: &LabelSet) -> Ordering {
    for key in ["job", "instance"] {
        match (a.get(key), b.get(key)) {
            (None, None) => continue,
            (None, Some(_)) => return Ordering::Greater,
            (Some(_), None) => return Ordering::Less,
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => {}
        }
    }
    labelset_before(a, b)
}

/// `model.LabelSet.Before`: compare sorted names pairwise, then values,
/// then length.
fn labelset_before(a: &LabelSet, b: &LabelSet) -> Ordering {
    for ((ka, va), (kb, vb)) in a.iter().zip(b.iter()) {
        match ka.cmp(kb) {
            Ordering::Equal => {}
            o => return o,
        }
        match va.cmp(vb) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

/// Go's `time.Time` JSON form (RFC 3339 with up to nanoseconds, trailing
/// zeros trimmed, `Z` for UTC), and its zero value `0001-01-01T00:00:00Z`.
pub fn format_go_time(t: &DateTime<Utc>) -> String {
    let base = t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        return base;
    }
    let frac = format!("{nanos:09}");
    let frac = frac.trim_end_matches('0');
    // `base` ends in "Z": splice the fraction in before it.
    format!("{}.{frac}Z", &base[..base.len() - 1])
}

/// Go's zero time, which Alertmanager puts in `endsAt` of firing alerts.
pub fn go_zero_time() -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|n| n.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub fn is_go_zero(t: &DateTime<Utc>) -> bool {
    *t == go_zero_time()
}

pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("invalid time {s:?}: {e}"))
}

/// Serde helpers for [`format_go_time`].
pub mod go_time {
    use super::*;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_go_time(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        parse_time(&s).map_err(serde::de::Error::custom)
    }
}

/// Optional times; Go's zero time and `null` both mean "not set".
pub mod opt_time {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format_go_time(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => {
                let t = parse_time(&s).map_err(serde::de::Error::custom)?;
                Ok(if is_go_zero(&t) { None } else { Some(t) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).expect("valid test time")
    }

    #[test]
    fn defaults_follow_the_v2_api() {
        let now = t("2024-01-01T00:00:00Z");
        let a = Alert::from_postable(
            PostableAlert {
                labels: ls(&[("alertname", "X"), ("empty", "")]),
                ..Default::default()
            },
            now,
            chrono::Duration::minutes(5),
        )
        .expect("valid alert");
        assert_eq!(a.starts_at, now);
        assert!(a.timeout);
        assert_eq!(a.ends_at, t("2024-01-01T00:05:00Z"));
        assert!(!a.labels.contains_key("empty"));
        assert!(
            Alert::from_postable(PostableAlert::default(), now, chrono::Duration::minutes(5))
                .is_err()
        );
    }

    #[test]
    fn go_time_format() {
        assert_eq!(format_go_time(&go_zero_time()), "0001-01-01T00:00:00Z");
        assert_eq!(
            format_go_time(&t("2024-01-01T00:00:00.120Z")),
            "2024-01-01T00:00:00.12Z"
        );
        assert_eq!(
            format_go_time(&t("2024-01-01T01:00:00+01:00")),
            "2024-01-01T00:00:00Z"
        );
    }

    #[test]
    fn merge_keeps_earliest_start_and_explicit_end() {
        let now = t("2024-01-01T00:10:00Z");
        let base = |s: &str, e: &str, u: &str, timeout: bool| Alert {
            labels: ls(&[("a", "b")]),
            annotations: LabelSet::new(),
            starts_at: t(s),
            ends_at: t(e),
            generator_url: String::new(),
            updated_at: t(u),
            timeout,
            fingerprint: 1,
        };
        let old = base(
            "2024-01-01T00:00:00Z",
            "2024-01-01T01:00:00Z",
            "2024-01-01T00:05:00Z",
            false,
        );
        let new = base(
            "2024-01-01T00:08:00Z",
            "2024-01-01T00:15:00Z",
            "2024-01-01T00:09:00Z",
            true,
        );
        assert!(old.overlaps(&new));
        let m = old.merge(&new, now);
        assert_eq!(m.starts_at, t("2024-01-01T00:00:00Z"));
        assert_eq!(m.ends_at, t("2024-01-01T01:00:00Z"));
        assert_eq!(m.updated_at, t("2024-01-01T00:09:00Z"));
    }

    #[test]
    fn ordering_by_job_then_instance() {
        let mut v = [
            ls(&[("alertname", "a"), ("instance", "2")]),
            ls(&[("alertname", "a")]),
            ls(&[("alertname", "a"), ("instance", "1")]),
            ls(&[("alertname", "a"), ("job", "z")]),
        ];
        v.sort_by(notification_order);
        assert_eq!(v[0].get("job").map(String::as_str), Some("z"));
        assert_eq!(v[1].get("instance").map(String::as_str), Some("1"));
        assert_eq!(v[2].get("instance").map(String::as_str), Some("2"));
        assert_eq!(v[3].len(), 1);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn go_time_round_trips(secs in 0i64..4_000_000_000, nanos in 0u32..1_000_000_000) {
            let t = DateTime::from_timestamp(secs, nanos).expect("in range");
            let s = format_go_time(&t);
            prop_assert!(s.ends_with('Z'));
            prop_assert!(!s.contains(".") || !s.trim_end_matches('Z').ends_with('0'), "trailing zeros trimmed: {}", s);
            prop_assert_eq!(parse_time(&s), Ok(t));
        }
    }
}
