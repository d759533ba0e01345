//! Name compatibility with the community exporters, side by side on this
//! machine: node_exporter 1.5, postgres_exporter and redis_exporter scrape
//! the same host / servers as the agent's collectors. For every metric both
//! expose, names, types and label names must match; the test prints every
//! difference and fails on a mismatch (or a missing metric) in DESIGN §3's
//! list.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use vigil_agent::Collector;
use vigil_agent::config::{PostgresConfig, RedisConfig, SystemConfig};
use vigil_agent::family::render_text;
use vigil_wire::exposition::parse;

/// DESIGN §3's metric list (the contract).
const DESIGN: &[&str] = &[
    "node_cpu_seconds_total",
    "node_load1",
    "node_load5",
    "node_load15",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_memory_SwapTotal_bytes",
    "node_memory_SwapFree_bytes",
    "node_filesystem_size_bytes",
    "node_filesystem_avail_bytes",
    "node_filesystem_free_bytes",
    "node_disk_read_bytes_total",
    "node_disk_written_bytes_total",
    "node_disk_io_time_seconds_total",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_network_receive_errs_total",
    "node_network_transmit_errs_total",
    "node_boot_time_seconds",
    "node_uname_info",
    "node_pressure_cpu_waiting_seconds_total",
    "node_pressure_io_waiting_seconds_total",
    "node_pressure_io_stalled_seconds_total",
    "node_pressure_memory_waiting_seconds_total",
    "node_pressure_memory_stalled_seconds_total",
    "pg_up",
    "pg_stat_database_numbackends",
    "pg_stat_database_xact_commit",
    "pg_stat_database_xact_rollback",
    "pg_stat_database_blks_hit",
    "pg_stat_database_blks_read",
    "pg_stat_database_deadlocks",
    "pg_stat_database_temp_bytes",
    "pg_database_size_bytes",
    "pg_settings_max_connections",
    "pg_stat_activity_count",
    "pg_stat_activity_max_tx_duration",
    "pg_locks_count",
    "pg_replication_lag_seconds",
    "pg_replication_is_replica",
    "redis_up",
    "redis_uptime_in_seconds",
    "redis_connected_clients",
    "redis_blocked_clients",
    "redis_rejected_connections_total",
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
    "redis_mem_fragmentation_ratio",
    "redis_commands_processed_total",
    "redis_keyspace_hits_total",
    "redis_keyspace_misses_total",
    "redis_evicted_keys_total",
    "redis_expired_keys_total",
    "redis_db_keys",
    "redis_connected_slaves",
    "redis_master_link_up",
];

/// Per metric family: type and the union of label names of its series.
type Shape = BTreeMap<String, (String, BTreeSet<String>)>;

fn shape(text: &str) -> Shape {
    let exp = parse(text, &Default::default()).expect("exposition parses");
    let mut out: Shape = BTreeMap::new();
    for s in &exp.samples {
        let name = s.labels.metric_name().unwrap_or("").to_string();
        let kind = exp
            .metadata
            .get(&name)
            .and_then(|m| m.metric_type)
            .map(|t| t.as_prometheus_str().to_string())
            .unwrap_or_else(|| "untyped".into());
        let e = out.entry(name).or_insert_with(|| (kind, BTreeSet::new()));
        e.1.extend(
            s.labels
                .iter()
                .filter(|l| l.name != "__name__")
                .map(|l| l.name.clone()),
        );
    }
    out
}

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(bin: &str, args: &[String], env: &[(&str, &str)]) -> Exporter {
    let mut cmd = Command::new(bin);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Exporter(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("{bin} is installed: {e}")),
    )
}

async fn scrape(port: u16, must_contain: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await
            && let Ok(t) = r.text().await
            && t.contains(must_contain)
        {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "exporter on port {port} never served {must_contain}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_types_and_labels_match_the_exporters() {
    let (np, pp, rp) = (free_port(), free_port(), free_port());
    let _ne = start(
        "/usr/bin/prometheus-node-exporter",
        &[format!("--web.listen-address=127.0.0.1:{np}")],
        &[],
    );
    let dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable";
    let _pe = start(
        "/usr/bin/prometheus-postgres-exporter",
        &[format!("--web.listen-address=127.0.0.1:{pp}")],
        &[("DATA_SOURCE_NAME", dsn)],
    );
    let _re = start(
        "/usr/bin/prometheus-redis-exporter",
        &[
            "--redis.addr=redis://127.0.0.1:6379".into(),
            format!("--web.listen-address=127.0.0.1:{rp}"),
        ],
        &[],
    );
    let mut theirs = shape(&scrape(np, "node_load1").await);
    theirs.extend(shape(&scrape(pp, "pg_up").await));
    theirs.extend(shape(&scrape(rp, "redis_up").await));

    let mut families = vigil_agent::system::SystemCollector::new(&SystemConfig::default())
        .collect()
        .await;
    families.extend(
        vigil_agent::postgres::PostgresCollector::new(&PostgresConfig::from_dsn(dsn))
            .collect()
            .await,
    );
    families.extend(
        vigil_agent::redis_collector::RedisCollector::new(&RedisConfig::from_url(
            "redis://127.0.0.1:6379",
        ))
        .collect()
        .await,
    );
    let ours = shape(&render_text(families.iter()));

    let mut design_failures = Vec::new();
    let mut compared = 0;
    for (name, (their_type, their_labels)) in &theirs {
        let Some((our_type, our_labels)) = ours.get(name) else {
            continue;
        };
        compared += 1;
        let mut diffs = Vec::new();
        if our_type != their_type {
            diffs.push(format!("type {our_type} vs {their_type}"));
        }
        if our_labels != their_labels {
            diffs.push(format!("labels {our_labels:?} vs {their_labels:?}"));
        }
        if !diffs.is_empty() {
            println!("DIFF {name}: {}", diffs.join("; "));
            if DESIGN.contains(&name.as_str()) {
                design_failures.push(format!("{name}: {}", diffs.join("; ")));
            }
        }
    }
    for name in DESIGN {
        match (theirs.contains_key(*name), ours.contains_key(*name)) {
            (true, false) => {
                println!("MISSING {name}: the exporter has it, the agent does not");
                design_failures.push(format!("{name}: missing from the agent"));
            }
            (false, true) => println!(
                "NOTE {name}: only the agent exposes it here (exporter version or server state)"
            ),
            (false, false) => println!("NOTE {name}: neither exposes it on this machine"),
            (true, true) => {}
        }
    }
    println!("compared {compared} metrics exposed by both");
    assert!(
        compared >= 40,
        "too few common metrics ({compared}); did the exporters start?"
    );
    assert!(
        design_failures.is_empty(),
        "DESIGN §3 mismatches:\n{}",
        design_failures.join("\n")
    );
}
