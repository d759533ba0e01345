//! The collector's configuration: a YAML file whose every field is optional,
//! overridden by command-line flags, with embedded defaults that run Vigil
//! with no file at all.
//!
//! Durations are written as Prometheus users write them (`30s`, `5m`, `15d`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// A duration in Prometheus notation (`1h30m`, `15d`, `250ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromDuration(pub Duration);

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(PromDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses Prometheus's duration notation: one or more `<number><unit>` with
/// units `ms`, `s`, `m`, `h`, `d`, `w`, `y` (365 days), largest first.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total_ms: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("invalid duration {s:?}: expected a number"));
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        let ms: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(format!("invalid duration {s:?}: unknown unit {unit:?}")),
        };
        total_ms = total_ms
            .checked_add(
                n.checked_mul(ms)
                    .ok_or_else(|| format!("duration {s:?} overflows"))?,
            )
            .ok_or_else(|| format!("duration {s:?} overflows"))?;
        rest = &rest[unit_len..];
    }
    let ms = u64::try_from(total_ms).map_err(|_| format!("duration {s:?} overflows"))?;
    Ok(Duration::from_millis(ms))
}

/// A size in bytes, written as `512MB`, `10GiB` or a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => parse_bytes(&s)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.bytes().take_while(|b| b.is_ascii_digit()).count();
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match s[digits..].trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        u => return Err(format!("invalid size {s:?}: unknown unit {u:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} overflows"))
}

/// The whole collector configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Directory holding the database, the alerting state and models.
    pub data_dir: PathBuf,
    /// The externally reachable URL of this collector (used in alert links).
    pub external_url: Option<String>,
    /// Labels added to alerts and to remote-written series, as Prometheus's
    /// `global.external_labels`.
    pub external_labels: std::collections::BTreeMap<String, String>,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub query: QueryConfig,
    pub rules: RulesConfig,
    /// Path to an Alertmanager configuration file, taken unchanged.
    pub alerting_config: Option<PathBuf>,
    pub auth: AuthConfig,
    /// Serve HTTPS instead of HTTP.
    pub tls: Option<TlsConfig>,
    /// Forward every accepted sample to these Prometheus-compatible
    /// receivers, through a durable on-disk queue each.
    pub remote_write: Vec<crate::remote::RemoteWriteConfig>,
    /// LLM spend budgets and provider quotas, written as series for the
    /// default pack's budget and quota rules.
    pub llm: crate::budget::LlmConfig,
    /// Liveness of the agents that push: `up` and
    /// `vigil_agent_last_push_timestamp_seconds` per agent.
    pub agents: AgentsConfig,
    /// Reports: the scheduled digest by email and Slack.
    pub reports: crate::report::digest::ReportsConfig,
    /// The alerting cluster, from the `--cluster-*` flags (not in the file).
    #[serde(skip)]
    pub cluster: Option<vigil_cluster::ClusterOptions>,
    /// Vigil's alerting extensions, kept out of the Alertmanager file so
    /// that file stays loadable by Alertmanager.
    pub alerting: AlertingSection,
    /// The file this configuration was read from (for error messages).
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// OTLP/gRPC beside `POST /v1/metrics` (see `collector/src/otlp.rs`).
    pub otlp: OtlpConfig,
}

/// `alerting:` in `vigil.yml` (see `alerting/README.md`, "Incidents,
/// acknowledgements and escalation").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingSection {
    /// Send an alert still firing and unacknowledged this long after its
    /// start to another receiver of the Alertmanager configuration, once
    /// per episode: `[{matchers: ['severity="page"'], after: 15m, receiver: manager}]`.
    pub escalations: Vec<vigil_alerting::escalation::EscalationConfig>,
    /// Incidents that ended longer ago than this are deleted (default 90d).
    pub incident_retention: PromDuration,
    /// External Alertmanagers that also receive every alert the rules
    /// raise (Prometheus's `alerting.alertmanagers`).
    pub alertmanagers: Vec<crate::notifier::AlertmanagerConfig>,
}

impl AlertingSection {
    /// The external Alertmanagers, as the notifier takes them.
    pub fn external(&self) -> crate::notifier::AlertmanagersSection {
        crate::notifier::AlertmanagersSection {
            alertmanagers: self.alertmanagers.clone(),
        }
    }
}

