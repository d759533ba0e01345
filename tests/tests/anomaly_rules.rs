//! Anomaly rules end to end through the real `vigil serve`: warm-up on
//! stored history, scores written as series, an alert for a spike, models
//! saved on shutdown and restored on restart, and a bad anomaly file
//! rejected on reload while the old rules keep running.

use std::path::Path;
use std::time::{Duration, Instant};

use vigil_e2e::{Collector, now_ms, series_request};

fn rule_file(min_points: usize) -> String {
    format!(
        r#"groups:
  - name: e2e
    interval: 1s
    rules:
      - anomaly: SpikeAnomaly
        expr: e2e_latency_seconds
        training_window: 1h
        for: 0s
        model:
          n_estimators: 50
          min_points: {min_points}
          window: 300
          retrain_every: 50
          suppression: 1s
        labels:
          team: sre
        annotations:
          summary: "Latency of {{{{ $labels.instance }}}} is {{{{ $value }}}}"
"#
    )
}

/// The value of a `/metrics` line without labels.
fn self_metric(c: &Collector, name: &str) -> f64 {
    let text = reqwest::blocking::get(c.url("/metrics"))
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The stored `vigil_anomaly_score` samples of the last minute for the
/// rule: (sample timestamp ms, score).
fn scores(c: &Collector) -> Vec<(i64, f64)> {
    let q = "vigil_anomaly_score%7Brule%3D%22SpikeAnomaly%22%7D%5B1m%5D";
    let Ok(j) = c.get_json(&format!("/api/v1/query?query={q}")) else {
        return Vec::new();
    };
    j["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["values"].as_array())
        .flatten()
        .filter_map(|p| {
            let t = p[0].as_f64()?;
            let v = p[1].as_str()?.parse().ok()?;
            Some(((t * 1000.0).round() as i64, v))
        })
        .collect()
}

/// The SpikeAnomaly alert held by the in-process Alertmanager, if any.
fn anomaly_alert(c: &Collector) -> Option<serde_json::Value> {
    let r = reqwest::blocking::get(c.url("/api/v2/alerts")).ok()?;
    let j: serde_json::Value = r.json().ok()?;
    j.as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == "SpikeAnomaly")
        .cloned()
}

fn push(c: &Collector, samples: &[(i64, f64)]) {
    let req = series_request(
        &[("__name__", "e2e_latency_seconds"), ("instance", "api:1")],
        samples,
    );
    let (status, body) = c.remote_write(&req).expect("remote write");
    assert_eq!(status, 204, "{body}");
}

/// A steady, slightly noisy history: 600 points at 1 s ending just before now.
fn history(now: i64) -> Vec<(i64, f64)> {
    (0..600)
        .map(|i| {
            let noise = ((i * 7919) % 13) as f64 / 100.0;
            (now - 600_000 + i * 1000, 0.2 + noise)
        })
        .collect()
}

fn saved_models(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("models"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with("SpikeAnomaly-"))
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|f| f.path().extension().is_some_and(|e| e == "model"))
        .count()
}

