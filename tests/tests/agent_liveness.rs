//! Liveness of a pushing agent through the real binaries: `vigil serve`
//! with the default rule pack (rules/*.rules.yml) and an Alertmanager
//! configuration sending to a local webhook, and a real `vigil-agent`.
//!
//! - The agent's series carry `job="vigil-agent"` and `instance=<host
//!   name>`; the collector lists it and writes `up` and its last push.
//! - A plain push of a scrape target's `up` is not taken for an agent.
//! - `Watchdog` is listed as firing by `/api/v1/alerts` and delivered.
//! - Restarting the collector while the agent pushes raises no `AgentDown`.
//! - `kill -9` of the agent: `AgentDown` for its instance reaches the
//!   webhook, also across a collector restart in between; started again,
//!   the resolved notification arrives.
//! - A retired agent forgotten through the admin API is not paged for.
//!
//! The agent collects every second instead of every 15 s and the rules are
//! evaluated every second, so the test takes well under a minute; the rule
//! is the same (down after 4 observed push intervals). That an agent
//! pushing every 15 s is down within 65 s of its last push is the tracker's
//! unit test (collector/src/agents.rs), and that AgentDown fires on the
//! first evaluation seeing `up` 0 is rules/tests/agents.test.yml.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::{Collector, Proc, binary, free_port, wait_ready, webhook_receiver, workspace_root};

type Bodies = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

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

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .expect("host name")
}

struct Setup {
    port: u16,
    data: PathBuf,
    args: Vec<String>,
}

impl Setup {
    fn start(&self) -> Collector {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Collector::start_on(&self.data, self.port, &args).expect("collector starts")
    }
}

fn start_agent(dir: &Path, collector_port: u16) -> Proc {
    let port = free_port();
    let cfg = dir.join("agent.yml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\ninterval: 1s\n\
             remote_write:\n  url: http://127.0.0.1:{collector_port}/api/v1/write\n  \
             min_backoff: 100ms\n  max_backoff: 500ms\n",
            dir.join("agent-data").display()
        ),
    )
    .expect("agent config");
    let proc = Proc::spawn(
        "vigil-agent",
        Command::new(binary("vigil-agent").expect("binary"))
            .arg("--config")
            .arg(&cfg)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ),
    )
    .expect("agent starts");
    wait_ready(
        &format!("http://127.0.0.1:{port}/-/healthy"),
        Duration::from_secs(30),
    )
    .expect("agent ready");
    proc
}

/// The agent as `GET /api/vigil/v1/agents` lists it.
fn listed(c: &Collector, instance: &str) -> Option<Value> {
    let v = c.get_json("/api/vigil/v1/agents").ok()?;
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["agents"]
        .as_array()?
        .iter()
        .find(|a| a["job"] == "vigil-agent" && a["instance"] == instance)
        .cloned()
}