impl Default for AlertingSection {
    fn default() -> Self {
        Self {
            escalations: Vec::new(),
            incident_retention: PromDuration(Duration::from_secs(90 * 86_400)),
            alertmanagers: Vec::new(),
        }
    }
}

impl Config {
    /// The name of the configuration file, as errors show it.
    pub fn source_name(&self) -> String {
        self.source
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<flags>".into())
    }

    /// The escalation rules, checked against the Alertmanager
    /// configuration's receivers (refused with file, line and reason).
    pub fn escalations(
        &self,
        am: &vigil_alerting::AlertingConfig,
    ) -> Result<Vec<vigil_alerting::escalation::EscalationRule>, String> {
        vigil_alerting::escalation::build(&self.alerting.escalations, am, &self.source_name())
            .map_err(|e| e.to_string())
    }
}

/// OTLP/gRPC (`MetricsService/Export`, gzip or not), with the same
/// translation, limits and ingest tokens as `POST /v1/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Serve OTLP/gRPC. Default true; without `grpc_listen`, off when `tls`
    /// is set (gRPC is served in plain HTTP/2 only).
    pub grpc: bool,
    /// Address of the gRPC listener (plain HTTP/2). Default: the `listen`
    /// address with port 4317; when that default is taken the collector
    /// logs an error and serves HTTP only, while an address set here must
    /// bind or the collector does not start.
    pub grpc_listen: Option<SocketAddr>,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            grpc: true,
            grpc_listen: None,
        }
    }
}

/// How pushing agents are watched (see `collector/src/agents.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// An agent is down (`up` 0, and `AgentDown` fires) once no push has
    /// arrived for this many of its observed push intervals. Default 4: an
    /// agent pushing every 15 s is down after 60 s of silence.
    pub down_after_intervals: f64,
    /// The push interval assumed for an agent until two of its pushes have
    /// been seen. Default 1m.
    pub initial_interval: PromDuration,
    /// How often the deadlines are checked and `up` and the last push time
    /// are written for every agent (and the state saved). Default 5s.
    pub check_interval: PromDuration,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            down_after_intervals: 4.0,
            initial_interval: PromDuration(Duration::from_secs(60)),
            check_interval: PromDuration(Duration::from_secs(5)),
        }
    }
}

impl AgentsConfig {
    pub fn options(&self) -> crate::agents::LivenessOptions {
        crate::agents::LivenessOptions {
            down_after_intervals: self.down_after_intervals,
            initial_interval: self.initial_interval.0,
            check_interval: self.check_interval.0,
        }
    }
}

/// Bearer-token authentication. Tokens are read from files (or systemd
/// credentials), never from the command line. A class of endpoints with no
/// token configured is open, so the embedded defaults need no setup.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// One file per agent, each holding one token, for the ingest endpoints
    /// (`/api/v1/write`, `/api/v1/import/*`, `POST /api/v2/alerts`). The file
    /// name (without extension) names the agent.
    pub ingest_token_files: Vec<PathBuf>,
    /// Token for the query API (`/api/v1/*` reads, `GET /api/v2/*`,
    /// `/metrics`); Grafana uses this one.
    pub read_token_file: Option<PathBuf>,
    /// Token for admin actions (`/-/reload`, creating and expiring
    /// silences); it also grants read access.
    pub admin_token_file: Option<PathBuf>,
}

