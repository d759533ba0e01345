//! Prometheus rule files for Vigil: parsing and validation, templates,
//! evaluation with Prometheus's alert state machine, state restore across
//! restarts, atomic reload, the rules/alerts API JSON, and the
//! `check rules` / `test rules` commands (promtool's formats).
//!
//! Lifecycle, as the collector wires it:
//!
//! 1. [`load_rule_files`] validates a whole set of files (YAML structure
//!    with positions, PromQL, templates, names) into a [`RuleSet`];
//! 2. [`RuleManager::new`] + [`RuleManager::update`] install it (a rejected
//!    reload simply never reaches `update`, so the old rules keep running);
//! 3. [`RuleManager::run`] evaluates each group on its interval, writing
//!    recorded series, `ALERTS` and `ALERTS_FOR_STATE` through a
//!    [`SampleAppender`] and alerts through an [`AlertSender`].
//!
//! [`check_rules`] and [`test_rules`] are the CLI commands.
//!
//! ```
//! // Errors point at the offending YAML node, as promtool's do.
//! let text = "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: up ==\n";
//! let Err(errs) = vigil_rules::parse_rules("r.yml", text) else { panic!("invalid") };
//! assert_eq!((errs[0].line, errs[0].column), (5, 15));
//! assert!(errs[0].to_string().starts_with("r.yml: 5:15: group \"g\", rule 1, \"X\": could not parse expression"));
//! ```

pub mod alerting;
pub mod api;
pub mod backtest;
mod check;
pub mod duration;
pub mod file;
pub mod group;
mod manager;
pub mod slo;
pub mod template;
mod unittest;

use std::collections::BTreeMap;

use vigil_wire::{Labels, Sample};

pub use alerting::{Alert, AlertState, AlertingRule};
pub use api::RuleTypeFilter;
pub use check::{LINT_ERROR_EXIT, Lint, check_rules, check_rules_with};
pub use file::{
    GroupSpec, RuleFileError, RuleKind, RuleSet, RuleSpec, load_rule_files, parse_rules,
};
pub use manager::{ManagerOptions, RuleManager};
pub use unittest::test_rules;

/// Where rule output (recorded series, `ALERTS`, `ALERTS_FOR_STATE`, stale
/// markers) is written. Writes must be visible to the manager's
/// `Queryable` before `append` returns, so later rules of the same group
/// see earlier rules' output.
pub trait SampleAppender: Send + Sync {
    fn append(&self, samples: Vec<(Labels, Sample)>) -> Result<(), String>;
}

/// Where alerts go (the alerting pipeline or an external Alertmanager).
pub trait AlertSender: Send + Sync {
    fn send(&self, alerts: Vec<OutgoingAlert>);
}

/// An alert as sent, with Prometheus's notifier semantics: firing alerts
/// are re-sent every `resend_delay` with `ends_at = now + 4 ×
/// max(resend_delay, group interval)`; resolved alerts carry the resolve
/// time as `ends_at`. External labels are already added.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingAlert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub starts_at_ms: i64,
    pub ends_at_ms: Option<i64>,
    pub generator_url: String,
    /// The expression's value when the alert was sent (kept as the
    /// incident's peak value by alerting).
    pub value: Option<f64>,
}
