//! Escalation rules, a Vigil extension configured in `vigil.yml` (never in
//! the Alertmanager file, which stays loadable by Alertmanager):
//!
//! ```yaml
//! alerting:
//!   escalations:
//!     - matchers: ['severity="page"']
//!       after: 15m
//!       receiver: oncall-manager
//! ```
//!
//! An alert still firing and not acknowledged `after` its start is sent
//! once to `receiver` (which must be a receiver of the Alertmanager
//! configuration), and the escalation is recorded on its incident. Each
//! rule escalates an episode at most once; silenced and inhibited alerts do
//! not escalate.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;
use vigil_wire::Matcher;

use crate::config::{AlertingConfig, ConfigError, PromDuration};
use crate::matchers::{LabelSet, matches_all, parse_matchers};

/// One rule as written in `vigil.yml` (`alerting.escalations[]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Alertmanager matchers (`severity="page"`, `team=~"db|api"`) the
    /// alert's labels must all match; none matches every alert.
    #[serde(default)]
    pub matchers: Vec<Spanned<String>>,
    /// How long after the alert's start an unacknowledged alert escalates.
    pub after: Spanned<PromDuration>,
    /// The receiver of the Alertmanager configuration to notify.
    pub receiver: Spanned<String>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct EscalationRule {
    /// Identifies the rule on incidents: matchers, delay and receiver, so
    /// reordering rules does not escalate an episode twice.
    pub key: String,
    pub matchers: Vec<Matcher>,
    pub after: Duration,
    pub receiver: String,
}

impl EscalationRule {
    pub fn matches(&self, labels: &LabelSet) -> bool {
        matches_all(&self.matchers, labels)
    }

    /// `after` as written in configurations (`15m`).
    pub fn after_text(&self) -> String {
        PromDuration(self.after).to_string()
    }
}

fn at<T>(file: &str, s: &Spanned<T>, reason: String) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        line: s.referenced.line(),
        column: s.referenced.column(),
        reason,
    }
}

/// Checks the rules of `file` (matchers parse; every receiver exists in
/// the Alertmanager configuration `am`) and builds them.
pub fn build(
    cfgs: &[EscalationConfig],
    am: &AlertingConfig,
    file: &str,
) -> Result<Vec<EscalationRule>, ConfigError> {
    let mut out = Vec::with_capacity(cfgs.len());
    for (n, c) in cfgs.iter().enumerate() {
        let mut matchers = Vec::new();
        for m in &c.matchers {
            let parsed = parse_matchers(&m.value)
                .map_err(|e| at(file, m, format!("alerting.escalations[{n}].matchers: {e}")))?;
            matchers.extend(parsed);
        }
        let receiver = c.receiver.value.clone();
        if !am.receivers.iter().any(|r| r.name.value == receiver) {
            let source = am
                .source
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the built-in default (no --alerting-config)".into());
            return Err(at(
                file,
                &c.receiver,
                format!(
                    "alerting.escalations[{n}].receiver: no receiver named {receiver:?} in the Alertmanager configuration {source}"
                ),
            ));
        }
        let mut texts: Vec<String> = c.matchers.iter().map(|m| m.value.clone()).collect();
        texts.sort();
        let after = c.after.value.0;
        out.push(EscalationRule {
            key: format!(
                "{{{}}} after {} to {receiver}",
                texts.join(", "),
                PromDuration(after)
            ),
            matchers,
            after,
            receiver,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        escalations: Vec<EscalationConfig>,
    }

    fn am() -> AlertingConfig {
        crate::parse_config(
            "route:\n  receiver: team\nreceivers:\n  - name: team\n  - name: manager\n",
            "am.yml",
        )
        .expect("valid alerting config")
    }

    fn parse(text: &str) -> Vec<EscalationConfig> {
        serde_saphyr::from_str::<Doc>(text)
            .expect("parses")
            .escalations
    }

    #[test]
    fn builds_rules_and_matches_labels() {
        let cfg = parse(
            "escalations:\n  - matchers: ['severity=\"page\"', 'team=~\"db|api\"']\n    after: 15m\n    receiver: manager\n",
        );
        let rules = build(&cfg, &am(), "vigil.yml").expect("valid");
        assert_eq!(rules.len(), 1);
        let r = &rules[0];
        assert_eq!(r.after, Duration::from_secs(900));
        assert_eq!(r.after_text(), "15m");
        let labels = |pairs: &[(&str, &str)]| -> LabelSet {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(r.matches(&labels(&[("severity", "page"), ("team", "db")])));
        assert!(!r.matches(&labels(&[("severity", "page"), ("team", "web")])));
        assert_eq!(
            r.key,
            "{severity=\"page\", team=~\"db|api\"} after 15m to manager"
        );
    }

    #[test]
    fn unknown_receiver_is_refused_with_its_line() {
        let cfg = parse("escalations:\n  - matchers: []\n    after: 1m\n    receiver: nobody\n");
        let err = build(&cfg, &am(), "vigil.yml").expect_err("refused");
        assert_eq!(err.line, 4, "{err}");
        assert!(err.reason.contains("\"nobody\""), "{err}");
        assert!(err.to_string().starts_with("vigil.yml:4:"), "{err}");
    }

    #[test]
    fn bad_matcher_is_refused_with_its_line() {
        let cfg = parse(
            "escalations:\n  - after: 1m\n    receiver: team\n    matchers:\n      - 'severity=~\"(\"'\n",
        );
        let err = build(&cfg, &am(), "vigil.yml").expect_err("refused");
        assert_eq!(err.line, 5, "{err}");
        assert!(err.reason.contains("matchers"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let r = serde_saphyr::from_str::<Doc>(
            "escalations:\n  - after: 1m\n    receiver: team\n    reciever: x\n",
        );
        assert!(r.is_err());
    }
}