/// TLS through rustls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed
    /// (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9800)),
            data_dir: PathBuf::from("./data"),
            external_url: None,
            external_labels: Default::default(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            query: QueryConfig::default(),
            rules: RulesConfig::default(),
            alerting_config: None,
            auth: AuthConfig::default(),
            tls: None,
            remote_write: Vec::new(),
            llm: crate::budget::LlmConfig::default(),
            agents: AgentsConfig::default(),
            reports: Default::default(),
            cluster: None,
            alerting: AlertingSection::default(),
            source: None,
            otlp: OtlpConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Samples older than this are deleted (default 15d).
    pub retention: PromDuration,
    /// Oldest data is deleted once the database exceeds this size.
    pub retention_size: Option<ByteSize>,
    /// `normal` (survives a crash of the process) or `full` (fsync every
    /// commit; survives power loss).
    pub sync: SyncSetting,
    /// Samples newer than now plus this are rejected.
    pub max_future: PromDuration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            retention: PromDuration(Duration::from_secs(15 * 86_400)),
            retention_size: None,
            sync: SyncSetting::Normal,
            max_future: PromDuration(Duration::from_secs(600)),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SyncSetting {
    Normal,
    Full,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted request body (compressed, as sent).
    pub max_body_bytes: ByteSize,
    /// Largest accepted remote_write body after snappy decompression.
    pub max_decompressed_bytes: ByteSize,
    /// Most series accepted in one write request.
    pub max_series_per_request: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    pub max_labels_per_series: usize,
    /// Cardinality budgets: live series in the whole store (default
    /// 1,000,000). Samples of existing series always pass; a sample that
    /// would create a series past a budget is refused (400) and counted in
    /// `vigil_cardinality_rejected_series_total{limit}`. 0 = unlimited.
    pub max_series_total: usize,
    /// Live series sharing one metric name (default 100,000; 0 = unlimited).
    pub max_series_per_metric: usize,
    /// Per-metric overrides of `max_series_per_metric` (0 exempts a metric).
    pub max_series_per_metric_overrides: std::collections::BTreeMap<String, usize>,
    /// Series created by one agent: its ingest token's name, or without
    /// authentication its IP address (default 0 = unlimited).
    pub max_series_per_agent: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: ByteSize(32 << 20),
            max_decompressed_bytes: ByteSize(256 << 20),
            max_series_per_request: 100_000,
            max_label_name_length: 1024,
            max_label_value_length: 4096,
            max_labels_per_series: 64,
            max_series_total: 1_000_000,
            max_series_per_metric: 100_000,
            max_series_per_metric_overrides: Default::default(),
            max_series_per_agent: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    pub timeout: PromDuration,
    pub max_samples: usize,
    pub max_concurrency: usize,
    pub lookback_delta: PromDuration,
    /// Bound of the store's decoded-chunk read cache (0 turns it off).
    pub decoded_cache_size: ByteSize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout: PromDuration(Duration::from_secs(120)),
            max_samples: 50_000_000,
            max_concurrency: 20,
            lookback_delta: PromDuration(Duration::from_secs(300)),
            decoded_cache_size: ByteSize(64 << 20),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Glob patterns of rule files (Prometheus format, and Vigil's anomaly
    /// rule files).
    pub files: Vec<String>,
    /// Default evaluation interval of groups without their own.
    pub evaluation_interval: PromDuration,
    /// After a restart, alerts whose `for` is at least this long get their
    /// pending time back, but never less than this much of it remaining
    /// (Prometheus's `--rules.alert.for-grace-period`).
    pub for_grace_period: PromDuration,
    /// Alert state older than this at restart is not restored
    /// (`--rules.alert.for-outage-tolerance`).
    pub outage_tolerance: PromDuration,
    /// How often a firing alert is re-sent to the alerting pipeline
    /// (`--rules.alert.resend-delay`).
    pub resend_delay: PromDuration,
    /// Evaluate rules against this remote Prometheus-compatible query API
    /// instead of the embedded store.
    pub remote_query: Option<crate::remote::RemoteQueryConfig>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            files: Vec::new(),
            evaluation_interval: PromDuration(Duration::from_secs(60)),
            for_grace_period: PromDuration(Duration::from_secs(600)),
            outage_tolerance: PromDuration(Duration::from_secs(3600)),
            resend_delay: PromDuration(Duration::from_secs(60)),
            remote_query: None,
        }
    }
}

