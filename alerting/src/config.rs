//! The Alertmanager configuration file, read unchanged.
//!
//! Every struct mirrors Alertmanager 0.25's schema with
//! `deny_unknown_fields`, so a misspelt key is rejected at load with
//! `file:line:col: reason` instead of being ignored. Every integration of
//! Alertmanager 0.25 is delivered, plus `msteams_configs` as Alertmanager
//! 0.26 defines it; a setting Vigil cannot honour (OAuth2, SNS role_arn) is
//! refused at load naming the receiver, never accepted and then dropped.
//!
//! Opt-in extensions (an Alertmanager file never contains them):
//! `vigil_rate_limit` and `vigil_sms_configs` on a receiver and
//! `vigil_repeat_backoff` on a route; see `alerting/README.md`.

mod receivers;
mod types;

use std::path::{Path, PathBuf};

pub use receivers::*;
use serde_saphyr::Spanned;
use thiserror::Error;
pub use types::*;

use crate::timeinterval::TimeIntervalSet;

/// A configuration problem, located in its file.
#[derive(Debug, Clone, Error)]
#[error("{file}:{line}:{column}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub reason: String,
}

/// What `vigil check config` prints about a valid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub receivers: usize,
    pub routes: usize,
    pub inhibit_rules: usize,
    pub time_intervals: usize,
    pub templates: usize,
}

/// Reads, parses and validates an Alertmanager configuration file.
pub fn load_config(path: &Path) -> Result<AlertingConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        reason: format!("cannot read: {e}"),
    })?;
    let mut cfg = parse_config(&text, &path.display().to_string())?;
    cfg.source = Some(path.to_path_buf());
    Ok(cfg)
}

/// Validates a file and summarises it for `vigil check config`: the same
/// checks a start runs (receivers built, templates read and parsed).
pub fn check_config(path: &Path) -> Result<Summary, ConfigError> {
    let cfg = load_config(path)?;
    let summary = cfg.summary();
    crate::dispatch::Runtime::new(cfg, std::time::Duration::from_secs(10)).map_err(|reason| {
        ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            reason,
        }
    })?;
    Ok(summary)
}

/// Parses configuration text; `file` names it in errors.
pub fn parse_config(text: &str, file: &str) -> Result<AlertingConfig, ConfigError> {
    let mut cfg: AlertingConfig = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        ConfigError {
            file: file.to_string(),
            line,
            column,
            reason: plain_reason(&e.without_snippet().to_string()),
        }
    })?;
    cfg.original = text.to_string();
    cfg.validate(file)?;
    Ok(cfg)
}

/// serde-saphyr renders `error: line L column C: reason` plus a snippet;
/// the location is reported separately, so keep only the reason.
fn plain_reason(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or(rendered);
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let reason = match first.strip_prefix("line ") {
        Some(rest) => match rest.find(": ") {
            Some(pos) => &rest[pos + 2..],
            None => first,
        },
        None => first,
    };
    user_words(reason)
}

/// Rewrites the parser's Rust vocabulary (`Option<String>`, `u64`, "at
/// line L, column C" already reported separately) in YAML terms.
fn user_words(reason: &str) -> String {
    let mut r = reason.to_string();
    if let Some(pos) = r.find(" at line ") {
        r.truncate(pos);
    }
    if let Some(pos) = r.find("; use Option<") {
        r.truncate(pos);
    }
    for (rust, yaml) in [
        (
            "cannot deserialize null into ",
            "a value is required here (found null); expected ",
        ),
        ("Option<String>", "a string"),
        ("Vec<String>", "a list of strings"),
        ("String", "string"),
        ("u64", "a non-negative integer"),
        ("i64", "an integer"),
        ("usize", "a non-negative integer"),
        ("f64", "a number"),
        ("struct ", ""),
        ("enum ", ""),
        ("::", "."),
    ] {
        r = r.replace(rust, yaml);
    }
    r
}

fn located<T>(file: &str, s: &Spanned<T>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        line: s.referenced.line(),
        column: s.referenced.column(),
        reason: reason.into(),
    }
}

impl AlertingConfig {
    /// The configuration used without `--alerting-config`: one receiver
    /// without integrations, so alerts are visible in the API but go nowhere.
    pub fn default_config() -> Self {
        let text = "route:\n  receiver: default\nreceivers:\n  - name: default\n";
        // The embedded text is a fixed valid document; parsing cannot fail.
        parse_config(text, "<default>").expect("embedded default configuration is valid")
    }

    /// Counts what the file defines.
    pub fn summary(&self) -> Summary {
        fn count(r: &RouteConfig) -> usize {
            1 + r.routes.iter().map(count).sum::<usize>()
        }
        Summary {
            receivers: self.receivers.len(),
            routes: count(&self.route),
            inhibit_rules: self.inhibit_rules.len(),
            time_intervals: self.time_intervals.len() + self.mute_time_intervals.len(),
            templates: self.templates.len(),
        }
    }

