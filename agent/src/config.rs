//! The agent's configuration: the YAML schema, its defaults and validation.
//!
//! The structs here *are* the documentation of the file format: every field
//! carries a doc comment, and `deploy/agent.example.yaml` shows each of them
//! with a comment. Precedence is defaults < file < command-line flags; the
//! flags are applied by [`Config::apply_overrides`]. Durations are humantime
//! strings (`15s`, `1m30s`), as Prometheus users write them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// Why a configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The `job` label of the agent's own series unless configured.
pub const DEFAULT_JOB: &str = "vigil-agent";

/// A duration written as a humantime string (`15s`, `2m`, `500ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

/// The whole agent configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the agent's HTTP server (`/metrics`, `/-/healthy`,
    /// `POST /v1/metrics`, `POST /v1/llm/usage`). Default `127.0.0.1:9801`.
    pub listen: SocketAddr,
    /// Directory for the on-disk send buffer. Default `./data-agent`.
    pub data_dir: PathBuf,
    /// Default collection interval for every collector that does not set
    /// its own. Default `15s`.
    pub interval: HumanDuration,
    /// The `job` label of every series the agent ships from its own
    /// collectors (system, PostgreSQL, Redis, LLM, self-metrics), as a scrape
    /// of it would carry, and the `job` under which the collector watches it
    /// (`up`, `AgentDown`). Scraped targets keep their own `job`. Default
    /// `vigil-agent`.
    pub job: String,
    /// The `instance` label of the same series, and the name under which the
    /// collector watches the agent. Default: the host name.
    pub instance: Option<String>,
    /// Labels added to every series the agent ships and exposes (like
    /// Prometheus's `external_labels`), e.g. `{datacenter: eu-1}`. A `job` or
    /// `instance` here takes precedence over the settings above.
    pub external_labels: BTreeMap<String, String>,
    /// Where and how samples are pushed: one destination, its buffer under
    /// `<data_dir>/buffer`. Leave it unset when `remote_writes` is used.
    pub remote_write: RemoteWriteConfig,
    /// Several destinations (e.g. the two collectors of an HA pair), each
    /// with its own `name` and its own on-disk buffer under
    /// `<data_dir>/remote_write/<name>`, drained by its own sender: one
    /// destination being down neither blocks nor loses another's samples.
    /// Replaces `remote_write`; setting both is refused. Default: empty.
    pub remote_writes: Vec<RemoteWriteConfig>,
    /// The bounded on-disk buffer that holds samples until they are sent.
    pub buffer: BufferConfig,
    /// The host collector (CPU, memory, filesystems, disks, network, PSI).
    pub system: SystemConfig,
    /// PostgreSQL servers to watch.
    pub postgres: Vec<PostgresConfig>,
    /// Redis servers to watch.
    pub redis: Vec<RedisConfig>,
    /// LLM usage: the OTLP receiver and the usage-event endpoint.
    pub llm: LlmConfig,
    /// OTLP/gRPC beside `POST /v1/metrics` (served when `llm.enabled`).
    pub otlp: OtlpConfig,
    /// Prometheus endpoints of the platform to scrape.
    pub scrape: Vec<ScrapeConfig>,
    /// HTTP(S) endpoints probed with blackbox_exporter's metric names.
    pub probes: Vec<crate::probe::ProbeConfig>,
    /// Containers and systemd services from the cgroup hierarchy, with
    /// cAdvisor's metric names.
    pub cgroups: crate::cgroup::CgroupConfig,
    /// Serve the HTTP listener over TLS (rustls). Default: plain HTTP.
    pub tls: Option<ListenerTlsConfig>,
}

/// TLS for the agent's listener (`/metrics`, OTLP, usage events).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle; when set, clients (Prometheus scraping `/metrics`,
    /// applications sending OTLP) must present a certificate it signed.
    pub client_ca_file: Option<PathBuf>,
}

/// A client's `tls_config`, as in Prometheus's remote_write configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM CA bundle that is the *only* trust anchor for the receiver's
    /// certificate (pinned: the system roots are not consulted). Without
    /// it the system roots are used.
    pub ca_file: Option<PathBuf>,
    /// Client certificate, for receivers that require mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name the receiver's certificate must carry instead of the URL's host.
    pub server_name: Option<String>,
}