impl Config {
    /// Loads a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut cfg = Self::parse(&text, &path.display().to_string())?;
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let cfg: Config = serde_saphyr::from_str(text).map_err(|e| ConfigError::Invalid {
            path: origin.to_string(),
            reason: e.to_string(),
        })?;
        cfg.validate().map_err(|reason| ConfigError::Invalid {
            path: origin.to_string(),
            reason,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        self.llm.validate()?;
        if let Some(d) = &self.reports.digest {
            d.time_of_day()?;
            d.weekday()?;
        }
        if self.query.max_concurrency == 0 {
            return Err("query.max_concurrency must be at least 1".into());
        }
        if self.storage.retention.0.is_zero() {
            return Err("storage.retention must be positive".into());
        }
        if self.alerting.incident_retention.0.is_zero() {
            return Err("alerting.incident_retention must be positive".into());
        }
        let a = &self.agents;
        if !(a.down_after_intervals.is_finite() && a.down_after_intervals >= 1.0) {
            return Err("agents.down_after_intervals must be a number of at least 1".into());
        }
        if a.initial_interval.0.is_zero() || a.check_interval.0.is_zero() {
            return Err(
                "agents.initial_interval and agents.check_interval must be positive".into(),
            );
        }
        crate::remote::validate(&self.remote_write, self.rules.remote_query.as_ref())?;
        self.alerting.external().validate()?;
        for name in self.limits.max_series_per_metric_overrides.keys() {
            if !vigil_wire::labels::is_valid_metric_name(name) {
                return Err(format!(
                    "limits.max_series_per_metric_overrides: invalid metric name {name:?}"
                ));
            }
        }
        for name in self.external_labels.keys() {
            if !vigil_wire::labels::is_valid_label_name(name) {
                return Err(format!("external_labels: invalid label name {name:?}"));
            }
        }
        Ok(())
    }

    pub fn label_limits(&self) -> vigil_wire::labels::LabelLimits {
        vigil_wire::labels::LabelLimits {
            max_name_len: self.limits.max_label_name_length,
            max_value_len: self.limits.max_label_value_length,
            max_labels: self.limits.max_labels_per_series,
        }
    }

    /// The series budgets of [`LimitsConfig`] in the store's terms.
    pub fn series_limits(&self) -> vigil_tsdb::SeriesLimits {
        let l = &self.limits;
        vigil_tsdb::SeriesLimits {
            max_total: l.max_series_total,
            max_per_metric: l.max_series_per_metric,
            per_metric: l
                .max_series_per_metric_overrides
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            max_per_owner: l.max_series_per_agent,
        }
    }

    pub fn external_url(&self) -> String {
        self.external_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_prometheus_notation() {
        assert_eq!(parse_duration("15d"), Ok(Duration::from_secs(15 * 86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = Config::parse("", "x").expect("parses");
        assert_eq!(c.listen.port(), 9800);
    }

    #[test]
    fn unknown_fields_are_rejected_with_a_position() {
        let err = Config::parse("listen: 127.0.0.1:1\nstorage:\n  retension: 1d\n", "c.yml")
            .expect_err("rejects");
        let msg = err.to_string();
        assert!(msg.contains("c.yml"), "{msg}");
        assert!(msg.contains("retension"), "{msg}");
    }

    #[test]
    fn escalations_name_receivers_of_the_alerting_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vigil.yml");
        std::fs::write(
            &path,
            "alerting:\n  escalations:\n    - matchers: ['severity=\"page\"']\n      after: 15m\n      receiver: manager\n",
        )
        .expect("write");
        let cfg = Config::load(&path).expect("parses");
        let am = vigil_alerting::parse_config(
            "route:\n  receiver: team\nreceivers:\n  - name: team\n  - name: manager\n",
            "am.yml",
        )
        .expect("valid");
        let rules = cfg.escalations(&am).expect("manager exists");
        assert_eq!(rules[0].after, Duration::from_secs(900));
        let err = cfg
            .escalations(&vigil_alerting::AlertingConfig::default_config())
            .expect_err("no manager in the default configuration");
        assert!(
            err.starts_with(&format!("{}:5:", path.display())),
            "file and line of the receiver: {err}"
        );
        assert!(err.contains("\"manager\""), "{err}");
        assert!(Config::parse("alerting:\n  incident_retention: 0s\n", "x").is_err());
        assert!(
            Config::parse("alerting:\n  escalations:\n    - after: 1m\n", "x").is_err(),
            "a rule without a receiver"
        );
    }

    #[test]
    fn example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/vigil.example.yml");
        Config::load(&path).expect("the example configuration loads");
    }
}