#[test]
fn spike_alerts_and_models_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("spike.anomaly.yml");
    std::fs::write(&rules, rule_file(50)).expect("write rules");
    let rules_arg = rules.to_string_lossy().to_string();
    let data = dir.path().join("data");
    let mut c = Collector::start(&data, &["--rule-file", &rules_arg]).expect("collector starts");

    let now = now_ms();
    push(&c, &history(now));
    // The detector is warmed on the stored history, so it scores at once.
    let first = wait_for("a first anomaly score", Duration::from_secs(20), || {
        scores(&c).first().copied()
    });
    assert!(first.1 > 0.0 && first.1 <= 1.0, "score {first:?}");
    assert_eq!(self_metric(&c, "vigil_anomaly_detectors"), 1.0);

    // Once the pushed samples stop, each evaluation sees the last one again
    // (PromQL lookback); a flat line after a noisy history may itself be
    // flagged, so the test does not demand silence before the spike. A
    // spike, well outside the history, scores above everything before it.
    let before = scores(&c).iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let spike_ms = now_ms();
    push(&c, &[(spike_ms, 25.0)]);
    let spike = wait_for("the spike's score", Duration::from_secs(20), || {
        scores(&c).into_iter().find(|(t, _)| *t >= spike_ms)
    });
    assert!(spike.1 > before, "spike {spike:?}, earlier max {before}");
    let alert = wait_for("the anomaly alert", Duration::from_secs(20), || {
        anomaly_alert(&c)
    });
    assert_eq!(alert["labels"]["instance"], "api:1");
    assert_eq!(alert["labels"]["team"], "sre");
    assert!(
        ["critical", "warning", "info"]
            .contains(&alert["labels"]["severity"].as_str().unwrap_or("")),
        "{alert}"
    );
    let ann = &alert["annotations"];
    assert!(
        ann["summary"]
            .as_str()
            .unwrap_or("")
            .starts_with("Latency of api:1 is "),
        "{alert}"
    );
    for key in [
        "anomaly_score",
        "historical_mean",
        "historical_std",
        "percentile",
        "top_feature",
    ] {
        assert!(ann[key].is_string(), "missing {key}: {alert}");
    }
    // The historical mean is that of the steady history, not of the spike.
    let mean: f64 = ann["historical_mean"]
        .as_str()
        .unwrap_or("")
        .parse()
        .expect("mean");
    assert!(mean < 1.0, "{alert}");
    assert!(self_metric(&c, "vigil_anomaly_anomalies_total") >= 1.0);

    // Shutdown saves the model; a restart loads it instead of re-warming.
    let status = c.proc.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{status:?}");
    assert_eq!(saved_models(&data), 1);
    let c = Collector::start(&data, &["--rule-file", &rules_arg]).expect("restarts");
    let restarted = now_ms();
    push(&c, &[(restarted, 0.25)]);
    wait_for("a score after the restart", Duration::from_secs(20), || {
        scores(&c).into_iter().find(|(t, _)| *t >= restarted)
    });
    assert_eq!(
        self_metric(&c, "vigil_anomaly_detectors_restored_total"),
        1.0
    );
    assert_eq!(
        self_metric(&c, "vigil_anomaly_detectors_created_total"),
        0.0
    );
}

#[test]
fn bad_anomaly_file_on_reload_keeps_the_old_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("spike.anomaly.yml");
    std::fs::write(&rules, rule_file(50)).expect("write rules");
    let rules_arg = rules.to_string_lossy().to_string();
    let c = Collector::start(&dir.path().join("data"), &["--rule-file", &rules_arg])
        .expect("collector starts");
    push(&c, &history(now_ms()));
    wait_for("a first anomaly score", Duration::from_secs(20), || {
        scores(&c).first().copied()
    });

    std::fs::write(
        &rules,
        rule_file(50).replace("expr: e2e_latency_seconds", "expr: rate("),
    )
    .expect("write");
    let r = reqwest::blocking::Client::new()
        .post(c.url("/-/reload"))
        .send()
        .expect("reload");
    assert_eq!(r.status().as_u16(), 500);
    let body = r.text().unwrap_or_default();
    assert!(
        body.contains("spike.anomaly.yml") && body.contains("expr"),
        "{body}"
    );

    // The old rule still evaluates and scores.
    let before = self_metric(&c, "vigil_anomaly_evaluations_total");
    let since = now_ms();
    push(&c, &[(since, 0.21)]);
    wait_for("scores from the old rule", Duration::from_secs(20), || {
        scores(&c).into_iter().find(|(t, _)| *t >= since)
    });
    let after = self_metric(&c, "vigil_anomaly_evaluations_total");
    assert!(after > before, "evaluations {before} then {after}");
    assert_eq!(self_metric(&c, "vigil_anomaly_rules"), 1.0);
}
