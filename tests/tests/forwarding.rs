//! Scale-out through the real Prometheus 2.42 and VictoriaMetrics 1.79
//! (Debian's `prometheus` and `victoria-metrics`):
//!
//! * remote_write forwarding: samples pushed to `vigil serve` arrive in a
//!   Prometheus started with `--web.enable-remote-write-receiver`, and in a
//!   single-node VictoriaMetrics (no deduplication, so a sample sent twice
//!   would be counted twice), also those acknowledged while the receiver
//!   was down and Vigil was then killed with SIGKILL — each exactly once,
//!   none refused as out of order; against VictoriaMetrics with at least 4
//!   parallel shards;
//! * rules against a remote query API: Vigil evaluates a recording rule and
//!   alerting rules on data that exists only in Prometheus (or only in
//!   VictoriaMetrics); a remote execution error shows in the rule's health.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::{
    Collector, Proc, free_port, now_ms, post_remote_write, series_request, wait_ready,
};
use vigil_wire::remote_write::encode_write_request;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const VICTORIA_METRICS: &str = "/usr/bin/victoria-metrics";

/// A real remote_write receiver with a Prometheus-compatible query API.
#[derive(Clone, Copy, Debug)]
enum Receiver {
    Prometheus,
    VictoriaMetrics,
}

impl Receiver {
    /// Starts it on `port` with its data under `dir` (the same directory
    /// again after a stop: the data is kept).
    fn start(self, dir: &Path, port: u16) -> Proc {
        match self {
            Receiver::Prometheus => start_prometheus(dir, port),
            Receiver::VictoriaMetrics => start_victoria_metrics(dir, port),
        }
    }
}

/// Single-node VictoriaMetrics: no deduplication (the default), no query
/// latency offset and no result cache, so counts are exact as soon as the
/// data is searchable.
fn start_victoria_metrics(dir: &Path, port: u16) -> Proc {
    assert!(
        Path::new(VICTORIA_METRICS).exists(),
        "{VICTORIA_METRICS} is missing: install the Debian package `victoria-metrics` (tests/run.sh does)"
    );
    let p = Proc::spawn(
        "victoria-metrics",
        Command::new(VICTORIA_METRICS)
            .arg(format!(
                "-storageDataPath={}",
                dir.join("vm-data").display()
            ))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=1y")
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .arg("-loggerLevel=ERROR")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
    .expect("victoria-metrics starts");
    wait_ready(
        &format!("http://127.0.0.1:{port}/health"),
        Duration::from_secs(30),
    )
    .expect("victoria-metrics ready");
    p
}

fn start_prometheus(dir: &Path, port: u16) -> Proc {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: install the Debian package `prometheus` (tests/run.sh does)"
    );
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1m\n").expect("write prometheus.yml");
    let p = Proc::spawn(
        "prometheus",
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
    .expect("prometheus starts");
    wait_ready(
        &format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(30),
    )
    .expect("prometheus ready");
    p
}

fn query(base: &str, q: &str) -> Value {
    let v: Value = reqwest::blocking::Client::new()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("query {q} at {base}: {e}"));
    assert_eq!(v["status"], "success", "{q}: {v}");
    v
}

/// The single value of a one-element instant vector, if there is one.
fn scalar(base: &str, q: &str) -> Option<f64> {
    let v = query(base, q);
    let r = v["data"]["result"].as_array()?;
    let first = r.first()?;
    first["value"][1].as_str()?.parse().ok()
}

