//! Service discovery for the agent's `scrape:` jobs, with Prometheus's
//! configuration keys, file formats and self-metrics:
//!
//! - `static_configs`: target groups written in the configuration;
//! - `file_sd_configs` ([`file`]): JSON or YAML files of target groups,
//!   re-read when a file changes and every `refresh_interval`;
//! - `http_sd_configs` ([`http`]): an HTTP endpoint answering a JSON array
//!   of target groups, polled every `refresh_interval`.
//!
//! Each provider sends its whole current list of groups to the job's scrape
//! pool ([`crate::scrape::pool`]), which relabels them into targets and
//! starts and stops scrape loops. A provider that fails keeps its last good
//! groups and counts the failure (`prometheus_sd_file_read_errors_total`,
//! `prometheus_sd_http_failures_total`).

pub mod file;
pub mod http;

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use parking_lot::Mutex;
use regex::Regex;
use serde::Deserialize;

use crate::config::HumanDuration;

/// A target group as file and HTTP discovery deliver it:
/// `{"targets": ["host:port", …], "labels": {"name": "value", …}}`.
/// Unknown keys are ignored, as Prometheus's JSON decoding ignores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TargetGroup {
    /// `host:port` of each target (its `__address__`).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels of every target of the group.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl TargetGroup {
    /// Refuses label names Prometheus refuses.
    pub fn check(&self) -> Result<(), String> {
        for name in self.labels.keys() {
            if !vigil_wire::labels::is_valid_label_name(name) {
                return Err(format!("{name:?} is not a valid label name"));
            }
        }
        Ok(())
    }
}

/// Parses a list of target groups (JSON, or YAML when `yaml`); an empty
/// document is an empty list.
pub fn parse_groups(text: &str, yaml: bool) -> Result<Vec<TargetGroup>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let groups: Vec<Option<TargetGroup>> = if yaml {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    };
    let groups: Vec<TargetGroup> = groups.into_iter().flatten().collect();
    for g in &groups {
        g.check()?;
    }
    Ok(groups)
}

/// `static_configs` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` of each target.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels of every target of the group (relabeling sees them; those not
    /// starting with `__` end up on every series scraped from them).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `file_sd_configs` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Files of target groups: `*.json`, `*.yml` or `*.yaml`, with a `*`
    /// glob allowed in the last path element (`/etc/vigil-agent/targets/*.json`).
    /// A relative path is relative to the configuration file's directory.
    pub files: Vec<String>,
    /// Re-read every file this often even when none changed. Changes are
    /// seen sooner: the files' modification times and sizes (and the glob's
    /// matches) are checked every second. Default `5m`.
    #[serde(default = "default_file_refresh")]
    pub refresh_interval: HumanDuration,
}

/// `http_sd_configs` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSdConfig {
    /// Endpoint answering `200` with `Content-Type: application/json` and a
    /// JSON array of target groups. Any other answer counts in
    /// `prometheus_sd_http_failures_total` and the last good targets stay.
    pub url: String,
    /// How often the endpoint is asked. Default `60s`.
    #[serde(default = "default_http_refresh")]
    pub refresh_interval: HumanDuration,
}

fn default_file_refresh() -> HumanDuration {
    Duration::from_secs(300).into()
}

fn default_http_refresh() -> HumanDuration {
    Duration::from_secs(60).into()
}

/// Prometheus's check of a `files` entry: a `*` only in the last path
/// element, and a JSON or YAML extension.
static FILE_SD_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$")
        .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});

impl FileSdConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.files.is_empty() {
            return Err("file service discovery config must contain at least one path name".into());
        }
        for name in &self.files {
            if !FILE_SD_NAME.is_match(name) {
                return Err(format!(
                    "path name {name:?} is not valid for file discovery (a '*' only in the last path element, extension .json, .yml or .yaml)"
                ));
            }
        }
        if self.refresh_interval.0.is_zero() {
            return Err("refresh_interval must be greater than zero".into());
        }
        Ok(())
    }
}

impl HttpSdConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.url.is_empty() {
            return Err("URL is missing".into());
        }
        let url = reqwest::Url::parse(&self.url).map_err(|e| format!("url {:?}: {e}", self.url))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err("URL scheme must be 'http' or 'https'".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("host is missing in URL".into());
        }
        if self.refresh_interval.0.is_zero() {
            return Err("refresh_interval must be greater than zero".into());
        }
        Ok(())
    }
}

/// An update from one provider of a pool: its index and all its groups.
pub type Update = (usize, Vec<TargetGroup>);

/// Discovery counters, shared by every pool of one agent run.
#[derive(Debug, Default)]
pub struct SdStats {
    /// `prometheus_sd_file_read_errors_total`.
    pub file_read_errors: AtomicU64,
    /// `prometheus_sd_http_failures_total`.
    pub http_failures: AtomicU64,
    /// `prometheus_sd_file_mtime_seconds{filename}`: mtime of each file as
    /// last read.
    pub file_mtimes: Mutex<BTreeMap<String, f64>>,
}