impl ClientTlsConfig {
    pub fn to_client_tls(&self) -> vigil_tls::ClientTls {
        vigil_tls::ClientTls {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            server_name: self.server_name.clone(),
            ..vigil_tls::ClientTls::default()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9801)),
            data_dir: PathBuf::from("./data-agent"),
            interval: Duration::from_secs(15).into(),
            job: DEFAULT_JOB.into(),
            instance: None,
            external_labels: BTreeMap::new(),
            remote_write: RemoteWriteConfig::default(),
            remote_writes: Vec::new(),
            buffer: BufferConfig::default(),
            system: SystemConfig::default(),
            postgres: Vec::new(),
            redis: Vec::new(),
            llm: LlmConfig::default(),
            otlp: OtlpConfig::default(),
            scrape: Vec::new(),
            probes: Vec::new(),
            cgroups: crate::cgroup::CgroupConfig::default(),
            tls: None,
        }
    }
}

/// OTLP/gRPC (`MetricsService/Export`, gzip or not): the same exports as
/// `POST /v1/metrics`, into the same LLM aggregates.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Serve OTLP/gRPC. Default true (when `llm.enabled`).
    pub grpc: bool,
    /// Address of the gRPC listener (plain HTTP/2: `tls` covers the HTTP
    /// listener only). Default: the `listen` address with port 4317; when
    /// that default is taken the agent logs an error and serves HTTP only,
    /// while an address set here must bind or the agent does not start.
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

/// remote_write 1.0 shipping to one destination.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Names the destination in the `remote_name` label of the
    /// `vigil_agent_*` shipping metrics, in logs and in its buffer directory
    /// (`<data_dir>/remote_write/<name>`). Required and unique in
    /// `remote_writes` (letters, digits, `_`, `-`, `.`); `default` for the
    /// single `remote_write` block unless set.
    pub name: Option<String>,
    /// Receiver URL; an empty string disables shipping (the agent then only
    /// serves `/metrics`). Default `http://127.0.0.1:9800/api/v1/write`.
    pub url: String,
    /// Timeout of one HTTP request. Default `10s`.
    pub timeout: HumanDuration,
    /// Upper bound of samples in one request. Default 2000.
    pub max_samples_per_send: usize,
    /// How long buffered data smaller than `max_samples_per_send` waits for
    /// more before it is sent (Prometheus's `queue_config` key). Default
    /// `0s`: send as soon as a collection is buffered.
    pub batch_send_deadline: HumanDuration,
    /// First retry delay; doubled after every failure. Default `100ms`.
    pub min_backoff: HumanDuration,
    /// Ceiling of the retry delay. Default `5s`.
    pub max_backoff: HumanDuration,
    /// Extra HTTP headers sent with every request.
    pub headers: BTreeMap<String, String>,
    /// File whose (trimmed) content is sent as `Authorization: Bearer …`.
    pub bearer_token_file: Option<PathBuf>,
    /// TLS settings for an `https://` receiver: a pinned CA, a client
    /// certificate, the expected server name.
    pub tls_config: Option<ClientTlsConfig>,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        Self {
            name: None,
            url: "http://127.0.0.1:9800/api/v1/write".into(),
            timeout: Duration::from_secs(10).into(),
            max_samples_per_send: 2000,
            batch_send_deadline: Duration::ZERO.into(),
            min_backoff: Duration::from_millis(100).into(),
            max_backoff: Duration::from_secs(5).into(),
            headers: BTreeMap::new(),
            bearer_token_file: None,
            tls_config: None,
        }
    }
}

/// The on-disk buffer (segment files under `<data_dir>/buffer`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferConfig {
    /// Most bytes of unsent data kept; past it the oldest data is dropped and
    /// counted in `vigil_agent_buffer_dropped_samples_total`. Default 256 MiB.
    pub max_bytes: u64,
    /// Size at which a segment file is closed and a new one started.
    /// Disk use stays below `max_bytes + segment_bytes`. Default 8 MiB.
    pub segment_bytes: u64,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            segment_bytes: 8 << 20,
        }
    }
}

/// The host collector.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemConfig {
    /// Collect host metrics at all. Default true.
    pub enabled: bool,
    /// Collection interval; defaults to the global `interval`.
    pub interval: Option<HumanDuration>,
    /// Root of procfs. Default `/proc`.
    pub proc_path: PathBuf,
    /// Filesystem types skipped (node_exporter's default list of pseudo
    /// filesystems when unset).
    pub filesystem_ignored_types: Option<Vec<String>>,
    /// Mount-point prefixes skipped (node_exporter's default: `/dev`,
    /// `/proc`, `/sys`, `/run/credentials/`, container storage).
    pub filesystem_ignored_mount_points: Option<Vec<String>>,
    /// Network devices skipped (exact names). Default none.
    pub network_ignored_devices: Vec<String>,
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: None,
            proc_path: PathBuf::from("/proc"),
            filesystem_ignored_types: None,
            filesystem_ignored_mount_points: None,
            network_ignored_devices: Vec::new(),
        }
    }
}

