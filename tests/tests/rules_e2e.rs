//! Rules through the real `vigil serve`: samples pushed over remote_write
//! cross a threshold; the alert goes pending, then firing after `for`, then
//! resolved; a restart while it fires keeps `activeAt` and sends no second
//! notification; a bad rule file on reload leaves the old rules evaluating;
//! alerts reach a webhook receiver through the built-in Alertmanager.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::{Collector, free_port, now_ms, series_request, webhook_receiver};

const RULES: &str = r#"groups:
  - name: e2e
    interval: 1s
    rules:
      - record: job:queue_depth:max
        expr: max by (job) (queue_depth)
      - alert: QueueTooDeep
        expr: job:queue_depth:max > 50
        for: 4s
        labels:
          severity: warning
        annotations:
          summary: "Queue of {{ $labels.job }} is {{ $value }}"
"#;

fn push_depth(c: &Collector, value: f64) {
    let (status, msg) = c
        .remote_write(&series_request(
            &[("__name__", "queue_depth"), ("job", "worker")],
            &[(now_ms(), value)],
        ))
        .expect("write");
    assert_eq!(status, 204, "{msg}");
}

fn alert_state(c: &Collector) -> Option<(String, String)> {
    let v = c.get_json("/api/v1/alerts").expect("alerts");
    v["data"]["alerts"].as_array()?.iter().find_map(|a| {
        (a["labels"]["alertname"] == "QueueTooDeep").then(|| {
            (
                a["state"].as_str().unwrap_or_default().to_string(),
                a["activeAt"].as_str().unwrap_or_default().to_string(),
            )
        })
    })
}

