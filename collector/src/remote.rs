//! Configuration of the collector's remote endpoints, in Prometheus's
//! terms: the `remote_write:` list (forwarding to Mimir, VictoriaMetrics,
//! Thanos Receive or a Prometheus with its remote_write receiver on) and
//! `rules.remote_query` (evaluating rules against a remote
//! Prometheus-compatible query API). Field names are Prometheus's so that a
//! `remote_write` block can be copied from a `prometheus.yml`; secrets are
//! read from files only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use vigil_queue::{BasicAuth, HttpOptions, TlsOptions};
use vigil_wire::Labels;

use crate::config::{ByteSize, PromDuration};

/// `tls_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// PEM CA bundle; when set, only servers it signed are trusted (the
    /// system roots are not consulted).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, instead of the URL's
    /// host (Prometheus's `server_name`).
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

/// `basic_auth`; the password only from a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    pub username: String,
    pub password_file: Option<PathBuf>,
}

/// The HTTP client part shared by `remote_write` entries and
/// `rules.remote_query` (their fields, written inline in each block).
#[derive(Debug, Clone, Default)]
pub struct HttpClientConfig {
    pub headers: BTreeMap<String, String>,
    pub bearer_token_file: Option<PathBuf>,
    pub basic_auth: Option<BasicAuthConfig>,
    pub tls_config: TlsClientConfig,
}

impl HttpClientConfig {
    pub fn options(&self, timeout: Duration) -> HttpOptions {
        HttpOptions {
            headers: self.headers.clone(),
            bearer_token_file: self.bearer_token_file.clone(),
            basic_auth: self.basic_auth.as_ref().map(|b| BasicAuth {
                username: b.username.clone(),
                password_file: b.password_file.clone(),
            }),
            tls: TlsOptions {
                ca_file: self.tls_config.ca_file.clone(),
                cert_file: self.tls_config.cert_file.clone(),
                key_file: self.tls_config.key_file.clone(),
                server_name: self.tls_config.server_name.clone(),
                insecure_skip_verify: self.tls_config.insecure_skip_verify,
            },
            timeout,
            user_agent: concat!("vigil/", env!("CARGO_PKG_VERSION")).into(),
        }
    }

    fn validate(&self, what: &str) -> Result<(), String> {
        if self.bearer_token_file.is_some() && self.basic_auth.is_some() {
            return Err(format!(
                "{what}: at most one of bearer_token_file and basic_auth may be set"
            ));
        }
        if self.tls_config.cert_file.is_some() != self.tls_config.key_file.is_some() {
            return Err(format!(
                "{what}: tls_config.cert_file and key_file must be set together"
            ));
        }
        for k in self.headers.keys() {
            let lower = k.to_ascii_lowercase();
            // Prometheus refuses these too: the protocol owns them.
            if [
                "authorization",
                "content-encoding",
                "content-type",
                "x-prometheus-remote-write-version",
                "user-agent",
            ]
            .contains(&lower.as_str())
            {
                return Err(format!("{what}: header {k:?} cannot be overridden"));
            }
        }
        Ok(())
    }
}

/// One `remote_write` destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver's remote_write endpoint.
    pub url: String,
    /// Names the queue in metrics (`remote_name`) and its directory under
    /// `<data_dir>/remote_write/`; defaults to a hash of the URL.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_remote_timeout")]
    pub remote_timeout: PromDuration,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    #[serde(default)]
    pub tls_config: TlsClientConfig,
    #[serde(default)]
    pub write_relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub queue_config: QueueConfig,
}

fn default_remote_timeout() -> PromDuration {
    PromDuration(Duration::from_secs(30))
}

impl RemoteWriteConfig {
    pub fn http(&self) -> HttpClientConfig {
        HttpClientConfig {
            headers: self.headers.clone(),
            bearer_token_file: self.bearer_token_file.clone(),
            basic_auth: self.basic_auth.clone(),
            tls_config: self.tls_config.clone(),
        }
    }