/// One PostgreSQL server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection string, key=value (`host=127.0.0.1 user=postgres
    /// dbname=test`) or URL (`postgresql://postgres@127.0.0.1/test`). Keep
    /// passwords out of it: use `password_file` or `password_env`.
    pub dsn: String,
    /// File holding the password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Collection interval; defaults to the global `interval`.
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    /// Connect timeout. Default `5s`.
    #[serde(default = "default_pg_timeout")]
    pub connect_timeout: HumanDuration,
    /// Timeout of each query (also set as `statement_timeout`). Default `5s`.
    #[serde(default = "default_pg_timeout")]
    pub query_timeout: HumanDuration,
    /// Extra labels on every series of this server (tell servers apart).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Slow statements from `pg_stat_statements`.
    #[serde(default)]
    pub stat_statements: StatStatementsConfig,
}

fn default_pg_timeout() -> HumanDuration {
    Duration::from_secs(5).into()
}

impl PostgresConfig {
    /// A server configured by DSN alone (the `--postgres` flag).
    pub fn from_dsn(dsn: &str) -> Self {
        Self {
            dsn: dsn.to_string(),
            password_file: None,
            password_env: None,
            interval: None,
            connect_timeout: default_pg_timeout(),
            query_timeout: default_pg_timeout(),
            labels: BTreeMap::new(),
            stat_statements: StatStatementsConfig::default(),
        }
    }
}

/// `pg_stat_statements` top-N.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatStatementsConfig {
    /// Collect at all (only if the extension exists). Default false.
    pub enabled: bool,
    /// Statements kept, by total execution time. Default 10.
    pub top_n: u32,
}

impl Default for StatStatementsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            top_n: 10,
        }
    }
}

/// One Redis server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`, or `rediss://` for TLS (rustls, system roots).
    pub url: String,
    /// File holding the password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// ACL user name, if any.
    #[serde(default)]
    pub username: Option<String>,
    /// Collection interval; defaults to the global `interval`.
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    /// Connect and response timeout. Default `5s`.
    #[serde(default = "default_pg_timeout")]
    pub timeout: HumanDuration,
    /// Extra labels on every series of this server.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl RedisConfig {
    /// A server configured by URL alone (the `--redis` flag).
    pub fn from_url(url: &str) -> Self {
        Self {
            url: url.to_string(),
            password_file: None,
            password_env: None,
            username: None,
            interval: None,
            timeout: default_pg_timeout(),
            labels: BTreeMap::new(),
        }
    }
}

/// LLM usage.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Serve `POST /v1/metrics` and `POST /v1/llm/usage`. Default true.
    pub enabled: bool,
    /// How often the aggregated LLM series are snapshotted for shipping;
    /// defaults to the global `interval`.
    pub interval: Option<HumanDuration>,
    /// Price per model (key: model name, or `provider/model` to price one
    /// provider's model apart), USD per 1M tokens. Entries here override
    /// the built-in table's entry for the same key.
    pub prices: BTreeMap<String, ModelPrice>,
    /// Use the built-in price table of common hosted models (list prices,
    /// dated: see `vigil_agent_llm_price_table_info`) under `prices`.
    /// Default true.
    pub default_prices: bool,
    /// Bucket bounds of `gen_ai_client_token_usage` for usage events.
    /// Default: the OpenTelemetry GenAI advice (1, 4, 16 … 67108864).
    pub token_buckets: Vec<f64>,
    /// Bucket bounds (seconds) of `gen_ai_client_operation_duration_seconds`
    /// for usage events. Default: the GenAI advice (0.01 … 81.92).
    pub duration_buckets: Vec<f64>,
    /// Bucket bounds (seconds) of `llm_time_to_first_token_seconds` for
    /// usage events. Default: the GenAI advice for time to first token
    /// (0.001 … 10).
    pub ttft_buckets: Vec<f64>,
    /// Most distinct series the LLM aggregator keeps; new series past it are
    /// refused and counted. Default 10000.
    pub max_series: usize,
    /// How many tenants keep their own `tenant` label on
    /// `llm_cost_usd_total` and `llm_tokens_total`: the top tenants by
    /// cost; the others are counted as `tenant="other"`. Default 20.
    pub top_tenants: usize,
    /// Tenants that always keep their own label, on top of `top_tenants`
    /// (e.g. those with a budget in the collector's `llm.budgets`).
    pub pinned_tenants: Vec<String>,
    /// How many agent names (`agent`, `gen_ai.agent.name`) keep their own
    /// label, the most active first; the rest are `agent="other"`.
    /// Default 50.
    pub top_agents: usize,
    /// How many tool names (`tool`, `gen_ai.tool.name`) keep their own
    /// label, the most called first; the rest are `tool="other"`.
    /// Default 50.
    pub top_tools: usize,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: None,
            prices: BTreeMap::new(),
            default_prices: true,
            token_buckets: vec![
                1.0,
                4.0,
                16.0,
                64.0,
                256.0,
                1024.0,
                4096.0,
                16384.0,
                65536.0,
                262_144.0,
                1_048_576.0,
                4_194_304.0,
                16_777_216.0,
                67_108_864.0,
            ],
            duration_buckets: vec![
                0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96,
                81.92,
            ],
            ttft_buckets: vec![
                0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0,
            ],
            max_series: 10_000,
            top_tenants: 20,
            pinned_tenants: Vec::new(),
            top_agents: 50,
            top_tools: 50,
        }
    }
}

