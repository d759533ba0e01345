//! Reloads lose nothing, through the real `vigil serve` and a webhook
//! receiver: around SIGHUPs, an alert that resolves, one that fires and one
//! that resolves and fires again within seconds each reach the receiver
//! with every transition, promptly; a log file and an editor swap file
//! written into the rules folder cause no reload, and one save of a rule
//! file causes exactly one.
//!
//! Before the fix, a reload rebuilt alerting's groups without the resolved
//! alerts waiting for their flush: the resolution only went out when the
//! rule engine re-sent it a resend delay (60 s) later, and an alert that
//! fired again meanwhile reached the receiver as neither. The deadline
//! below (20 s) is well under that resend delay, so such a loss fails.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::{Collector, now_ms, series_request, webhook_receiver};

const RULES: &str = r#"groups:
  - name: reload
    interval: 1s
    rules:
      - alert: Resolves
        expr: resolves_gauge > 0
      - alert: Fires
        expr: fires_gauge > 0
      - alert: Flaps
        expr: flaps_gauge > 0
"#;

/// Every transition must arrive this soon (eval 1 s + group_interval 5 s,
/// with room for a loaded machine), far below the 60 s resend delay a lost
/// transition would wait for.
const PROMPT: Duration = Duration::from_secs(20);

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (alertname, status, startsAt) of every alert in every notification, in
/// arrival order.
fn transitions(bodies: &Mutex<Vec<Value>>) -> Vec<(String, String, String)> {
    let bodies = bodies.lock().expect("webhook bodies");
    bodies
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["labels"]["alertname"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                a["status"].as_str().unwrap_or_default().to_string(),
                a["startsAt"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn seen(t: &[(String, String, String)], name: &str, status: &str) -> Vec<String> {
    t.iter()
        .filter(|(n, s, _)| n == name && s == status)
        .map(|(_, _, at)| at.clone())
        .collect()
}

fn reloads(c: &Collector) -> u64 {
    let text = reqwest::blocking::get(c.url("/metrics"))
        .and_then(|r| r.text())
        .expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("vigil_config_reloads_total{result=\"success\"} "))
        .and_then(|v| v.trim().parse().ok())
        .expect("reload counter present")
}

fn sighup(c: &Collector) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &c.proc.child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
}

fn active(c: &Collector, name: &str) -> bool {
    let v = c.get_json("/api/v1/alerts").expect("alerts");
    v["data"]["alerts"]
        .as_array()
        .is_some_and(|a| a.iter().any(|a| a["labels"]["alertname"] == name))
}

#[test]
fn transitions_around_reloads_arrive_and_only_rule_files_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).expect("rules dir");
    let rules = rules_dir.join("reload.rules.yml");
    std::fs::write(&rules, RULES).expect("rules");
    let (hook_port, bodies) = webhook_receiver();
    let am = dir.path().join("alerting.yml");
    std::fs::write(
        &am,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 5s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{hook_port}/hook\n        send_resolved: true\n"
        ),
    )
    .expect("alerting config");
    let pattern = rules_dir.join("*.rules.yml");
    let c = Collector::start(
        &dir.path().join("data"),
        &[
            "--rule-file",
            pattern.to_str().expect("utf-8 path"),
            "--alerting-config",
            am.to_str().expect("utf-8 path"),
        ],
    )
    .expect("collector starts");
    let c = Arc::new(c);

    // A pusher keeps the three gauges current (resolves, fires, flaps).
    let values = Arc::new(Mutex::new([1.0, 0.0, 1.0]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pusher = {
        let (c, values, stop) = (c.clone(), values.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let v = *values.lock().expect("values");
                for (name, value) in ["resolves_gauge", "fires_gauge", "flaps_gauge"]
                    .into_iter()
                    .zip(v)
                {
                    let (status, msg) = c
                        .remote_write(&series_request(&[("__name__", name)], &[(now_ms(), value)]))
                        .expect("write");
                    assert_eq!(status, 204, "{msg}");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    wait_for("Resolves and Flaps firing at the receiver", PROMPT, || {
        let t = transitions(&bodies);
        (!seen(&t, "Resolves", "firing").is_empty() && !seen(&t, "Flaps", "firing").is_empty())
            .then_some(())
    });
    let first_flap = seen(&transitions(&bodies), "Flaps", "firing")[0].clone();

    // Resolves resolves, Fires fires, Flaps resolves. Once the rule engine
    // has sent the resolutions, the collector reloads: they wait in their
    // alerting groups for the next flush (group_interval 5 s) meanwhile.
    let before = reloads(&c);
    *values.lock().expect("values") = [0.0, 1.0, 0.0];
    wait_for(
        "Resolves and Flaps resolved in the rule engine",
        PROMPT,
        || (!active(&c, "Resolves") && !active(&c, "Flaps")).then_some(()),
    );
    sighup(&c);
    wait_for("the first reload", PROMPT, || {
        (reloads(&c) > before).then_some(())
    });
    // Flaps fires again as soon as its resolution has gone out, and
    // another reload follows at once.
    wait_for("Flaps resolved at the receiver", PROMPT, || {
        (!seen(&transitions(&bodies), "Flaps", "resolved").is_empty()).then_some(())
    });
    *values.lock().expect("values") = [0.0, 1.0, 1.0];
    wait_for("Flaps firing again in the rule engine", PROMPT, || {
        active(&c, "Flaps").then_some(())
    });
    sighup(&c);

    let t = wait_for("every transition at the receiver", PROMPT, || {
        let t = transitions(&bodies);
        let done = !seen(&t, "Resolves", "resolved").is_empty()
            && !seen(&t, "Fires", "firing").is_empty()
            && seen(&t, "Flaps", "firing").iter().any(|s| *s != first_flap);
        done.then_some(t)
    });
    // Flaps: fired, resolved, fired again — in that order.
    let flaps: Vec<&(String, String, String)> = t.iter().filter(|x| x.0 == "Flaps").collect();
    let resolved_at = flaps
        .iter()
        .position(|x| x.1 == "resolved")
        .expect("Flaps resolved");
    assert!(
        flaps[resolved_at..]
            .iter()
            .any(|x| x.1 == "firing" && x.2 != first_flap),
        "Flaps fired again after its resolution: {flaps:?}"
    );
    assert!(
        seen(&t, "Resolves", "firing").len() == 1,
        "Resolves was not re-notified as firing by the reloads: {t:?}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    pusher.join().expect("pusher");

    // Junk in the rules folder causes no reload: a log file written over
    // and over and an editor's swap file.
    let settled = reloads(&c);
    let log = rules_dir.join("vigil.log");
    let swap = rules_dir.join(".reload.rules.yml.swp");
    for i in 0..20 {
        std::fs::write(&log, format!("line {i}\n").repeat(i + 1)).expect("log");
        std::fs::write(&swap, format!("swap {i}")).expect("swap");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The watcher is live: one save of the rule file is exactly one reload.
    std::fs::write(&rules, format!("{RULES}# saved\n")).expect("save");
    wait_for("the reload of the saved rule file", PROMPT, || {
        (reloads(&c) > settled).then_some(())
    });
    // Junk written before the save caused no reload of its own, and the
    // save's burst of events was one reload (a second would follow within
    // the quiet period; give it ample time).
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert_eq!(
            reloads(&c),
            settled + 1,
            "junk files or one save reloaded more than once"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