    /// The queue's name: `name`, or a stable hash of the URL as Prometheus
    /// does.
    pub fn queue_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => {
                // FNV-1a: stable across builds and platforms.
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for b in self.url.bytes() {
                    h ^= u64::from(b);
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
                format!("{:06x}", h & 0xff_ffff)
            }
        }
    }
}

/// `queue_config`: Prometheus's batching and retry settings plus the bound
/// of the on-disk queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub max_samples_per_send: usize,
    pub batch_send_deadline: PromDuration,
    pub min_backoff: PromDuration,
    pub max_backoff: PromDuration,
    /// Most parallel requests. Each batch is sent with one shard per
    /// `max_samples_per_send` samples waiting in the queue, clamped to
    /// `[min_shards, max_shards]`; series are partitioned by a hash of their
    /// labels, so each stays in time order. Default 50, as Prometheus.
    pub max_shards: Option<usize>,
    /// Fewest parallel requests. Default 1.
    pub min_shards: Option<usize>,
    /// Accepted for compatibility with Prometheus configurations and
    /// ignored: the queue is on disk, bounded by `max_bytes`.
    pub capacity: Option<usize>,
    /// Vigil: the most unsent data kept on disk for this destination; when
    /// full, the oldest data is dropped and counted in
    /// `vigil_remote_storage_samples_dropped_total{reason="queue_full"}`.
    pub max_bytes: ByteSize,
    /// Vigil: size of one queue segment file.
    pub segment_bytes: ByteSize,
}

/// Prometheus's default `queue_config.max_shards`.
pub const DEFAULT_MAX_SHARDS: usize = 50;

impl QueueConfig {
    /// `max_shards`, or Prometheus's default.
    pub fn max_shards(&self) -> usize {
        self.max_shards.unwrap_or(DEFAULT_MAX_SHARDS)
    }

    /// `min_shards`, or 1.
    pub fn min_shards(&self) -> usize {
        self.min_shards.unwrap_or(1)
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_samples_per_send: 2000,
            batch_send_deadline: PromDuration(Duration::from_secs(5)),
            min_backoff: PromDuration(Duration::from_millis(30)),
            max_backoff: PromDuration(Duration::from_secs(5)),
            max_shards: None,
            min_shards: None,
            capacity: None,
            max_bytes: ByteSize(1 << 30),
            segment_bytes: ByteSize(8 << 20),
        }
    }
}

/// Prometheus's `relabel_config`, shared with the agent (crate
/// `vigil-wire`): every action, Prometheus's defaults, checks and messages.
pub use vigil_wire::relabel::{Relabel, RelabelAction, RelabelConfig};

/// Runs `write_relabel_configs` in order; `None` drops the series, as does
/// a relabeling that leaves no label at all (nothing could be written).
pub fn relabel(labels: Labels, steps: &[Relabel]) -> Option<Labels> {
    vigil_wire::relabel::process(labels, steps).filter(|l| !l.is_empty())
}

/// `rules.remote_query`: evaluate recording and alerting rules against a
/// remote Prometheus-compatible query API instead of the embedded store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteQueryConfig {
    /// Base URL of the API: Vigil calls `<url>/api/v1/query` (e.g.
    /// `http://prometheus:9090`, `http://mimir/prometheus`,
    /// `http://vmselect:8481/select/0/prometheus`, Thanos Query).
    pub url: String,
    #[serde(default = "default_query_timeout")]
    pub timeout: PromDuration,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    #[serde(default)]
    pub tls_config: TlsClientConfig,
}

impl RemoteQueryConfig {
    pub fn http(&self) -> HttpClientConfig {
        HttpClientConfig {
            headers: self.headers.clone(),
            bearer_token_file: self.bearer_token_file.clone(),
            basic_auth: self.basic_auth.clone(),
            tls_config: self.tls_config.clone(),
        }
    }
}