/// Price of one model, USD per million tokens.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// USD per 1M input (prompt) tokens not read from the prompt cache.
    pub input: f64,
    /// USD per 1M output (completion) tokens that are not reasoning tokens.
    pub output: f64,
    /// USD per 1M input tokens read from the prompt cache (OpenAI's
    /// "cached input", Anthropic's "cache hits", Google's "context
    /// caching"). Unset: priced as `input`.
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// USD per 1M reasoning (thinking) output tokens. Unset: priced as
    /// `output`, which is how OpenAI, Anthropic and Google bill them.
    #[serde(default)]
    pub reasoning: Option<f64>,
}

impl ModelPrice {
    /// A price with input and output only.
    pub fn new(input: f64, output: f64) -> Self {
        Self {
            input,
            output,
            ..Self::default()
        }
    }

    /// Cost in USD of a call. `cached_input` is the part of `input` read
    /// from the prompt cache and `reasoning` the part of `output` spent
    /// reasoning (as OpenTelemetry's `gen_ai.usage.*` counts them), so each
    /// part is priced once, at its own rate.
    pub fn cost(&self, input: u64, cached_input: u64, output: u64, reasoning: u64) -> f64 {
        let cached = cached_input.min(input) as f64;
        let reasoning = reasoning.min(output) as f64;
        ((input as f64 - cached) * self.input
            + cached * self.cached_input.unwrap_or(self.input)
            + (output as f64 - reasoning) * self.output
            + reasoning * self.reasoning.unwrap_or(self.output))
            / 1e6
    }
}

/// A scrape job: Prometheus endpoints sharing a job name, from static
/// targets and service discovery, relabeled as Prometheus relabels them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The `job` label (Prometheus's `job_name`).
    pub job: String,
    /// `host:port` of each target; each becomes the `instance` label. The
    /// same as one `static_configs` entry without labels.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Groups of targets with labels, as in Prometheus.
    #[serde(default)]
    pub static_configs: Vec<crate::discovery::StaticConfig>,
    /// Targets from JSON or YAML files, re-read when they change.
    #[serde(default)]
    pub file_sd_configs: Vec<crate::discovery::FileSdConfig>,
    /// Targets from an HTTP endpoint (Prometheus's HTTP SD format).
    #[serde(default)]
    pub http_sd_configs: Vec<crate::discovery::HttpSdConfig>,
    /// Prometheus's `relabel_configs`, run on each discovered target's
    /// labels (`__address__`, `__scheme__`, `__metrics_path__`,
    /// `__param_<name>`, `__scrape_interval__`, `__scrape_timeout__`, `job`,
    /// `__meta_filepath` or `__meta_url`, the group's labels); a target they
    /// drop is not scraped. Labels starting with `__` are then removed, and
    /// `instance` defaults to `__address__`.
    #[serde(default)]
    pub relabel_configs: Vec<vigil_wire::relabel::RelabelConfig>,
    /// Prometheus's `metric_relabel_configs`, run on every scraped series
    /// before it is kept.
    #[serde(default)]
    pub metric_relabel_configs: Vec<vigil_wire::relabel::RelabelConfig>,
    /// URL parameters of every scrape (`{module: [http_2xx]}`); a
    /// `__param_<name>` label overrides the first value of `<name>`.
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    /// Path of the metrics endpoint. Default `/metrics`.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// `http` or `https`. Default `http`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// Scrape interval; defaults to the global `interval`.
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    /// Scrape timeout. Default `10s` (capped at the interval).
    #[serde(default = "default_scrape_timeout")]
    pub timeout: HumanDuration,
    /// File whose (trimmed) content is sent as `Authorization: Bearer …`,
    /// re-read on every scrape (e.g. the collector's read token).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

