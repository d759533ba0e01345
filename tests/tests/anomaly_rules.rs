//! Anomaly rules end to end through the real `vigil serve`: warm-up on
//! stored history, scores written as series, an alert for a spike, models
//! saved on shutdown and restored on restart, a bad anomaly file rejected
//! on reload while the old rules keep running; anomaly alerts listed by
//! `/api/v1/alerts` and `/api/v1/rules` and written as `ALERTS`, their
//! `activeAt` kept across a graceful restart and a `kill -9`, with exactly
//! one notification at a real webhook receiver.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::{Collector, free_port, now_ms, series_request, webhook_receiver};

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
    scores_over(c, "1m")
}

/// Every stored score of the last 6 minutes (more than the detector's
/// 300-point window at one evaluation a second), for failure messages.
fn window_scores(c: &Collector) -> Vec<(i64, f64)> {
    scores_over(c, "6m")
}

fn scores_over(c: &Collector, range: &str) -> Vec<(i64, f64)> {
    let q = format!("vigil_anomaly_score%7Brule%3D%22SpikeAnomaly%22%7D%5B{range}%5D");
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

/// The incident of a SpikeAnomaly episode whose value reached the spike's
/// level (earlier episodes, if the noise had any, peaked far below).
fn spike_incident(c: &Collector) -> Option<serde_json::Value> {
    let j = c.get_json("/api/vigil/v1/incidents").ok()?;
    j["data"]
        .as_array()?
        .iter()
        .find(|i| {
            i["labels"]["alertname"] == "SpikeAnomaly"
                && i["peakValue"].as_f64().is_some_and(|v| v >= 25.0)
        })
        .cloned()
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
    // Once pushed samples stop, each evaluation sees the last one again
    // (PromQL lookback), and a flat line after a noisy history may itself
    // be flagged, as an episode whose length would depend on how long a
    // loaded machine takes to get here. So the history goes on, a noisy
    // point a second, until the spike.
    let stop_history = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (stop, url) = (Arc::clone(&stop_history), c.url("/api/v1/write"));
        std::thread::spawn(move || {
            let mut i = 600i64;
            while !stop.load(Ordering::SeqCst) {
                let noise = ((i * 7919) % 13) as f64 / 100.0;
                let req = series_request(
                    &[("__name__", "e2e_latency_seconds"), ("instance", "api:1")],
                    &[(now_ms(), 0.2 + noise)],
                );
                let body = vigil_wire::remote_write::encode_write_request(&req);
                let _ = vigil_e2e::post_remote_write(&url, body);
                i += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    // The detector is warmed on the stored history, so it scores at once.
    let first = wait_for("a first anomaly score", Duration::from_secs(20), || {
        scores(&c).first().copied()
    });
    assert!(first.1 > 0.0 && first.1 <= 1.0, "score {first:?}");
    assert_eq!(self_metric(&c, "vigil_anomaly_detectors"), 1.0);

    // A spike, well outside the history, scores above everything before it.
    stop_history.store(true, Ordering::SeqCst);
    feeder.join().expect("history feeder");
    let before = scores(&c).iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let spike_ms = now_ms();
    push(&c, &[(spike_ms, 25.0)]);
    let spike = wait_for("the spike's score", Duration::from_secs(20), || {
        scores(&c).into_iter().find(|(t, _)| *t >= spike_ms)
    });
    assert!(spike.1 > before, "spike {spike:?}, earlier max {before}");
    let started = Instant::now();
    // The alert may resolve at the next evaluation (the repeated spike
    // value is no longer news to the detector), so its short stay among
    // Alertmanager's active alerts can fall between two polls on a loaded
    // machine; its incident, the episode's durable record with the same
    // labels and annotations, cannot.
    let alert = loop {
        if let Some(a) = anomaly_alert(&c).or_else(|| spike_incident(&c)) {
            break a;
        }
        if started.elapsed() > Duration::from_secs(60) {
            // Why not: the detector's gates rank the spike against every
            // score of its window, not only the last minute's.
            let window = window_scores(&c);
            let above = window.iter().filter(|(_, v)| *v >= spike.1).count();
            let mut top = window.clone();
            top.sort_by(|a, b| b.1.total_cmp(&a.1));
            top.truncate(5);
            panic!(
                "timed out waiting for the anomaly alert: spike {spike:?}, {above} of the \
                 {} scores of the last 6 minutes at or above it, highest {top:?}; \
                 vigil_anomaly_anomalies_total {}",
                window.len(),
                self_metric(&c, "vigil_anomaly_anomalies_total"),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
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

/// A rule that keeps flagging a sustained outlier while the test runs: no
/// retraining (which would learn the new level), and a percentile bar the
/// repeated outlier's score stays above for minutes. Repeats are
/// suppressed for ten minutes.
const EPISODE_RULES: &str = r#"groups:
  - name: e2e-episode
    interval: 1s
    rules:
      - anomaly: SpikeAnomaly
        expr: e2e_latency_seconds
        training_window: 1h
        for: 0s
        model:
          n_estimators: 50
          min_points: 50
          window: 300
          retrain_every: 100000
          min_score_percentile: 80
          suppression: 10m
        labels:
          team: sre
        annotations:
          summary: "Latency of {{ $labels.instance }} is {{ $value }}"
"#;

/// The SpikeAnomaly alert of `/api/v1/alerts`.
fn api_alert(c: &Collector) -> Option<Value> {
    let j = c.get_json("/api/v1/alerts").ok()?;
    j["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == "SpikeAnomaly")
        .cloned()
}

/// Firing webhook notifications that carry SpikeAnomaly.
fn firing_notifications(bodies: &Mutex<Vec<Value>>) -> Vec<Value> {
    bodies
        .lock()
        .map(|b| {
            b.iter()
                .filter(|n| n["status"] == "firing")
                .filter(|n| {
                    n["alerts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|a| a["labels"]["alertname"] == "SpikeAnomaly")
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Pushes the outlier every 300 ms (to whichever collector listens on the
/// URL) until stopped.
fn feed_outlier(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let body = vigil_wire::remote_write::encode_write_request(&series_request(
                &[("__name__", "e2e_latency_seconds"), ("instance", "api:1")],
                &[(now_ms(), 25.0)],
            ));
            // Refused while the collector restarts; the next one lands.
            let _ = vigil_e2e::post_remote_write(&url, body);
            std::thread::sleep(Duration::from_millis(300));
        }
    })
}

#[test]
fn anomaly_alerts_are_listed_and_survive_restarts_without_repeat_notifications() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("episode.anomaly.yml");
    std::fs::write(&rules, EPISODE_RULES).expect("write rules");
    let (hook_port, bodies) = webhook_receiver();
    let am = dir.path().join("alerting.yml");
    std::fs::write(
        &am,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{hook_port}/hook\n        send_resolved: true\n"
        ),
    )
    .expect("alerting config");
    let port = free_port();
    let args = [
        "--rule-file",
        rules.to_str().expect("utf-8 path"),
        "--alerting-config",
        am.to_str().expect("utf-8 path"),
    ];
    let data = dir.path().join("data");
    let mut c = Collector::start_on(&data, port, &args).expect("collector starts");
    push(&c, &history(now_ms()));
    wait_for("a first anomaly score", Duration::from_secs(20), || {
        scores(&c).first().copied()
    });

    let stop = Arc::new(AtomicBool::new(false));
    let feeder = feed_outlier(c.url("/api/v1/write"), stop.clone());
    let alert = wait_for("the anomaly alert firing", Duration::from_secs(60), || {
        api_alert(&c).filter(|a| a["state"] == "firing")
    });
    let active_at = alert["activeAt"].as_str().expect("activeAt").to_string();
    assert_eq!(alert["labels"]["instance"], "api:1", "{alert}");
    assert_eq!(alert["labels"]["team"], "sre", "{alert}");
    assert!(
        alert["value"]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some(),
        "{alert}"
    );

    // The rule, as Prometheus lists an alerting rule, holding the alert.
    let groups = c.get_json("/api/v1/rules").expect("rules");
    let group = groups["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "e2e-episode")
        .cloned()
        .unwrap_or_else(|| panic!("anomaly group listed: {groups}"));
    assert_eq!(group["file"], rules.to_str().expect("utf-8 path"));
    assert_eq!(group["interval"], 1);
    let rule = &group["rules"][0];
    assert_eq!(rule["type"], "alerting", "{rule}");
    assert_eq!(rule["name"], "SpikeAnomaly");
    assert_eq!(rule["query"], "e2e_latency_seconds");
    assert_eq!(rule["duration"], 0);
    assert_eq!(rule["health"], "ok");
    assert_eq!(rule["labels"]["team"], "sre");
    assert!(
        rule["lastEvaluation"]
            .as_str()
            .is_some_and(|t| !t.starts_with("0001"))
    );
    assert_eq!(rule["state"], "firing", "{rule}");
    assert_eq!(rule["alerts"][0]["activeAt"], active_at.as_str(), "{rule}");
    // `type=record` keeps the group, without its alerting rules.
    let record = c.get_json("/api/v1/rules?type=record").expect("rules");
    assert!(
        record["data"]["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["name"] == "e2e-episode" && g["rules"] == serde_json::json!([]))
    );

    // ALERTS, as Grafana's alert panels query it.
    let q = "ALERTS%7Balertname%3D%22SpikeAnomaly%22%2Calertstate%3D%22firing%22%7D";
    let alerts_series = c
        .get_json(&format!("/api/v1/query?query={q}"))
        .expect("query");
    assert_eq!(
        alerts_series["data"]["result"].as_array().map(Vec::len),
        Some(1),
        "{alerts_series}"
    );

    let first = wait_for("the webhook notification", Duration::from_secs(20), || {
        let n = firing_notifications(&bodies);
        (!n.is_empty()).then_some(n)
    });
    assert_eq!(first.len(), 1, "{first:?}");

    // A graceful restart, then a crash: the alert comes back with its
    // activeAt, and the receiver hears nothing more (the suppression window
    // is ten minutes).
    for crash in [false, true] {
        if crash {
            c.proc.kill9();
        } else {
            let status = c.proc.terminate(Duration::from_secs(30)).expect("exits");
            assert!(status.success(), "{status:?}");
        }
        c = Collector::start_on(&data, port, &args).expect("collector restarts");
        let restored = wait_for("the restored alert", Duration::from_secs(10), || {
            api_alert(&c)
        });
        assert_eq!(restored["state"], "firing", "crash {crash}: {restored}");
        assert_eq!(
            restored["activeAt"],
            active_at.as_str(),
            "crash {crash}: activeAt must survive: {restored}"
        );
        // Long enough for alerting (group_interval 1s) to have notified
        // had it taken the alert for a new one.
        std::thread::sleep(Duration::from_secs(3));
        let n = firing_notifications(&bodies);
        assert_eq!(n.len(), 1, "crash {crash}: one notification only: {n:?}");
        assert_eq!(
            self_metric(&c, "vigil_anomaly_alerts_restored_total"),
            1.0,
            "crash {crash}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
}
