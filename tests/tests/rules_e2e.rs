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
    // small --rules.alert.for-grace-period.
    let vigil_cfg = dir.path().join("vigil.yml");
    std::fs::write(
        &vigil_cfg,
        "rules:\n  for_grace_period: 1s\n  resend_delay: 1s\n",
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

    // Below the threshold: nothing.
    push_depth(&c, 10.0);
    std::thread::sleep(Duration::from_millis(1500));
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
    let c = Collector::start_on(&data, port, &args).expect("collector restarts");
    let restarted = Instant::now();
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
    assert!(
        restarted.elapsed() < Duration::from_secs(4),
        "a restored firing alert must not wait its `for` again ({:?})",
        restarted.elapsed()
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

    // The webhook receiver got one firing notification, before and after
    // the restart together, with the rendered annotation.
    std::thread::sleep(Duration::from_secs(3));
    let firing: Vec<Value> = bodies
        .lock()
        .map(|b| {
            b.iter()
                .filter(|b| b["status"] == "firing")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        firing.len(),
        1,
        "exactly one firing notification: {firing:?}"
    );
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
}