/// The rule group's completed iterations, from the collector's /metrics.
fn iterations(c: &Collector) -> u64 {
    let text = reqwest::blocking::get(c.url("/metrics"))
        .and_then(|r| r.text())
        .expect("metrics");
    text.lines()
        .filter(|l| l.starts_with("vigil_rule_group_iterations_total{") && l.contains(";e2e\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until the group has completed `n` more iterations than now: every
/// rule has then been evaluated over whatever was stored before the call.
fn wait_iterations(c: &Collector, n: u64) {
    let from = iterations(c);
    wait_for("rule evaluations", Duration::from_secs(30), || {
        (iterations(c) >= from + n).then_some(())
    });
}

/// Raw samples of `selector` over the last `window_ms`, as (seconds, value).
fn samples(c: &Collector, selector: &str, window_ms: i64) -> Vec<(f64, String)> {
    let r: Value = reqwest::blocking::Client::new()
        .get(c.url("/api/v1/query"))
        .query(&[
            ("query", format!("{selector}[{window_ms}ms]")),
            ("time", format!("{:.3}", now_ms() as f64 / 1000.0)),
        ])
        .send()
        .and_then(|r| r.json())
        .expect("query");
    r["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| Some((v[0].as_f64()?, v[1].as_str()?.to_string())))
        .collect()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn threshold_alert_lifecycle_restart_and_bad_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("queue.rules.yml");
    std::fs::write(&rules, RULES).expect("rules");
    let (hook_port, bodies) = webhook_receiver();
    let am = dir.path().join("alerting.yml");
    std::fs::write(
        &am,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{hook_port}/hook\n        send_resolved: true\n"
        ),
    )
    .expect("alerting config");
    // Restore state even for this short `for`, as Prometheus does with a
    // small --rules.alert.for-grace-period. Alerts are valid for four
    // resend delays: 30 s keeps the firing alert alive in the alerting
    // store across a restart however slowly the machine runs it (with 1 s
    // it expired during a slow restart, resolved and fired again).
    let vigil_cfg = dir.path().join("vigil.yml");
    std::fs::write(
        &vigil_cfg,
        "rules:\n  for_grace_period: 1s\n  resend_delay: 30s\n",
    )
    .expect("config");
    let port = free_port();
    let args = [
        "--config",
        vigil_cfg.to_str().expect("utf-8 path"),
        "--rule-file",
        rules.to_str().expect("utf-8 path"),
        "--alerting-config",
        am.to_str().expect("utf-8 path"),
    ];
    let data = dir.path().join("data");
    let mut c = Collector::start_on(&data, port, &args).expect("collector starts");

    // Below the threshold: nothing, after evaluations that saw the value
    // (the recording rule stored it, then two whole group iterations ran).
    push_depth(&c, 10.0);
    wait_for(
        "the rules to see the sample",
        Duration::from_secs(30),
        || {
            let q = c
                .get_json("/api/v1/query?query=job%3Aqueue_depth%3Amax")
                .ok()?;
            (q["data"]["result"][0]["value"][1] == "10").then_some(())
        },
    );
    wait_iterations(&c, 2);
    assert_eq!(alert_state(&c), None);

    // Above it, kept fed: pending first, then firing after `for`.
    let feeder_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start_feeder = |c: &Collector| {
        let url = c.url("/api/v1/write");
        let stop = feeder_stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = vigil_wire::remote_write::encode_write_request(&series_request(
                    &[("__name__", "queue_depth"), ("job", "worker")],
                    &[(now_ms(), 80.0)],
                ));
                let _ = vigil_e2e::post_remote_write(&url, body);
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let feeder = start_feeder(&c);
    let (state, _) = wait_for("pending", Duration::from_secs(15), || alert_state(&c));
    assert_eq!(state, "pending");
    let (_, active_at) = wait_for("firing", Duration::from_secs(20), || {
        alert_state(&c).filter(|(s, _)| s == "firing")
    });
    wait_for("first webhook delivery", Duration::from_secs(20), || {
        bodies
            .lock()
            .ok()?
            .iter()
            .any(|b| b["status"] == "firing")
            .then_some(())
    });

    // Restart while firing: activeAt survives and `for` is not waited again.
    feeder_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = feeder.join();
    c.proc
        .terminate(Duration::from_secs(30))
        .expect("graceful stop");
    feeder_stop.store(false, std::sync::atomic::Ordering::Relaxed);
    let restart_ms = now_ms();
    let c = Collector::start_on(&data, port, &args).expect("collector restarts");
    let feeder = start_feeder(&c);
    let (_, restored_active_at) = wait_for("firing after restart", Duration::from_secs(30), || {
        alert_state(&c).filter(|(s, _)| s == "firing")
    });
    // ALERTS_FOR_STATE holds activeAt in whole seconds, as in Prometheus,
    // so the restored value is exact to the second.
    assert_eq!(
        restored_active_at.get(..19),
        active_at.get(..19),
        "activeAt must survive a restart: {restored_active_at} vs {active_at}"
    );
    // A restored firing alert does not wait its `for` again: counted in
    // evaluations, not seconds. Waiting 4 s at a 1 s interval would take
    // five (pending at the first, firing at the fifth); the restore fires
    // it at the evaluation after the one that restored it.
    let window = now_ms() - restart_ms;
    let restart_s = restart_ms as f64 / 1000.0;
    let first_firing = samples(
        &c,
        "ALERTS{alertname=\"QueueTooDeep\",alertstate=\"firing\"}",
        window,
    )
    .into_iter()
    .map(|(t, _)| t)
    .filter(|t| *t > restart_s)
    .fold(f64::INFINITY, f64::min);
    assert!(
        first_firing.is_finite(),
        "no ALERTS sample after the restart"
    );
    let evaluations = samples(&c, "job:queue_depth:max", window)
        .into_iter()
        .filter(|(t, _)| *t > restart_s && *t <= first_firing)
        .count();
    println!("restored alert fired at evaluation {evaluations} after the restart");
    assert!(
        (1..5).contains(&evaluations),
        "fired at evaluation {evaluations} after the restart: the `for` was waited again"
    );

    // The recorded series and ALERTS are in the store.
    let q = c
        .get_json("/api/v1/query?query=ALERTS%7Balertname%3D%22QueueTooDeep%22%7D")
        .expect("query");
    assert_eq!(
        q["data"]["result"][0]["metric"]["alertstate"], "firing",
        "{q}"
    );
    let q = c
        .get_json("/api/v1/query?query=job%3Aqueue_depth%3Amax")
        .expect("query");
    assert_eq!(q["data"]["result"][0]["value"][1], "80", "{q}");

    // The webhook receiver's firing notification has the rendered
    // annotation. (That it stays the only one across the restart is
    // checked at the end, once a later notification proves the group was
    // flushed after the restart.)
    let firing: Vec<Value> = firing_bodies(&bodies);
    let firing = &firing[0];
    assert_eq!(firing["version"], "4");
    assert_eq!(firing["alerts"][0]["labels"]["alertname"], "QueueTooDeep");
    assert_eq!(
        firing["alerts"][0]["annotations"]["summary"],
        "Queue of worker is 80"
    );

    // A bad rule file on reload is rejected; the old rules keep running.
    std::fs::write(
        &rules,
        "groups:\n  - name: e2e\n    rules:\n      - alert: Broken\n        expr: rate(\n",
    )
    .expect("rules");
    let client = reqwest::blocking::Client::new();
    let r = client.post(c.url("/-/reload")).send().expect("reload");
    assert_eq!(r.status().as_u16(), 500);
    let msg = r.text().expect("text");
    assert!(
        msg.contains("queue.rules.yml"),
        "the rejection names the file: {msg}"
    );
    let rules_api = c.get_json("/api/v1/rules").expect("rules");
    assert_eq!(
        rules_api["data"]["groups"][0]["rules"][1]["name"], "QueueTooDeep",
        "{rules_api}"
    );
    // The old rules keep evaluating (not merely listed), and the alert
    // keeps its state.
    wait_iterations(&c, 2);
    assert_eq!(
        alert_state(&c),
        Some(("firing".to_string(), restored_active_at.clone())),
        "the rejected reload left the running alert alone"
    );
    let metrics = reqwest::blocking::get(c.url("/metrics"))
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics.contains("vigil_config_last_reload_successful 0"),
        "{metrics}"
    );

    // Back under the threshold: resolved, and the receiver hears it.
    feeder_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = feeder.join();
    std::fs::write(&rules, RULES).expect("rules");
    assert_eq!(
        client
            .post(c.url("/-/reload"))
            .send()
            .expect("reload")
            .status()
            .as_u16(),
        200
    );
    push_depth(&c, 5.0);
    wait_for("alert to clear", Duration::from_secs(20), || {
        alert_state(&c).is_none().then_some(())
    });
    wait_for("resolved notification", Duration::from_secs(20), || {
        bodies
            .lock()
            .ok()?
            .iter()
            .any(|b| b["status"] == "resolved")
            .then_some(())
    });
    // The group was flushed after the restart (it sent the resolution), and
    // the only firing notification is still the one from before it.
    let firing = firing_bodies(&bodies);
    assert_eq!(
        firing.len(),
        1,
        "exactly one firing notification across the restart: {firing:?}"
    );
}

fn firing_bodies(bodies: &std::sync::Mutex<Vec<Value>>) -> Vec<Value> {
    bodies
        .lock()
        .map(|b| {
            b.iter()
                .filter(|b| b["status"] == "firing")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}
