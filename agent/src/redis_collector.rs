//! The Redis collector: `INFO ALL`, parsed here ([`parse_info`]), exposed
//! under redis_exporter's names (`redis_up`, `redis_connected_clients`,
//! `redis_keyspace_hits_total`, `redis_db_keys{db}`, …).
//!
//! The connection is kept between cycles; connect and response timeouts
//! bound every call, so a server that is down gives `redis_up 0` and one log
//! line per state change. `rediss://` URLs use rustls (the TLS stack the
//! agent already links for HTTPS). Passwords come from the URL, a file or an
//! environment variable and are never logged.

use std::collections::BTreeMap;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo};
use vigil_wire::remote_write::MetricType;

use crate::Collector;
use crate::config::{RedisConfig, read_secret};
use crate::family::Family;

/// `INFO` output: field → value (sections flattened; later wins).
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One keyspace line value (`keys=1,expires=0,avg_ttl=0`) → (keys, expires).
pub fn parse_keyspace(v: &str) -> Option<(f64, f64)> {
    let mut keys = None;
    let mut expires = None;
    for part in v.split(',') {
        match part.split_once('=') {
            Some(("keys", n)) => keys = n.parse().ok(),
            Some(("expires", n)) => expires = n.parse().ok(),
            _ => {}
        }
    }
    Some((keys?, expires.unwrap_or(0.0)))
}

/// (INFO field, metric name, type, help) in redis_exporter's naming.
const FIELDS: &[(&str, &str, MetricType, &str)] = &[
    (
        "uptime_in_seconds",
        "redis_uptime_in_seconds",
        MetricType::Gauge,
        "uptime_in_seconds metric",
    ),
    (
        "connected_clients",
        "redis_connected_clients",
        MetricType::Gauge,
        "connected_clients metric",
    ),
    (
        "blocked_clients",
        "redis_blocked_clients",
        MetricType::Gauge,
        "blocked_clients metric",
    ),
    (
        "rejected_connections",
        "redis_rejected_connections_total",
        MetricType::Counter,
        "rejected_connections metric",
    ),
    (
        "total_connections_received",
        "redis_connections_received_total",
        MetricType::Counter,
        "total_connections_received metric",
    ),
    (
        "used_memory",
        "redis_memory_used_bytes",
        MetricType::Gauge,
        "used_memory metric",
    ),
    (
        "used_memory_rss",
        "redis_memory_used_rss_bytes",
        MetricType::Gauge,
        "used_memory_rss metric",
    ),
    (
        "used_memory_peak",
        "redis_memory_used_peak_bytes",
        MetricType::Gauge,
        "used_memory_peak metric",
    ),
    (
        "maxmemory",
        "redis_memory_max_bytes",
        MetricType::Gauge,
        "maxmemory metric",
    ),
    (
        "mem_fragmentation_ratio",
        "redis_mem_fragmentation_ratio",
        MetricType::Gauge,
        "mem_fragmentation_ratio metric",
    ),
    (
        "total_commands_processed",
        "redis_commands_processed_total",
        MetricType::Counter,
        "total_commands_processed metric",
    ),
    (
        "keyspace_hits",
        "redis_keyspace_hits_total",
        MetricType::Counter,
        "keyspace_hits metric",
    ),
    (
        "keyspace_misses",
        "redis_keyspace_misses_total",
        MetricType::Counter,
        "keyspace_misses metric",
    ),
    (
        "evicted_keys",
        "redis_evicted_keys_total",
        MetricType::Counter,
        "evicted_keys metric",
    ),
    (
        "expired_keys",
        "redis_expired_keys_total",
        MetricType::Counter,
        "expired_keys metric",
    ),
    (
        "total_net_input_bytes",
        "redis_net_input_bytes_total",
        MetricType::Counter,
        "total_net_input_bytes metric",
    ),
    (
        "total_net_output_bytes",
        "redis_net_output_bytes_total",
        MetricType::Counter,
        "total_net_output_bytes metric",
    ),
    (
        "connected_slaves",
        "redis_connected_slaves",
        MetricType::Gauge,
        "connected_slaves metric",
    ),
];

