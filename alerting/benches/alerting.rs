//! Side-by-side benchmark of `vigil-alertmanager` and Alertmanager 0.25:
//!
//! 1. latency from `POST /api/v2/alerts` to webhook delivery with
//!    `group_wait: 0s` (one new group per alert, sequential; median, p95);
//! 2. throughput: 10,000 distinct alerts (100 alert names × 100 instances,
//!    grouped by alert name) posted in batches of 1,000, timed until every
//!    alert has been delivered; peak RSS of the process.
//!
//! Run: `cargo bench -p vigil-alerting --bench alerting` (release build).
//! Environment: `BENCH_LATENCY_N` (default 200), `BENCH_ALERTS` (10000).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use parking_lot::Mutex;
use serde_json::{Value, json};

type Arrivals = Arc<Mutex<Vec<(Instant, Value)>>>;

#[path = "../../tests/src/ports.rs"]
mod ports;
use ports::free_port;

async fn capture() -> (String, Arrivals) {
    let arrivals: Arrivals = Arc::default();
    let app = axum::Router::new()
        .fallback(
            |State(a): State<Arrivals>, body: axum::body::Bytes| async move {
                let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                a.lock().push((Instant::now(), v));
                "ok"
            },
        )
        .with_state(Arc::clone(&arrivals));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (url, arrivals)
}

struct Peer {
    name: &'static str,
    child: Child,
    url: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .unwrap_or(f64::NAN)
    }
}

async fn start(name: &'static str, config: &str, dir: &Path) -> Peer {
    let port = free_port();
    let cfg = dir.join(format!("{name}.yml"));
    std::fs::write(&cfg, config).expect("write config");
    let data = dir.join(format!("{name}-data"));
    let child = if name == "vigil" {
        Command::new(env!("CARGO_BIN_EXE_vigil-alertmanager"))
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--storage.path={}", data.display()))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn vigil")
    } else {
        Command::new("/usr/bin/prometheus-alertmanager")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--storage.path={}", data.display()))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn alertmanager")
    };
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..400 {
        if client
            .get(format!("{url}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Peer { name, child, url }
}

fn config(hook: &str, group_by: &str) -> String {
    format!(
        "route:\n  receiver: hook\n  group_by: [{group_by}]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {hook}\n"
    )
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn latency(peer: &Peer, arrivals: &Arrivals, n: usize, tag: &str) -> Vec<f64> {
    let client = reqwest::Client::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("Lat{tag}{i}");
        let body = json!([{"labels": {"alertname": name, "instance": "x"}}]);
        let t0 = Instant::now();
        let r = client
            .post(format!("{}/api/v2/alerts", peer.url))
            .json(&body)
            .send()
            .await;
        assert!(
            r.is_ok_and(|r| r.status().is_success()),
            "{} rejected an alert",
            peer.name
        );
        let deadline = t0 + Duration::from_secs(10);
        loop {
            let hit = arrivals
                .lock()
                .iter()
                .find(|(_, v)| v["groupLabels"]["alertname"] == name.as_str())
                .map(|(t, _)| *t);
            if let Some(t) = hit {
                out.push((t - t0).as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() > deadline {
                eprintln!("{}: alert {name} not delivered within 10 s", peer.name);
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    out.sort_by(|a, b| a.total_cmp(b));
    out
}

async fn throughput(peer: &Peer, arrivals: &Arrivals, total: usize) -> (f64, usize) {
    let client = reqwest::Client::new();
    let per_name = 100;
    let t0 = Instant::now();
    let all: Vec<Value> = (0..total)
        .map(|i| json!({"labels": {"alertname": format!("Tp{}", i / per_name), "instance": format!("host{}", i % per_name), "severity": "warning"}}))
        .collect();
    for chunk in all.chunks(1000) {
        let r = client
            .post(format!("{}/api/v2/alerts", peer.url))
            .json(&chunk)
            .send()
            .await;
        assert!(
            r.is_ok_and(|r| r.status().is_success()),
            "{} rejected a batch",
            peer.name
        );
    }
    let deadline = t0 + Duration::from_secs(120);
    loop {
        // Distinct alerts delivered so far (a group may be re-sent as it grows).
        let seen: usize = {
            let a = arrivals.lock();
            let mut fps: HashMap<String, ()> = HashMap::new();
            for (_, v) in a.iter() {
                for al in v["alerts"].as_array().into_iter().flatten() {
                    if let Some(fp) = al["fingerprint"].as_str() {
                        fps.insert(fp.to_string(), ());
                    }
                }
            }
            fps.len()
        };
        if seen >= total || Instant::now() > deadline {
            return (t0.elapsed().as_secs_f64(), seen);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_LATENCY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let total: usize = std::env::var("BENCH_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let have_am = Path::new("/usr/bin/prometheus-alertmanager").exists();
    let dir = tempfile::tempdir().expect("tempdir");

    println!(
        "| system | latency median (ms) | latency p95 (ms) | {total} alerts: time (s) | delivered | peak RSS (MiB) |"
    );
    println!("|---|---|---|---|---|---|");
    let mut names = vec!["vigil"];
    if have_am {
        names.push("alertmanager");
    }
    for name in names {
        let (hook, arrivals) = capture().await;
        let peer = start(name, &config(&hook, "alertname"), dir.path()).await;
        // Warm-up, not measured.
        latency(&peer, &arrivals, 5, "warm").await;
        let lat = latency(&peer, &arrivals, n, "m").await;
        arrivals.lock().clear();
        let (secs, seen) = throughput(&peer, &arrivals, total).await;
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {} | {:.1} |",
            peer.name,
            pct(&lat, 0.5),
            pct(&lat, 0.95),
            secs,
            seen,
            peer.peak_rss_mib()
        );
    }
}