fn default_query_timeout() -> PromDuration {
    PromDuration(Duration::from_secs(60))
}

fn check_url(what: &str, url: &str) -> Result<(), String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "{what}: url {url:?} must start with http:// or https://"
        ));
    }
    Ok(())
}

/// Validates the `remote_write` list and `rules.remote_query`.
pub fn validate(
    remote_write: &[RemoteWriteConfig],
    remote_query: Option<&RemoteQueryConfig>,
) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for rw in remote_write {
        let name = rw.queue_name();
        let what = format!("remote_write {name:?}");
        check_url(&what, &rw.url)?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            || name.starts_with('.')
        {
            return Err(format!(
                "{what}: name must be letters, digits, '_', '-' or '.' (it names a directory)"
            ));
        }
        if !names.insert(name.clone()) {
            return Err(format!("{what}: duplicate remote_write name or URL"));
        }
        rw.http().validate(&what)?;
        let q = &rw.queue_config;
        if q.max_samples_per_send == 0 {
            return Err(format!(
                "{what}: queue_config.max_samples_per_send must be at least 1"
            ));
        }
        if q.min_backoff.0 > q.max_backoff.0 {
            return Err(format!(
                "{what}: queue_config.min_backoff must not exceed max_backoff"
            ));
        }
        if q.max_shards == Some(0) || q.min_shards == Some(0) {
            return Err(format!(
                "{what}: queue_config.max_shards and min_shards must be at least 1"
            ));
        }
        if q.min_shards.unwrap_or(1) > q.max_shards() {
            return Err(format!(
                "{what}: queue_config.min_shards must not exceed max_shards"
            ));
        }
        if q.segment_bytes.0 == 0 || q.max_bytes.0 < q.segment_bytes.0 {
            return Err(format!(
                "{what}: queue_config.max_bytes must be at least segment_bytes (and both positive)"
            ));
        }
        Relabel::compile_all("write_relabel_configs", &rw.write_relabel_configs)
            .map_err(|e| format!("{what}: {e}"))?;
    }
    if let Some(q) = remote_query {
        check_url("rules.remote_query", &q.url)?;
        q.http().validate("rules.remote_query")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(yaml: &str) -> Vec<Relabel> {
        let cfgs: Vec<RelabelConfig> = serde_saphyr::from_str(yaml).expect("yaml");
        Relabel::compile_all("write_relabel_configs", &cfgs).expect("compiles")
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn keep_drop_and_labeldrop_behave_like_prometheus() {
        let s = steps(
            "- source_labels: [__name__]\n  regex: 'node_.*|up'\n  action: keep\n\
             - source_labels: [job, instance]\n  regex: 'test;.*'\n  action: drop\n\
             - regex: 'secret_.*'\n  action: labeldrop\n",
        );
        assert_eq!(
            relabel(
                l(&[("__name__", "up"), ("job", "a"), ("secret_x", "1")]),
                &s
            ),
            Some(l(&[("__name__", "up"), ("job", "a")]))
        );
        // Anchored: "xnode_cpu" does not match "node_.*".
        assert_eq!(relabel(l(&[("__name__", "xnode_cpu")]), &s), None);
        assert_eq!(
            relabel(
                l(&[("__name__", "up"), ("job", "test"), ("instance", "h")]),
                &s
            ),
            None
        );
    }

    #[test]
    fn every_prometheus_action_is_accepted() {
        // Once limited to five actions; now the shared engine.
        let s = steps(
            "- source_labels: [instance]\n  modulus: 4\n  target_label: shard\n  action: hashmod\n\
             - source_labels: [job]\n  target_label: job\n  action: uppercase\n",
        );
        let out = relabel(
            l(&[("__name__", "up"), ("instance", "a"), ("job", "x")]),
            &s,
        )
        .expect("kept");
        assert_eq!(out.get("job"), Some("X"));
        assert!(out.get("shard").is_some());
    }

    #[test]
    fn replace_expands_capture_groups() {
        let s = steps(
            "- source_labels: [instance]\n  regex: '(.*):\\d+'\n  target_label: host\n  replacement: '${1}'\n",
        );
        assert_eq!(
            relabel(l(&[("__name__", "up"), ("instance", "db1:9100")]), &s),
            Some(l(&[
                ("__name__", "up"),
                ("host", "db1"),
                ("instance", "db1:9100")
            ]))
        );
    }

    #[test]
    fn a_prometheus_remote_write_block_parses() {
        let yaml = "- url: https://mimir.example/api/v1/push\n  name: mimir\n  remote_timeout: 10s\n  headers:\n    X-Scope-OrgID: team-a\n  basic_auth:\n    username: vigil\n    password_file: /run/credentials/vigil.service/mimir-password\n  tls_config:\n    ca_file: /etc/vigil/ca.pem\n    server_name: mimir.internal\n  write_relabel_configs:\n    - source_labels: [__name__]\n      regex: 'go_.*'\n      action: drop\n  queue_config:\n    max_samples_per_send: 500\n    batch_send_deadline: 5s\n    min_backoff: 30ms\n    max_backoff: 5s\n    max_shards: 10\n";
        let rw: Vec<RemoteWriteConfig> = serde_saphyr::from_str(yaml).expect("parses");
        validate(&rw, None).expect("valid");
        assert_eq!(rw[0].queue_name(), "mimir");
        assert_eq!(rw[0].queue_config.max_samples_per_send, 500);
        assert_eq!(rw[0].headers["X-Scope-OrgID"], "team-a");
        let tls = rw[0].http().options(Duration::from_secs(1)).tls;
        assert_eq!(tls.server_name.as_deref(), Some("mimir.internal"));
        assert_eq!(tls.ca_file, Some(PathBuf::from("/etc/vigil/ca.pem")));
    }

    #[test]
    fn invalid_blocks_are_refused() {
        let parse =
            |y: &str| -> Vec<RemoteWriteConfig> { serde_saphyr::from_str(y).expect("yaml") };
        let dup = parse("- url: http://a/w\n- url: http://a/w\n");
        assert!(
            validate(&dup, None)
                .expect_err("duplicate")
                .contains("duplicate")
        );
        let both =
            parse("- url: http://a/w\n  bearer_token_file: /t\n  basic_auth: {username: u}\n");
        assert!(
            validate(&both, None)
                .expect_err("both")
                .contains("at most one")
        );
        let bad_url = parse("- url: a/w\n");
        assert!(validate(&bad_url, None).is_err());
        let hdr = parse("- url: http://a/w\n  headers: {Content-Type: x}\n");
        assert!(validate(&hdr, None).is_err());
        let relabel = parse(
            "- url: http://a/w\n  write_relabel_configs:\n    - target_label: x\n    - action: hashmod\n      target_label: s\n",
        );
        assert_eq!(
            validate(&relabel, None).expect_err("no modulus"),
            "remote_write \"7b3ebc\": write_relabel_configs[1]: relabel configuration for hashmod requires non-zero modulus"
        );
        assert!(
            serde_saphyr::from_str::<Vec<RemoteWriteConfig>>(
                "- url: http://a/w\n  write_relabel_configs:\n    - action: explode\n"
            )
            .expect_err("unknown action")
            .to_string()
            .contains("unknown relabel action \"explode\"")
        );
    }

    #[test]
    fn default_names_are_stable_hashes_of_the_url() {
        let a = RemoteWriteConfig {
            url: "http://a/w".into(),
            name: None,
            remote_timeout: default_remote_timeout(),
            headers: BTreeMap::new(),
            bearer_token_file: None,
            basic_auth: None,
            tls_config: TlsClientConfig::default(),
            write_relabel_configs: vec![],
            queue_config: QueueConfig::default(),
        };
        let n = a.queue_name();
        assert_eq!(n.len(), 6);
        assert_eq!(n, a.queue_name());
    }
}
