//! `/api/v1/rules` and `/api/v1/alerts` compared with a real Prometheus
//! 2.42 (`/usr/bin/prometheus`) loading the same rule files: the rules JSON
//! must be identical before any evaluation (so times and states are the
//! deterministic "never evaluated" values on both sides), and an alert
//! both sides have evaluated must be listed identically, its activeAt
//! (the evaluation's wall-clock time) aside.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_promql::{Engine, EngineOptions, MemStorage};
use vigil_rules::{AlertSender, ManagerOptions, OutgoingAlert, RuleManager, SampleAppender};
use vigil_wire::{Labels, Sample};

struct Nothing;

impl SampleAppender for Nothing {
    fn append(&self, _: Vec<(Labels, Sample)>) -> Result<(), String> {
        Ok(())
    }
}

impl AlertSender for Nothing {
    fn send(&self, _: Vec<OutgoingAlert>) {}
}

/// Kills the Prometheus child when the test ends, pass or fail.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
}

#[path = "../../../tests/src/ports.rs"]
mod ports;
use ports::free_port;

#[test]
fn rules_and_alerts_json_match_prometheus() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pack = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    // A one-day interval keeps Prometheus from evaluating during the test.
    let mut files = Vec::new();
    for name in ["system", "api", "postgres", "redis", "llm"] {
        let text = std::fs::read_to_string(pack.join(format!("{name}.rules.yml")))
            .unwrap_or_else(|e| panic!("{e}"));
        let text = text.replacen(
            "    rules:\n",
            "    interval: 1d\n    limit: 7\n    rules:\n",
            1,
        );
        let path = dir.path().join(format!("{name}.rules.yml"));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        files.push(path.display().to_string());
    }
    let config = dir.path().join("prometheus.yml");
    // One group that does evaluate (every second), for /api/v1/alerts: an
    // alert held pending by a long `for`, with templated annotations.
    let always = dir.path().join("always.rules.yml");
    std::fs::write(&always, ALWAYS).unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = String::from("global:\n  evaluation_interval: 1d\nrule_files:\n");
    for f in files.iter().chain([&always.display().to_string()]) {
        cfg.push_str(&format!("  - {f}\n"));
    }
    std::fs::write(&config, cfg).unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("prometheus must be installed (/usr/bin/prometheus): {e}"));
    let _guard = Guard(child);
    let started = Instant::now();
    while get(port, "/-/ready").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "prometheus did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let theirs: serde_json::Value = without_always(
        serde_json::from_str(&get(port, "/api/v1/rules").unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}")),
    );

    let set = vigil_rules::load_rule_files(&files).unwrap_or_else(|e| panic!("{e:?}"));
    let m = RuleManager::new(
        Arc::new(Engine::new(EngineOptions::default())),
        Arc::new(MemStorage::new()),
        Arc::new(Nothing),
        Arc::new(Nothing),
        ManagerOptions::default(),
    );
    m.update(set);
    let ours = serde_json::json!({"status": "success", "data": m.rules_json(None)});
    let their_groups = theirs["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let our_groups = ours["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(our_groups.len(), 5);
    assert_eq!(our_groups.len(), their_groups.len());
    for (o, t) in our_groups.iter().zip(&their_groups) {
        for (or, tr) in o["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(t["rules"].as_array().into_iter().flatten())
        {
            assert_eq!(or, tr, "rule differs");
        }
        assert_eq!(o, t, "group differs");
    }
    for filter in ["alert", "record"] {
        let theirs: serde_json::Value = without_always(
            serde_json::from_str(
                &get(port, &format!("/api/v1/rules?type={filter}")).unwrap_or_default(),
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(m.rules_json(Some(filter)), theirs["data"], "type={filter}");
    }

    // The evaluated alert: wait for Prometheus's first evaluation, evaluate
    // ours once, and compare everything but the evaluation time.
    let theirs = loop {
        let alerts: serde_json::Value =
            serde_json::from_str(&get(port, "/api/v1/alerts").unwrap_or_default())
                .unwrap_or_default();
        if alerts["data"]["alerts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            break alerts["data"].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "prometheus never evaluated the 1s group: {alerts}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let set = vigil_rules::load_rule_files(&[always.display().to_string()])
        .unwrap_or_else(|e| panic!("{e:?}"));
    let m = RuleManager::new(
        Arc::new(Engine::new(EngineOptions::default())),
        Arc::new(MemStorage::new()),
        Arc::new(Nothing),
        Arc::new(Nothing),
        ManagerOptions::default(),
    );
    m.update(set);
    m.eval_all_at(1_700_000_000_000);
    let ours = m.alerts_json();
    assert_eq!(
        ours["alerts"].as_array().map(Vec::len),
        Some(2),
        "both alerts are active: {ours}"
    );
    assert_eq!(without_active_at(ours), without_active_at(theirs));
}

const ALWAYS: &str = r#"groups:
  - name: always
    interval: 1s
    rules:
      - alert: HeldPending
        expr: label_replace(vector(42), "instance", "db", "", "") or label_replace(vector(0.5), "instance", "web", "", "")
        for: 1h
        labels:
          severity: '{{ if gt $value 1.0 }}page{{ else }}ticket{{ end }}'
        annotations:
          summary: '{{ $labels.instance }} at {{ $value | humanize }}'
          description: 'fired by {{ $labels.alertname }}'
"#;

/// Drops the evaluating `always` group from a Prometheus rules answer.
fn without_always(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(groups) = v["data"]["groups"].as_array_mut() {
        groups.retain(|g| g["name"] != "always");
    }
    v
}

/// activeAt is the evaluation's wall-clock time on each side: checked to be
/// an RFC 3339 time, then blanked.
fn without_active_at(mut v: serde_json::Value) -> serde_json::Value {
    for a in v["alerts"].as_array_mut().into_iter().flatten() {
        let t = a["activeAt"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(t).is_ok(),
            "activeAt {t:?} is not RFC 3339"
        );
        a["activeAt"] = serde_json::Value::Null;
    }
    if let Some(alerts) = v["alerts"].as_array_mut() {
        alerts.sort_by_key(|a| a["labels"]["instance"].to_string());
    }
    v
}