fn wait_until<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A metric value on Vigil's `/metrics` (first line that starts with
/// `prefix`).
fn self_metric(vigil: &Collector, prefix: &str) -> Option<f64> {
    let text = reqwest::blocking::get(vigil.url("/metrics"))
        .and_then(|r| r.text())
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Pushes `n` samples per series for three series, one second apart from
/// `start_ms`; every request must be acknowledged.
fn push(vigil: &Collector, phase: &str, start_ms: i64, n: usize) -> usize {
    let mut pushed = 0;
    for i in 0..n {
        let t = start_ms + i as i64 * 1000;
        for inst in ["a", "b", "c"] {
            let req = series_request(
                &[
                    ("__name__", "fwd_test"),
                    ("instance", inst),
                    ("phase", phase),
                    ("secret_id", "x"),
                ],
                &[(t, i as f64)],
            );
            let (status, body) = vigil.remote_write(&req).expect("push");
            assert_eq!(status, 204, "{body}");
            pushed += 1;
        }
    }
    pushed
}

#[test]
fn forwarding_survives_a_receiver_outage_and_kill_9_exactly_once() {
    outage_and_kill_9(Receiver::Prometheus, "");
}

#[test]
fn forwarding_to_victoria_metrics_in_shards_survives_an_outage_and_kill_9_exactly_once() {
    let (vigil, _dir) = outage_and_kill_9(
        Receiver::VictoriaMetrics,
        "      min_shards: 4\n      max_shards: 8\n",
    );
    // Every batch went out in four to eight parallel shards.
    let shards = self_metric(&vigil, "vigil_remote_storage_shards{").unwrap_or(0.0);
    assert!((4.0..=8.0).contains(&shards), "shards in use: {shards}");
    assert_eq!(
        self_metric(&vigil, "vigil_remote_storage_shards_max{"),
        Some(8.0)
    );
}

/// Pushes three phases to Vigil, forwarding to `receiver`: one while it is
/// up, one while it is down followed by a `kill -9` of Vigil, one after
/// Vigil's restart; then the receiver comes back and must hold every
/// sample exactly once. `queue_extra` adds `queue_config` keys. Returns the
/// restarted Vigil (and its directory) for further checks.
fn outage_and_kill_9(receiver: Receiver, queue_extra: &str) -> (Collector, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let prom_port = free_port();
    let prom_base = format!("http://127.0.0.1:{prom_port}");
    let mut prom = receiver.start(dir.path(), prom_port);

    let cfg = dir.path().join("vigil.yml");
    std::fs::write(
        &cfg,
        format!(
            "external_labels:\n  replica: r1\nremote_write:\n  - url: {prom_base}/api/v1/write\n    name: prom\n    write_relabel_configs:\n      - regex: secret_.*\n        action: labeldrop\n      - source_labels: [phase]\n        regex: ignored\n        action: drop\n    queue_config:\n      max_samples_per_send: 40\n      batch_send_deadline: 100ms\n      min_backoff: 50ms\n      max_backoff: 500ms\n{queue_extra}"
        ),
    )
    .expect("write vigil.yml");
    let vigil_port = free_port();
    let data = dir.path().join("vigil");
    let args = ["--config", cfg.to_str().expect("utf-8 path")];
    let mut vigil = Collector::start_on(&data, vigil_port, &args).expect("vigil starts");

    let base = now_ms() - 10 * 60 * 1000;
    // Phase 1: Prometheus up.
    let n1 = push(&vigil, "one", base, 30);
    // Dropped by write_relabel_configs: never forwarded, counted.
    push(&vigil, "ignored", base, 2);
    let total = |phase: &str| {
        scalar(
            &prom_base,
            &format!("sum(count_over_time(fwd_test{{phase=\"{phase}\",replica=\"r1\"}}[1h]))"),
        )
    };
    wait_until("phase one in Prometheus", Duration::from_secs(20), || {
        total("one").filter(|&c| c as usize == n1)
    });
    // External label added, labeldrop applied.
    let v = query(
        &prom_base,
        "last_over_time(fwd_test{phase=\"one\",instance=\"a\"}[1h])",
    );
    let metric = &v["data"]["result"][0]["metric"];
    assert_eq!(metric["replica"], "r1", "{v}");
    assert!(metric.get("secret_id").is_none(), "{v}");

    // Phase 2: Prometheus down; Vigil still acknowledges, and queues.
    prom.terminate(Duration::from_secs(20))
        .expect("prometheus stops");
    let n2 = push(&vigil, "two", base + 60_000, 40);
    wait_until(
        "a failed send to be retried",
        Duration::from_secs(10),
        || self_metric(&vigil, "vigil_remote_storage_samples_retried_total{").filter(|&v| v > 0.0),
    );
    let pending = self_metric(&vigil, "vigil_remote_storage_samples_pending{").unwrap_or(0.0);
    assert!(pending >= n2 as f64, "pending {pending} < {n2}");
    // A crash with the queue full of acknowledged samples.
    vigil.proc.kill9();
    let vigil = Collector::start_on(&data, vigil_port, &args).expect("vigil restarts");
    // Phase 3: more data after the restart, still no receiver.
    let n3 = push(&vigil, "three", base + 120_000, 20);

    // The receiver comes back on the same data directory.
    let _prom = receiver.start(dir.path(), prom_port);
    for (phase, n) in [("one", n1), ("two", n2), ("three", n3)] {
        wait_until(
            &format!("phase {phase} in Prometheus"),
            Duration::from_secs(30),
            || total(phase).filter(|&c| c as usize == n),
        );
    }
    wait_until("the queue to drain", Duration::from_secs(10), || {
        self_metric(&vigil, "vigil_remote_storage_samples_pending{").filter(|&v| v == 0.0)
    });
    // Nothing was refused by Prometheus (an out-of-order or reshuffled
    // re-send would be) and nothing dropped for space.
    assert_eq!(
        self_metric(&vigil, "vigil_remote_storage_samples_failed_total{"),
        Some(0.0)
    );
    assert_eq!(
        self_metric(
            &vigil,
            "vigil_remote_storage_samples_dropped_total{remote_name=\"prom\",url=\"",
        ),
        Some(0.0),
        "queue_full drops"
    );
    assert_eq!(total("ignored"), None, "relabel-dropped series arrived");
    // Exactly: no sample twice, no stray timestamps.
    for (phase, n) in [("one", n1), ("two", n2), ("three", n3)] {
        assert_eq!(total(phase), Some(n as f64), "phase {phase}");
    }
    // Per series too, and every series whole (sharding keeps each series
    // in one request stream).
    for inst in ["a", "b", "c"] {
        let q = format!("count_over_time(fwd_test{{instance=\"{inst}\",replica=\"r1\"}}[1h])");
        let v = query(&prom_base, &q);
        let per_phase: usize = v["data"]["result"]
            .as_array()
            .expect("result")
            .iter()
            .map(|r| {
                r["value"][1]
                    .as_str()
                    .and_then(|x| x.parse::<f64>().ok())
                    .unwrap_or(0.0) as usize
            })
            .sum();
        assert_eq!(per_phase, (n1 + n2 + n3) / 3, "instance {inst}: {v}");
    }
    (vigil, dir)
}

#[test]
fn rules_evaluate_against_prometheus_as_the_remote_query_api() {
    remote_query_rules(Receiver::Prometheus);
}

#[test]
fn rules_evaluate_against_victoria_metrics_as_the_remote_query_api() {
    remote_query_rules(Receiver::VictoriaMetrics);
}

fn remote_query_rules(receiver: Receiver) {
    let dir = tempfile::tempdir().expect("tempdir");
    let prom_port = free_port();
    let prom_base = format!("http://127.0.0.1:{prom_port}");
    let _prom = receiver.start(dir.path(), prom_port);
    // Data only in Prometheus.
    let now = now_ms();
    for (inst, v) in [("a", 5.0), ("b", 1.0)] {
        let samples: Vec<(i64, f64)> = (0..7).map(|i| (now - 30_000 + i * 5_000, v)).collect();
        let req = series_request(
            &[
                ("__name__", "remote_only_metric"),
                ("job", "api"),
                ("instance", inst),
            ],
            &samples,
        );
        let (status, body) = post_remote_write(
            &format!("{prom_base}/api/v1/write"),
            encode_write_request(&req),
        )
        .expect("push to prometheus");
        assert!(status / 100 == 2, "{status} {body}");
    }
    let rules = dir.path().join("remote.rules.yml");
    std::fs::write(
        &rules,
        r#"groups:
  - name: remote
    interval: 1s
    rules:
      - record: job:remote_only_metric:sum
        expr: sum by (job) (remote_only_metric)
      - alert: RemoteHigh
        expr: remote_only_metric > 3
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.instance }} is {{ $value }}; total {{ with query \"sum(remote_only_metric)\" }}{{ . | first | value }}{{ end }}"
      - alert: ManyToMany
        expr: remote_only_metric * on(job) remote_only_metric
"#,
    )
    .expect("write rules");
    let cfg = dir.path().join("vigil.yml");
    std::fs::write(
        &cfg,
        format!(
            "rules:\n  files: ['{}']\n  evaluation_interval: 1s\n  remote_query:\n    url: {prom_base}\n    timeout: 10s\n",
            rules.display()
        ),
    )
    .expect("write vigil.yml");
    let vigil = Collector::start(
        &dir.path().join("vigil"),
        &["--config", cfg.to_str().expect("utf-8 path")],
    )
    .expect("vigil starts");
    let vigil_base = vigil.url("");

    // The alert fires for instance a only, with a templated annotation that
    // itself queried the remote API.
    let alerts = wait_until("RemoteHigh firing", Duration::from_secs(20), || {
        let v = vigil.get_json("/api/v1/alerts").ok()?;
        let alerts: Vec<Value> = v["data"]["alerts"]
            .as_array()?
            .iter()
            .filter(|a| a["labels"]["alertname"] == "RemoteHigh")
            .cloned()
            .collect();
        (!alerts.is_empty() && alerts.iter().all(|a| a["state"] == "firing")).then_some(alerts)
    });
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["labels"]["instance"], "a");
    assert_eq!(alerts[0]["annotations"]["summary"], "a is 5; total 6");

    // The recorded series is written to Vigil's own store.
    let recorded = wait_until("the recorded series", Duration::from_secs(20), || {
        scalar(&vigil_base, "job:remote_only_metric:sum{job=\"api\"}")
    });
    assert_eq!(recorded, 6.0);
    // The raw data never was.
    let v = query(&vigil_base, "remote_only_metric");
    assert_eq!(v["data"]["result"].as_array().map(Vec::len), Some(0), "{v}");

    // Prometheus's execution error shows in the rule's health.
    let v = vigil.get_json("/api/v1/rules").expect("rules");
    let rules = v["data"]["groups"][0]["rules"].as_array().expect("rules");
    let broken = rules
        .iter()
        .find(|r| r["name"] == "ManyToMany")
        .expect("ManyToMany listed");
    assert_eq!(broken["health"], "err", "{broken}");
    let err = broken["lastError"].as_str().unwrap_or_default();
    // Each names the duplicate series its own way.
    let says = match receiver {
        Receiver::Prometheus => "many-to-many",
        Receiver::VictoriaMetrics => "duplicate",
    };
    assert!(err.contains(says), "{err}");
    let ok = rules
        .iter()
        .find(|r| r["name"] == "job:remote_only_metric:sum")
        .expect("recording rule listed");
    assert_eq!(ok["health"], "ok", "{ok}");
    let failures = self_metric(&vigil, "vigil_rules_remote_query_failures_total{").unwrap_or(0.0);
    assert!(failures >= 1.0, "failures {failures}");
}