/// Instant query; the result vector.
fn query(c: &Collector, q: &str) -> Vec<Value> {
    let url = format!("/api/v1/query?query={}", encode(q));
    let v = c.get_json(&url).expect("query");
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// States of the named alert in `/api/v1/alerts` for `instance` (any
/// instance when `None`).
fn alert_states(c: &Collector, name: &str, instance: Option<&str>) -> Vec<String> {
    let v = c.get_json("/api/v1/alerts").expect("alerts");
    v["data"]["alerts"]
        .as_array()
        .map(|alerts| {
            alerts
                .iter()
                .filter(|a| a["labels"]["alertname"] == name)
                .filter(|a| instance.is_none_or(|i| a["labels"]["instance"] == i))
                .map(|a| a["state"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Alerts named `name` delivered to the webhook, as (status, instance).
fn delivered(bodies: &Bodies, name: &str) -> Vec<(String, String)> {
    let b = bodies.lock().expect("webhook bodies");
    b.iter()
        .flat_map(|body| body["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == name)
        .map(|a| {
            (
                a["status"].as_str().unwrap_or_default().to_string(),
                a["labels"]["instance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Watches for `window` that no AgentDown exists, pending or firing, and
/// none was delivered.
fn assert_no_agent_down(c: &Collector, bodies: &Bodies, window: Duration, why: &str) {
    let until = Instant::now() + window;
    while Instant::now() < until {
        let states = alert_states(c, "AgentDown", None);
        assert!(states.is_empty(), "{why}: AgentDown {states:?}");
        let sent = delivered(bodies, "AgentDown");
        assert!(sent.is_empty(), "{why}: AgentDown delivered {sent:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn agent_down_watchdog_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hook_port, bodies) = webhook_receiver();
    let am = dir.path().join("alerting.yml");
    std::fs::write(
        &am,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname, instance]\n  group_wait: 0s\n  \
             group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    \
             webhook_configs:\n      - url: http://127.0.0.1:{hook_port}/hook\n        send_resolved: true\n"
        ),
    )
    .expect("alerting config");
    // Fast evaluation and checks; the multiple of the observed interval
    // stays the default.
    let cfg = dir.path().join("vigil.yml");
    std::fs::write(
        &cfg,
        "rules:\n  evaluation_interval: 1s\n  resend_delay: 1s\nagents:\n  check_interval: 1s\n",
    )
    .expect("config");
    let pack = workspace_root().join("rules/*.rules.yml");
    let setup = Setup {
        port: free_port(),
        data: dir.path().join("data"),
        args: vec![
            "--config".into(),
            cfg.display().to_string(),
            "--rule-file".into(),
            pack.display().to_string(),
            "--alerting-config".into(),
            am.display().to_string(),
        ],
    };
    let mut c = setup.start();
    let mut agent = start_agent(dir.path(), setup.port);
    let host = host_name();

    // The agent is watched, its push interval observed.
    let a = wait_for(
        "the agent listed with its interval",
        Duration::from_secs(30),
        || listed(&c, &host).filter(|a| a["pushes"].as_u64() >= Some(5)),
    );
    assert_eq!(a["up"], true, "{a}");
    let interval = a["pushIntervalSeconds"].as_f64().expect("interval");
    assert!((1.0..=2.5).contains(&interval), "{a}");
    let allowance = a["downAfterSeconds"].as_f64().expect("allowance");
    assert!((allowance - 4.0 * interval).abs() < 0.01, "{a}");
    assert!(
        a["lastPush"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{a}"
    );

    // up and the last push time are series; the agent's own series carry
    // job and instance as a scrape would give them.
    let sel = format!("{{job=\"vigil-agent\",instance=\"{host}\"}}");
    wait_for("up written", Duration::from_secs(10), || {
        let r = query(&c, &format!("up{sel}"));
        (r.len() == 1 && r[0]["value"][1] == "1").then_some(())
    });
    let last = query(
        &c,
        &format!("time() - vigil_agent_last_push_timestamp_seconds{sel}"),
    );
    assert_eq!(last.len(), 1, "{last:?}");
    for metric in ["vigil_agent_samples_collected_total", "node_load1"] {
        let r = query(&c, &format!("{metric}{sel}"));
        assert_eq!(
            r.len(),
            1,
            "{metric} not labelled with job and instance: {r:?}"
        );
    }
    // No agent series without them.
    let unlabelled = query(&c, "{__name__=~\"node_.+|vigil_agent_.+\", job=\"\"}");
    assert!(unlabelled.is_empty(), "{unlabelled:?}");

    // A push without an agent's identity (no headers, no token) is not
    // taken for an agent from its labels: a relayed scrape target keeps its
    // own `up`, and TargetDown, not AgentDown, is about it.
    let (status, msg) = c
        .remote_write(&vigil_e2e::series_request(
            &[
                ("__name__", "up"),
                ("job", "node"),
                ("instance", "db-1:9100"),
            ],
            &[(vigil_e2e::now_ms(), 0.0)],
        ))
        .expect("push");
    assert_eq!(status, 204, "{msg}");
    let v = c.get_json("/api/vigil/v1/agents").expect("agents");
    let agents = v["data"]["agents"].as_array().expect("agents");
    assert!(agents.iter().all(|a| a["instance"] == host.as_str()), "{v}");
    // (Pending is enough: TargetDown has `for: 30s`.)
    wait_for(
        "TargetDown for the pushed target",
        Duration::from_secs(30),
        || (!alert_states(&c, "TargetDown", Some("db-1:9100")).is_empty()).then_some(()),
    );
    let r = query(&c, "up{job=\"node\"}");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["value"][1], "0", "{r:?}");

    // Watchdog: always firing, and delivered.
    wait_for("Watchdog firing", Duration::from_secs(20), || {
        alert_states(&c, "Watchdog", None)
            .iter()
            .any(|s| s == "firing")
            .then_some(())
    });
    wait_for("Watchdog delivered", Duration::from_secs(20), || {
        delivered(&bodies, "Watchdog")
            .iter()
            .any(|(s, _)| s == "firing")
            .then_some(())
    });

    // A collector restart while the agent pushes pages nobody.
    c.proc
        .terminate(Duration::from_secs(30))
        .expect("graceful stop");
    let c2 = setup.start();
    c = c2;
    assert_no_agent_down(
        &c,
        &bodies,
        Duration::from_secs_f64(3.0 * allowance + 3.0),
        "collector restart while the agent pushes",
    );
    assert_eq!(listed(&c, &host).expect("still listed")["up"], true);

    // kill -9: the agent stops mid-flight; the collector restarts before
    // the allowance runs out, and AgentDown still reaches the webhook.
    agent.kill9();
    let killed = Instant::now();
    c.proc
        .terminate(Duration::from_secs(30))
        .expect("graceful stop");
    c = setup.start();
    wait_for("AgentDown delivered", Duration::from_secs(60), || {
        delivered(&bodies, "AgentDown")
            .iter()
            .any(|(s, i)| s == "firing" && *i == host)
            .then_some(())
    });
    let took = killed.elapsed();
    assert_eq!(alert_states(&c, "AgentDown", Some(&host)), ["firing"]);
    let a = listed(&c, &host).expect("listed");
    assert_eq!(a["up"], false, "{a}");
    assert!(a["downSince"].is_string(), "{a}");
    let r = query(&c, &format!("up{sel}"));
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["value"][1], "0", "{r:?}");
    // The agent's `up` is AgentDown's alone.
    assert!(alert_states(&c, "TargetDown", Some(&host)).is_empty());
    eprintln!("AgentDown delivered {took:?} after kill -9 (allowance {allowance} s)");

    // Started again: resolved.
    let mut agent = start_agent(dir.path(), setup.port);
    wait_for("AgentDown resolved", Duration::from_secs(60), || {
        delivered(&bodies, "AgentDown")
            .iter()
            .any(|(s, i)| s == "resolved" && *i == host)
            .then_some(())
    });
    assert_eq!(listed(&c, &host).expect("listed")["up"], true);

    // Retired on purpose: forgotten, its series end, nothing pages.
    agent.kill9();
    let client = reqwest::blocking::Client::new();
    let url = c.url(&format!(
        "/api/vigil/v1/agents/vigil-agent/{}",
        encode(&host)
    ));
    let r = client.delete(&url).send().expect("forget");
    assert_eq!(r.status().as_u16(), 200);
    let r = client.delete(&url).send().expect("forget again");
    assert_eq!(r.status().as_u16(), 404, "forgetting twice names nothing");
    assert!(listed(&c, &host).is_none());
    let fired_before = delivered(&bodies, "AgentDown")
        .iter()
        .filter(|(s, _)| s == "firing")
        .count();
    let until = Instant::now() + Duration::from_secs_f64(2.0 * allowance + 3.0);
    while Instant::now() < until {
        assert!(
            !alert_states(&c, "AgentDown", Some(&host))
                .iter()
                .any(|s| s == "firing" || s == "pending"),
            "a forgotten agent is paged for"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(query(&c, &format!("up{sel}")).is_empty(), "up not ended");
    let fired_after = delivered(&bodies, "AgentDown")
        .iter()
        .filter(|(s, _)| s == "firing")
        .count();
    assert_eq!(fired_before, fired_after);
}
