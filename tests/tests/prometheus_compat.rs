//! A real Prometheus 2.42 scrapes a real node_exporter and remote-writes to
//! `vigil serve`; the series and label values Vigil reports must equal those
//! in Prometheus's own storage.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vigil_e2e::{Collector, Proc, free_port, now_ms, wait_ready};

fn require(bin: &str, package: &str) -> String {
    let path = format!("/usr/bin/{bin}");
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: install the Debian package `{package}` (tests/run.sh does)"
    );
    path
}

fn get(url: &str) -> Value {
    reqwest::blocking::get(url)
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

fn series(base: &str, start_s: f64, end_s: f64) -> BTreeSet<String> {
    let v = get(&format!(
        "{base}/api/v1/series?match[]=%7Bjob%3D%22node%22%7D&start={start_s}&end={end_s}"
    ));
    assert_eq!(v["status"], "success", "{v}");
    v["data"]
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn label_values(base: &str, name: &str, start_s: f64, end_s: f64) -> BTreeSet<String> {
    let v = get(&format!(
        "{base}/api/v1/label/{name}/values?match[]=%7Bjob%3D%22node%22%7D&start={start_s}&end={end_s}"
    ));
    v["data"]
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn prometheus_remote_write_matches_its_own_storage() {
    let prometheus = require("prometheus", "prometheus");
    let node_exporter = require("prometheus-node-exporter", "prometheus-node-exporter");
    let dir = tempfile::tempdir().expect("tempdir");
    let vigil = Collector::start(&dir.path().join("vigil"), &[]).expect("vigil starts");

    let ne_port = free_port();
    let _ne = Proc::spawn(
        "node_exporter",
        Command::new(node_exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{ne_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
    .expect("node_exporter starts");
    wait_ready(
        &format!("http://127.0.0.1:{ne_port}/metrics"),
        Duration::from_secs(20),
    )
    .expect("node_exporter up");

    let prom_port = free_port();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:{ne_port}"]
remote_write:
  - url: {}
    queue_config:
      batch_send_deadline: 500ms
      max_samples_per_send: 2000
    metadata_config:
      send_interval: 1s
"#,
            vigil.url("/api/v1/write")
        ),
    )
    .expect("write config");
    let prom_base = format!("http://127.0.0.1:{prom_port}");
    let _prom = Proc::spawn(
        "prometheus",
        Command::new(prometheus)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
    .expect("prometheus starts");
    wait_ready(&format!("{prom_base}/-/ready"), Duration::from_secs(60)).expect("prometheus ready");

    let start_s = (now_ms() / 1000 - 60) as f64;
    let mut last = (BTreeSet::new(), BTreeSet::new());
    // Prometheus applies its first target set about 5 s after start.
    for _ in 0..60 {
        // Compare up to a cut-off the remote-write queue has certainly passed.
        let end_s = (now_ms() - 3000) as f64 / 1000.0;
        let ours = series(&vigil.url(""), start_s, end_s);
        let theirs = series(&prom_base, start_s, end_s);
        if !theirs.is_empty() && ours == theirs {
            let names_ours = label_values(&vigil.url(""), "__name__", start_s, end_s);
            let names_theirs = label_values(&prom_base, "__name__", start_s, end_s);
            assert_eq!(names_ours, names_theirs);
            assert!(
                names_ours.contains("node_cpu_seconds_total"),
                "{names_ours:?}"
            );
            assert!(names_ours.contains("up"));
            // Metadata travelled too.
            let meta = get(&format!(
                "{}/api/v1/metadata?metric=node_cpu_seconds_total",
                vigil.url("")
            ));
            assert_eq!(
                meta["data"]["node_cpu_seconds_total"][0]["type"], "counter",
                "{meta}"
            );
            return;
        }
        last = (ours, theirs);
        std::thread::sleep(Duration::from_secs(1));
    }
    let only_vigil: Vec<_> = last.0.difference(&last.1).take(10).collect();
    let only_prom: Vec<_> = last.1.difference(&last.0).take(10).collect();
    panic!(
        "series differ: {} in Vigil, {} in Prometheus; only in Vigil {only_vigil:?}; only in Prometheus {only_prom:?}",
        last.0.len(),
        last.1.len()
    );
}