impl ScrapeConfig {
    /// Checks what serde cannot, with Prometheus's messages where it has
    /// them.
    pub fn validate(&self) -> Result<(), String> {
        if !vigil_wire::labels::is_valid_label_name(&self.job.replace(['-', '.'], "_"))
            || self.job.is_empty()
        {
            return Err("job must be a non-empty name".into());
        }
        if self.scheme != "http" && self.scheme != "https" {
            return Err("scheme must be http or https".into());
        }
        if !self.metrics_path.starts_with('/') {
            return Err("metrics_path must start with '/'".into());
        }
        if self.timeout.0.is_zero() {
            return Err("timeout must be greater than zero".into());
        }
        let statics = self.static_configs.iter().flat_map(|s| &s.targets);
        for t in self.targets.iter().chain(statics) {
            if t.is_empty() || t.contains('/') {
                return Err(format!(
                    "target {t:?}: must be host:port (scheme and path are set by scheme and metrics_path)"
                ));
            }
        }
        for (i, s) in self.static_configs.iter().enumerate() {
            for name in s.labels.keys() {
                if !vigil_wire::labels::is_valid_label_name(name) {
                    return Err(format!(
                        "static_configs[{i}]: {name:?} is not a valid label name"
                    ));
                }
            }
        }
        for (i, f) in self.file_sd_configs.iter().enumerate() {
            f.validate()
                .map_err(|e| format!("file_sd_configs[{i}]: {e}"))?;
        }
        for (i, h) in self.http_sd_configs.iter().enumerate() {
            h.validate()
                .map_err(|e| format!("http_sd_configs[{i}]: {e}"))?;
        }
        vigil_wire::relabel::Relabel::compile_all("relabel_configs", &self.relabel_configs)?;
        vigil_wire::relabel::Relabel::compile_all(
            "metric_relabel_configs",
            &self.metric_relabel_configs,
        )?;
        Ok(())
    }
}

impl RemoteWriteConfig {
    fn validate(&self, what: &str) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.max_samples_per_send == 0 {
            return bad(format!("{what}.max_samples_per_send must be at least 1"));
        }
        if self.min_backoff.0 > self.max_backoff.0 {
            return bad(format!("{what}.min_backoff must not exceed max_backoff"));
        }
        if let Some(t) = &self.tls_config
            && t.cert_file.is_some() != t.key_file.is_some()
        {
            return bad(format!(
                "{what}.tls_config: cert_file and key_file must be set together"
            ));
        }
        Ok(())
    }
}

/// One destination the agent ships to, resolved from `remote_write` or
/// `remote_writes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// The `remote_name` label and log name.
    pub name: String,
    /// Where its on-disk buffer lives.
    pub buffer_dir: PathBuf,
    pub config: RemoteWriteConfig,
}

fn default_metrics_path() -> String {
    "/metrics".into()
}
fn default_scheme() -> String {
    "http".into()
}
fn default_scrape_timeout() -> HumanDuration {
    Duration::from_secs(10).into()
}