    /// All named time intervals (`time_intervals` and the deprecated
    /// `mute_time_intervals` block).
    pub fn interval_sets(&self) -> impl Iterator<Item = &TimeIntervalSet> {
        self.time_intervals
            .iter()
            .chain(self.mute_time_intervals.iter())
    }

    fn validate(&mut self, file: &str) -> Result<(), ConfigError> {
        let g = &self.global;
        for (inline, from_file, what) in [
            (
                g.smtp_auth_password.is_some(),
                g.smtp_auth_password_file.is_some(),
                "smtp_auth_password & smtp_auth_password_file",
            ),
            (
                g.slack_api_url.is_some(),
                g.slack_api_url_file.is_some(),
                "slack_api_url & slack_api_url_file",
            ),
            (
                g.opsgenie_api_key.is_some(),
                g.opsgenie_api_key_file.is_some(),
                "opsgenie_api_key & opsgenie_api_key_file",
            ),
            (
                g.victorops_api_key.is_some(),
                g.victorops_api_key_file.is_some(),
                "victorops_api_key & victorops_api_key_file",
            ),
        ] {
            if inline && from_file {
                return Err(ConfigError {
                    file: file.to_string(),
                    line: 1,
                    column: 1,
                    reason: format!("at most one of {what} must be configured"),
                });
            }
        }
        let mut names = std::collections::HashSet::new();
        for r in &self.receivers {
            if r.name.value.is_empty() {
                return Err(located(file, &r.name, "missing name in receiver"));
            }
            if !names.insert(r.name.value.clone()) {
                return Err(located(
                    file,
                    &r.name,
                    format!("notification config name {:?} is not unique", r.name.value),
                ));
            }
            r.validate(file, &self.global)?;
        }
        let mut intervals = std::collections::HashSet::new();
        for t in self.interval_sets() {
            if !intervals.insert(t.name.value.clone()) {
                return Err(located(
                    file,
                    &t.name,
                    format!("time interval {:?} is not unique", t.name.value),
                ));
            }
        }
        let Some(recv) = &self.route.receiver else {
            return Err(ConfigError {
                file: file.to_string(),
                line: 1,
                column: 1,
                reason: "root route must specify a default receiver".into(),
            });
        };
        let _ = recv;
        if self.route.continue_matching {
            return Err(ConfigError {
                file: file.to_string(),
                line: 1,
                column: 1,
                reason: "cannot have continue in root route".into(),
            });
        }
        if !self.route.all_matchers().is_empty() {
            return Err(ConfigError {
                file: file.to_string(),
                line: 1,
                column: 1,
                reason: "root route must not have any matchers".into(),
            });
        }
        if !self.route.mute_time_intervals.is_empty()
            || !self.route.active_time_intervals.is_empty()
        {
            return Err(ConfigError {
                file: file.to_string(),
                line: 1,
                column: 1,
                reason: "root route must not have any mute or active time intervals".into(),
            });
        }
        check_route(&self.route, file, &names, &intervals)?;
        Ok(())
    }
}

fn check_route(
    r: &RouteConfig,
    file: &str,
    receivers: &std::collections::HashSet<String>,
    intervals: &std::collections::HashSet<String>,
) -> Result<(), ConfigError> {
    if let Some(recv) = &r.receiver
        && !receivers.contains(&recv.value)
    {
        return Err(located(
            file,
            recv,
            format!("undefined receiver {:?} used in route", recv.value),
        ));
    }
    for t in r
        .mute_time_intervals
        .iter()
        .chain(r.active_time_intervals.iter())
    {
        if !intervals.contains(&t.value) {
            return Err(located(
                file,
                t,
                format!("undefined time interval {:?} used in route", t.value),
            ));
        }
    }
    if let Some(g) = &r.group_by {
        let all = g.value.iter().any(|n| n == "...");
        if all && g.value.len() > 1 {
            return Err(located(
                file,
                g,
                "cannot have wildcard group_by (`...`) and other labels at the same time",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for n in &g.value {
            if n != "..." && !vigil_wire::labels::is_valid_label_name(n) {
                return Err(located(
                    file,
                    g,
                    format!("invalid label name {n:?} in group_by list"),
                ));
            }
            if !seen.insert(n) {
                return Err(located(
                    file,
                    g,
                    format!("duplicated label {n:?} in group_by"),
                ));
            }
        }
    }
    if let Some(gi) = &r.group_interval
        && gi.value.is_zero()
    {
        return Err(located(file, gi, "group_interval cannot be zero"));
    }
    if let Some(ri) = &r.repeat_interval
        && ri.value.is_zero()
    {
        return Err(located(file, ri, "repeat_interval cannot be zero"));
    }
    for c in &r.routes {
        check_route(c, file, receivers, intervals)?;
    }
    Ok(())
}

/// Reads a `*_file` secret, trimming the trailing newline editors add.
pub fn read_secret_file(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?
        .trim_end_matches(['\n', '\r'])
        .to_string())
}

/// Where a configuration came from, if a file.
pub type SourcePath = Option<PathBuf>;

#[cfg(test)]
mod tests;