/// Turns parsed `INFO` into families. `databases` is the configured number
/// of databases (every one is reported, empty ones as 0, like
/// redis_exporter); `None` reports only the databases `INFO` lists.
pub fn info_families(info: &BTreeMap<String, String>, databases: Option<u32>) -> Vec<Family> {
    let mut out = Vec::new();
    for (field, name, kind, help) in FIELDS {
        if let Some(v) = info.get(*field).and_then(|v| v.trim().parse::<f64>().ok()) {
            out.push(Family::single(name, help, *kind, v));
        }
    }
    if info.get("role").map(String::as_str) == Some("slave") {
        let up = info.get("master_link_status").map(String::as_str) == Some("up");
        out.push(Family::single(
            "redis_master_link_up",
            "master_link_up metric",
            MetricType::Gauge,
            if up { 1.0 } else { 0.0 },
        ));
    }
    let mut keys = Family::gauge("redis_db_keys", "Total number of keys by DB");
    let mut expiring = Family::gauge(
        "redis_db_keys_expiring",
        "Total number of expiring keys by DB",
    );
    let mut dbs: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    if let Some(n) = databases {
        for i in 0..n {
            dbs.insert(format!("db{i}"), (0.0, 0.0));
        }
    }
    for (k, v) in info {
        if k.starts_with("db")
            && k[2..].chars().all(|c| c.is_ascii_digit())
            && k.len() > 2
            && let Some(kv) = parse_keyspace(v)
        {
            dbs.insert(k.clone(), kv);
        }
    }
    for (db, (k, e)) in &dbs {
        keys.push(&[("db", db.as_str())], *k);
        expiring.push(&[("db", db.as_str())], *e);
    }
    out.push(keys);
    out.push(expiring);
    out
}

/// The collector of one server.
pub struct RedisCollector {
    cfg: RedisConfig,
    /// `host:port` for logs and the collector name (no credentials).
    target: String,
    conn: Option<MultiplexedConnection>,
    databases: Option<u32>,
    was_up: Option<bool>,
}

fn target_name(url: &str) -> String {
    match url.into_connection_info() {
        Ok(ci) => match ci.addr() {
            redis::ConnectionAddr::Tcp(h, p)
            | redis::ConnectionAddr::TcpTls {
                host: h, port: p, ..
            } => format!("{h}:{p}"),
            redis::ConnectionAddr::Unix(p) => p.display().to_string(),
            _ => "redis".into(),
        },
        Err(_) => "invalid-url".into(),
    }
}

impl RedisCollector {
    pub fn new(cfg: &RedisConfig) -> Self {
        Self {
            target: target_name(&cfg.url),
            cfg: cfg.clone(),
            conn: None,
            databases: None,
            was_up: None,
        }
    }

    async fn connect(&self) -> Result<MultiplexedConnection, String> {
        let mut info = self
            .cfg
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("invalid url: {e}"))?;
        let secret = read_secret(
            self.cfg.password_file.as_deref(),
            self.cfg.password_env.as_deref(),
        )?;
        if secret.is_some() || self.cfg.username.is_some() {
            let mut rs = info.redis_settings().clone();
            if let Some(pw) = secret {
                rs = rs.set_password(pw);
            }
            if let Some(u) = &self.cfg.username {
                rs = rs.set_username(u);
            }
            info = info.set_redis_settings(rs);
        }
        let client = Client::open(info).map_err(|e| e.to_string())?;
        let t = self.cfg.timeout.0;
        let cc = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t));
        tokio::time::timeout(
            t + std::time::Duration::from_secs(1),
            client.get_multiplexed_async_connection_with_config(&cc),
        )
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())
    }

    async fn info(&mut self, conn: &mut MultiplexedConnection) -> Result<String, String> {
        let t = self.cfg.timeout.0;
        if self.databases.is_none() {
            // CONFIG may be renamed or forbidden; then only listed dbs show.
            let r: Result<Result<Vec<String>, _>, _> = tokio::time::timeout(
                t,
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("databases")
                    .query_async(conn),
            )
            .await;
            self.databases = match r {
                Ok(Ok(v)) => v.get(1).and_then(|n| n.parse().ok()).or(Some(0)),
                _ => Some(0),
            };
        }
        tokio::time::timeout(t, redis::cmd("INFO").arg("ALL").query_async::<String>(conn))
            .await
            .map_err(|_| "INFO timed out".to_string())?
            .map_err(|e| e.to_string())
    }

    fn report(&mut self, up: bool, why: Option<&str>) {
        if self.was_up != Some(up) {
            if up {
                tracing::info!(target = %self.target, "redis reachable");
            } else {
                tracing::warn!(target = %self.target, error = why.unwrap_or(""), "redis unreachable; redis_up=0");
            }
            self.was_up = Some(up);
        }
    }
}