/// Command-line overrides (each `None`/empty leaves the file's value).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub remote_write: Option<String>,
    pub postgres: Vec<String>,
    pub redis: Vec<String>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Reads and validates a YAML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::from_yaml(&text).map_err(|e| match e {
            ConfigError::Parse { reason, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })?;
        if let Some(dir) = path.parent() {
            cfg.resolve_sd_files(dir);
        }
        Ok(cfg)
    }

    /// Makes relative `file_sd_configs` paths relative to `dir`, the
    /// configuration file's directory, as Prometheus does.
    pub fn resolve_sd_files(&mut self, dir: &Path) {
        for s in &mut self.scrape {
            for f in &mut s.file_sd_configs {
                for p in &mut f.files {
                    if Path::new(p.as_str()).is_relative() {
                        *p = dir.join(p.as_str()).to_string_lossy().into_owned();
                    }
                }
            }
        }
    }

    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<inline>"),
            reason: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies command-line flags: scalar flags replace the file's value,
    /// `--postgres`/`--redis` replace the file's lists when given.
    pub fn apply_overrides(&mut self, o: Overrides) {
        if let Some(l) = o.listen {
            self.listen = l;
        }
        if let Some(u) = o.remote_write {
            // The flag names the one destination to ship to: it replaces
            // a `remote_writes` list too.
            self.remote_writes.clear();
            self.remote_write.url = u;
        }
        if let Some(d) = o.data_dir {
            self.data_dir = d;
        }
        if !o.postgres.is_empty() {
            self.postgres = o
                .postgres
                .iter()
                .map(|d| PostgresConfig::from_dsn(d))
                .collect();
        }
        if !o.redis.is_empty() {
            self.redis = o.redis.iter().map(|u| RedisConfig::from_url(u)).collect();
        }
    }

    /// Checks what serde cannot: non-zero durations, sane sizes, valid labels.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.interval.0.is_zero() {
            return bad("interval must be greater than zero".into());
        }
        for name in self.external_labels.keys() {
            if !vigil_wire::labels::is_valid_label_name(name) {
                return bad(format!("external_labels: invalid label name {name:?}"));
            }
        }
        let (job, instance) = self.identity();
        if job.is_empty() {
            return bad("job must not be empty".into());
        }
        if instance.is_empty() {
            return bad("instance must not be empty".into());
        }
        if self.buffer.segment_bytes < 1024 {
            return bad("buffer.segment_bytes must be at least 1024".into());
        }
        if self.buffer.max_bytes < self.buffer.segment_bytes {
            return bad("buffer.max_bytes must be at least buffer.segment_bytes".into());
        }
        if !self.remote_writes.is_empty() && self.remote_write != RemoteWriteConfig::default() {
            return bad(
                "remote_write and remote_writes are both set: list every destination in remote_writes".into(),
            );
        }
        if self.remote_writes.is_empty() {
            self.remote_write.validate("remote_write")?;
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, rw) in self.remote_writes.iter().enumerate() {
            let what = format!("remote_writes[{i}]");
            rw.validate(&what)?;
            let Some(name) = &rw.name else {
                return bad(format!(
                    "{what}: name is required (it names the destination's buffer directory)"
                ));
            };
            if name.is_empty()
                || name == "."
                || name == ".."
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return bad(format!(
                    "{what}: name {name:?} must be letters, digits, '_', '-' or '.'"
                ));
            }
            if !names.insert(name.as_str()) {
                return bad(format!("{what}: name {name:?} is used twice"));
            }
            if rw.url.is_empty() {
                return bad(format!("{what}: url is empty"));
            }
        }
        for (i, p) in self.postgres.iter().enumerate() {
            if p.dsn.trim().is_empty() {
                return bad(format!("postgres[{i}]: dsn is empty"));
            }
            check_labels(&format!("postgres[{i}]"), &p.labels)?;
        }
        for (i, r) in self.redis.iter().enumerate() {
            if !(r.url.starts_with("redis://")
                || r.url.starts_with("rediss://")
                || r.url.starts_with("unix://"))
            {
                return bad(format!(
                    "redis[{i}]: url must start with redis://, rediss:// or unix://"
                ));
            }
            check_labels(&format!("redis[{i}]"), &r.labels)?;
        }
        if self.cgroups.max_cgroups == 0 {
            return bad("cgroups.max_cgroups must be at least 1".into());
        }
        for (i, p) in self.probes.iter().enumerate() {
            p.validate(&format!("probes[{i}]"))
                .map_err(ConfigError::Invalid)?;
        }
        for (model, p) in &self.llm.prices {
            let all = [Some(p.input), Some(p.output), p.cached_input, p.reasoning];
            if !all.into_iter().flatten().all(|v| v >= 0.0 && v.is_finite()) {
                return bad(format!(
                    "llm.prices.{model}: prices must be finite and non-negative"
                ));
            }
        }
        for (what, b) in [
            ("token_buckets", &self.llm.token_buckets),
            ("duration_buckets", &self.llm.duration_buckets),
            ("ttft_buckets", &self.llm.ttft_buckets),
        ] {
            if b.is_empty()
                || b.windows(2).any(|w| w[0] >= w[1])
                || b.iter().any(|v| !v.is_finite())
            {
                return bad(format!("llm.{what} must be finite and strictly increasing"));
            }
        }
        for (i, s) in self.scrape.iter().enumerate() {
            s.validate()
                .map_err(|e| ConfigError::Invalid(format!("scrape[{i}] (job {}): {e}", s.job)))?;
        }
        Ok(())
    }
}

impl Config {
    /// The destinations to ship to: every `remote_writes` entry, each
    /// buffered under `<data_dir>/remote_write/<name>`, or else the single
    /// `remote_write` block buffered under `<data_dir>/buffer` (where it
    /// always was, so an upgrade keeps what is buffered). Empty when
    /// shipping is disabled (`remote_write.url: ""`).
    pub fn destinations(&self) -> Vec<Destination> {
        if self.remote_writes.is_empty() {
            if self.remote_write.url.is_empty() {
                return Vec::new();
            }
            return vec![Destination {
                name: self
                    .remote_write
                    .name
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                buffer_dir: self.data_dir.join("buffer"),
                config: self.remote_write.clone(),
            }];
        }
        self.remote_writes
            .iter()
            .map(|rw| {
                let name = rw.name.clone().unwrap_or_default();
                Destination {
                    buffer_dir: self.data_dir.join("remote_write").join(&name),
                    name,
                    config: rw.clone(),
                }
            })
            .collect()
    }

    /// The `job` and `instance` of the agent's own series: `external_labels`
    /// first, then the `job`/`instance` settings, then the defaults
    /// (`vigil-agent`, the host name).
    pub fn identity(&self) -> (String, String) {
        let job = self
            .external_labels
            .get("job")
            .cloned()
            .unwrap_or_else(|| self.job.clone());
        let instance = self
            .external_labels
            .get("instance")
            .cloned()
            .or_else(|| self.instance.clone())
            .unwrap_or_else(host_name);
        (job, instance)
    }
}

/// The host name (as `hostname` prints it), or `localhost` if the kernel
/// does not say.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

fn check_labels(what: &str, labels: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for name in labels.keys() {
        if !vigil_wire::labels::is_valid_label_name(name) || name == "__name__" {
            return Err(ConfigError::Invalid(format!(
                "{what}: invalid label name {name:?}"
            )));
        }
    }
    Ok(())
}

/// Reads a secret from a file or an environment variable (file first).
/// The value is never logged.
pub fn read_secret(file: Option<&Path>, env: Option<&str>) -> Result<Option<String>, String> {
    if let Some(f) = file {
        return std::fs::read_to_string(f)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| format!("reading password file {}: {e}", f.display()));
    }
    if let Some(var) = env {
        return std::env::var(var)
            .map(Some)
            .map_err(|_| format!("environment variable {var} is not set"));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_destination_keeps_its_buffer_where_it_was() {
        let c = Config::from_yaml("data_dir: /d\nremote_write:\n  url: http://x/api/v1/write\n")
            .expect("valid");
        let d = c.destinations();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].name, "default");
        assert_eq!(d[0].buffer_dir, PathBuf::from("/d/buffer"));
        let off = Config::from_yaml("remote_write:\n  url: \"\"\n").expect("valid");
        assert!(off.destinations().is_empty());
    }

    #[test]
    fn several_destinations_each_get_a_named_buffer() {
        let c = Config::from_yaml(
            "data_dir: /d\nremote_writes:\n  - name: a\n    url: http://a/w\n  - name: b\n    url: http://b/w\n    max_samples_per_send: 10\n",
        )
        .expect("valid");
        let d = c.destinations();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].buffer_dir, PathBuf::from("/d/remote_write/a"));
        assert_eq!(d[1].buffer_dir, PathBuf::from("/d/remote_write/b"));
        assert_eq!(d[1].config.max_samples_per_send, 10);
        // The flag names one destination and replaces the list.
        let mut c = c;
        c.apply_overrides(Overrides {
            remote_write: Some("http://c/w".into()),
            ..Overrides::default()
        });
        c.validate().expect("valid");
        assert_eq!(c.destinations().len(), 1);
        assert_eq!(c.destinations()[0].config.url, "http://c/w");
    }

    #[test]
    fn bad_destination_lists_are_refused() {
        for (yaml, why) in [
            ("remote_writes:\n  - url: http://a/w\n", "name is required"),
            (
                "remote_writes:\n  - name: a\n    url: http://a/w\n  - name: a\n    url: http://b/w\n",
                "used twice",
            ),
            (
                "remote_writes:\n  - name: ../x\n    url: http://a/w\n",
                "must be letters",
            ),
            (
                "remote_writes:\n  - name: a\n    url: \"\"\n",
                "url is empty",
            ),
            (
                "remote_write:\n  url: http://x/w\nremote_writes:\n  - name: a\n    url: http://a/w\n",
                "both set",
            ),
            (
                "remote_writes:\n  - name: a\n    url: http://a/w\n    max_samples_per_send: 0\n",
                "remote_writes[0].max_samples_per_send",
            ),
        ] {
            let e = Config::from_yaml(yaml).expect_err(yaml).to_string();
            assert!(e.contains(why), "{yaml}: {e}");
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_yaml("{}").expect("empty config is valid");
        assert_eq!(c.listen.to_string(), "127.0.0.1:9801");
        assert_eq!(c.interval.0, Duration::from_secs(15));
        assert_eq!(c.remote_write.url, "http://127.0.0.1:9800/api/v1/write");
        assert!(c.system.enabled);
    }

    #[test]
    fn durations_and_lists_parse() {
        let c = Config::from_yaml(
            "interval: 2s\npostgres:\n  - dsn: host=127.0.0.1 user=postgres\n    query_timeout: 500ms\nredis:\n  - url: redis://127.0.0.1:6379\nllm:\n  prices:\n    gpt-4o: {input: 2.5, output: 10}\n",
        )
        .expect("valid");
        assert_eq!(c.interval.0, Duration::from_secs(2));
        assert_eq!(c.postgres[0].query_timeout.0, Duration::from_millis(500));
        assert_eq!(c.llm.prices["gpt-4o"].output, 10.0);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(Config::from_yaml("intervall: 2s").is_err());
        assert!(Config::from_yaml("interval: soon").is_err());
        assert!(Config::from_yaml("interval: 0s").is_err());
        assert!(Config::from_yaml("redis:\n  - url: http://x\n").is_err());
        assert!(Config::from_yaml("llm:\n  duration_buckets: [2, 1]\n").is_err());
    }

    #[test]
    fn example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.example.yaml");
        let c = Config::load(&path).expect("deploy/agent.example.yaml is valid");
        assert_eq!(c.postgres.len(), 1);
        assert_eq!(c.redis.len(), 1);
        assert_eq!(c.scrape[0].targets, ["127.0.0.1:8080"]);
        // The collector's self-metrics, for rules/vigil.rules.yml.
        assert!(
            c.scrape
                .iter()
                .any(|s| s.job == "vigil" && s.targets == ["127.0.0.1:9800"])
        );
        assert_eq!(c.llm.prices["my-finetune"].input, 3.0);
        assert!(c.llm.default_prices);
        assert_eq!(c.buffer.max_bytes, 256 << 20);
    }

    #[test]
    fn scrape_jobs_take_discovery_and_relabeling() {
        let c = Config::from_yaml(
            "scrape:\n  - job: node\n    static_configs:\n      - targets: [a:1]\n        labels: {env: prod}\n    file_sd_configs:\n      - files: [t/*.json]\n    http_sd_configs:\n      - url: http://inv/sd\n    relabel_configs:\n      - source_labels: [env]\n        regex: dev\n        action: Drop\n    params: {module: [x]}\n",
        )
        .expect("valid");
        let s = &c.scrape[0];
        assert!(s.targets.is_empty());
        assert_eq!(s.static_configs[0].labels["env"], "prod");
        // Prometheus's defaults.
        assert_eq!(
            s.file_sd_configs[0].refresh_interval.0,
            Duration::from_secs(300)
        );
        assert_eq!(
            s.http_sd_configs[0].refresh_interval.0,
            Duration::from_secs(60)
        );
        assert_eq!(
            s.relabel_configs[0].action,
            vigil_wire::relabel::RelabelAction::Drop
        );
        assert_eq!(s.params["module"], ["x"]);
    }

    #[test]
    fn relative_file_sd_paths_follow_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("agent.yml");
        std::fs::write(
            &file,
            "scrape:\n  - job: a\n    file_sd_configs:\n      - files: [targets/*.yml, /abs/x.json]\n",
        )
        .expect("write");
        let c = Config::load(&file).expect("valid");
        assert_eq!(
            c.scrape[0].file_sd_configs[0].files,
            [
                dir.path()
                    .join("targets/*.yml")
                    .to_string_lossy()
                    .into_owned(),
                "/abs/x.json".to_string()
            ]
        );
    }

    #[test]
    fn quickstart_file_scrapes_the_collector() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/quickstart-agent.yaml");
        let c = Config::load(&path).expect("deploy/quickstart-agent.yaml is valid");
        assert_eq!(c.scrape.len(), 1);
        assert_eq!(c.scrape[0].job, "vigil");
        assert_eq!(c.scrape[0].targets, ["127.0.0.1:9800"]);
        assert_eq!(c.listen, Config::default().listen);
        assert_eq!(c.remote_write.url, Config::default().remote_write.url);
        // Its own series are labelled as a scrape of it would be.
        assert_eq!(c.identity(), ("vigil-agent".to_string(), host_name()));
    }

    #[test]
    fn job_and_instance_default_to_the_agent_and_host() {
        let c = Config::from_yaml("{}").expect("valid");
        let (job, instance) = c.identity();
        assert_eq!(job, "vigil-agent");
        assert_eq!(instance, host_name());
        assert!(!instance.is_empty());
        let c = Config::from_yaml("job: edge\ninstance: web-1\n").expect("valid");
        assert_eq!(c.identity(), ("edge".into(), "web-1".into()));
        // An instance in external_labels (older configurations) still wins.
        let c = Config::from_yaml("instance: web-1\nexternal_labels: {instance: web-2}\n")
            .expect("valid");
        assert_eq!(c.identity().1, "web-2");
        assert!(Config::from_yaml("job: ''\n").is_err());
    }

    #[test]
    fn flags_override_the_file() {
        let mut c = Config::from_yaml("listen: 127.0.0.1:1\nredis:\n  - url: redis://a:1\n")
            .expect("valid");
        c.apply_overrides(Overrides {
            listen: Some("127.0.0.1:2".parse().expect("addr")),
            redis: vec!["redis://b:2".into()],
            ..Overrides::default()
        });
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.redis.len(), 1);
        assert_eq!(c.redis[0].url, "redis://b:2");
    }
}