impl Collector for RedisCollector {
    fn name(&self) -> String {
        format!("redis/{}", self.target)
    }

    async fn collect(&mut self) -> Vec<Family> {
        let conn = match self.conn.take() {
            Some(c) => Ok(c),
            None => self.connect().await,
        };
        let mut out = Vec::new();
        let up = match conn {
            Err(e) => {
                self.report(false, Some(&e));
                false
            }
            Ok(mut c) => match self.info(&mut c).await {
                Ok(text) => {
                    let info = parse_info(&text);
                    let dbs = self.databases.filter(|n| *n > 0);
                    out = info_families(&info, dbs);
                    self.conn = Some(c);
                    self.report(true, None);
                    true
                }
                Err(e) => {
                    self.report(false, Some(&e));
                    false
                }
            },
        };
        out.push(Family::single(
            "redis_up",
            "Information about the Redis instance",
            MetricType::Gauge,
            if up { 1.0 } else { 0.0 },
        ));
        crate::family::add_labels(&mut out, &self.cfg.labels);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INFO: &str = "# Server\r\nredis_version:7.0.11\r\nuptime_in_seconds:544\r\n\r\n# Clients\r\nconnected_clients:3\r\nblocked_clients:0\r\n# Memory\r\nused_memory:990592\r\nmaxmemory:0\r\nmem_fragmentation_ratio:7.46\r\n# Stats\r\nkeyspace_hits:10\r\nkeyspace_misses:4\r\n# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nconnected_slaves:0\r\n# Keyspace\r\ndb0:keys=5,expires=1,avg_ttl=0\r\ndb3:keys=2,expires=0,avg_ttl=0\r\n";

    #[test]
    fn info_maps_to_exporter_names() {
        let fams = info_families(&parse_info(INFO), Some(4));
        let get = |n: &str| fams.iter().find(|f| f.name == n).map(|f| f.series.clone());
        assert_eq!(
            get("redis_uptime_in_seconds").expect("uptime")[0].value,
            544.0
        );
        assert_eq!(
            get("redis_keyspace_hits_total").expect("hits")[0].value,
            10.0
        );
        assert_eq!(
            get("redis_mem_fragmentation_ratio").expect("frag")[0].value,
            7.46
        );
        assert_eq!(get("redis_master_link_up").expect("link")[0].value, 1.0);
        let keys = get("redis_db_keys").expect("keys");
        assert_eq!(keys.len(), 4);
        assert_eq!(
            keys.iter()
                .find(|s| s.labels.get("db") == Some("db0"))
                .expect("db0")
                .value,
            5.0
        );
        assert_eq!(
            keys.iter()
                .find(|s| s.labels.get("db") == Some("db1"))
                .expect("db1")
                .value,
            0.0
        );
    }

    #[test]
    fn target_names_hide_credentials() {
        assert_eq!(
            target_name("redis://:secret@127.0.0.1:6380/0"),
            "127.0.0.1:6380"
        );
    }

    proptest! {
        #[test]
        fn info_parser_never_panics(s in "\\PC*") {
            let _ = info_families(&parse_info(&s), Some(2));
        }

        #[test]
        fn info_round_trips(fields in proptest::collection::btree_map("[a-z_]{1,20}", "[a-z0-9.,=]{0,20}", 0..30)) {
            let text: String = fields.iter().map(|(k, v)| format!("{k}:{v}\r\n")).collect();
            prop_assert_eq!(parse_info(&format!("# Section\r\n{text}")), fields.into_iter().collect::<BTreeMap<_, _>>());
        }
    }
}
