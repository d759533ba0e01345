//! Service discovery through the real binaries: a `vigil-agent` whose one
//! scrape job takes targets from a `file_sd_configs` file and an
//! `http_sd_configs` endpoint (a stub HTTP server in this test), relabels
//! them, scrapes real HTTP targets (stub servers serving the text format)
//! and ships to a real collector. Then the file is rewritten and the
//! endpoint answers differently, and without a restart:
//!
//! - the new targets' series arrive at the collector with the labels
//!   `relabel_configs` and `metric_relabel_configs` give them;
//! - a removed target stops being scraped (its request count stops) and
//!   leaves the agent's `/api/v1/targets`;
//! - a target `relabel_configs` drops is never requested and never reaches
//!   the collector, but is listed under `droppedTargets`;
//! - an unchanged target keeps its one scrape loop (its collection count
//!   carries on, and it is scraped no faster than a new target);
//! - a failing SD endpoint and a broken file keep the last good targets and
//!   are counted in `prometheus_sd_http_failures_total` and
//!   `prometheus_sd_file_read_errors_total`.
//!
//! Every wait polls an observable condition under a deadline only a hang
//! reaches.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::stub::Stub;
use vigil_e2e::{Collector, Proc, binary, free_port, wait_ready};

const DEADLINE: Duration = Duration::from_secs(120);
const METRICS: &str = "# HELP sd_demo A demo gauge.\n# TYPE sd_demo gauge\nsd_demo 1\n";
const TEXT: &str = "text/plain; version=0.0.4";

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes a file SD file atomically (a temporary name the glob does not
/// match, then a rename), as file SD files should be written.
fn write_targets(dir: &Path, name: &str, groups: &Value) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, groups.to_string()).expect("write targets");
    std::fs::rename(&tmp, dir.join(name)).expect("rename targets");
}

struct Agent {
    proc: Proc,
    port: u16,
}

impl Agent {
    fn get(&self, path: &str) -> String {
        reqwest::blocking::get(format!("http://127.0.0.1:{}{path}", self.port))
            .and_then(|r| r.text())
            .unwrap_or_default()
    }

    /// The agent's value of `name` whose labels contain every `want` pair.
    fn metric(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let exp = vigil_wire::exposition::parse(&self.get("/metrics"), &Default::default()).ok()?;
        exp.samples
            .iter()
            .find(|s| {
                s.labels.metric_name() == Some(name)
                    && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// `/api/v1/targets`: the `instance` of each active target and the
    /// `__address__` of each dropped one.
    fn targets(&self) -> (Vec<String>, Vec<String>) {
        let v: Value = serde_json::from_str(&self.get("/api/v1/targets")).unwrap_or(Value::Null);
        let list = |key: &str, labels: &str, name: &str| -> Vec<String> {
            let mut out: Vec<String> = v["data"][key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t[labels][name].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            out.sort();
            out
        };
        (
            list("activeTargets", "labels", "instance"),
            list("droppedTargets", "discoveredLabels", "__address__"),
        )
    }
}

/// The `sd_demo` series the collector holds, by instance.
fn collector_series(c: &Collector) -> BTreeMap<String, BTreeMap<String, String>> {
    let v = c.get_json("/api/v1/query?query=sd_demo").expect("query");
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|s| {
            let labels: BTreeMap<String, String> = s["metric"]
                .as_object()
                .expect("metric")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            (labels.get("instance").cloned().unwrap_or_default(), labels)
        })
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn discovered_targets_change_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(&dir.path().join("collector"), &[]).expect("collector");
    // Scrape targets: t1 and t4 from the file (t4 dropped by relabeling),
    // t3 from the HTTP endpoint; later t5 in the file and t6 from HTTP.
    let [t1, t3, t4, t5, t6] = std::array::from_fn(|_| Stub::start(TEXT, METRICS));
    let sd = Stub::start(
        "application/json",
        &serde_json::json!([{"targets": [t3.address()], "labels": {"team": "c"}}]).to_string(),
    );
    let targets_dir = dir.path().join("targets");
    std::fs::create_dir_all(&targets_dir).expect("mkdir");
    write_targets(
        &targets_dir,
        "a.json",
        &serde_json::json!([
            {"targets": [t1.address()], "labels": {"team": "a"}},
            {"targets": [t4.address()], "labels": {"role": "ignored"}},
        ]),
    );

    let port = free_port();
    let cfg = dir.path().join("agent.yml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {data}\ninterval: 1s\ninstance: sd-agent\n\
             llm:\n  enabled: false\nsystem:\n  enabled: false\ncgroups:\n  enabled: false\n\
             remote_write:\n  url: {write}\n  min_backoff: 50ms\n  max_backoff: 500ms\n\
             scrape:\n  - job: sd\n\
             \x20   file_sd_configs:\n      - files: ['{files}']\n\
             \x20   http_sd_configs:\n      - url: http://{sd}/targets\n        refresh_interval: 1s\n\
             \x20   relabel_configs:\n\
             \x20     - source_labels: [role]\n        regex: ignored\n        action: drop\n\
             \x20     - source_labels: [__meta_filepath]\n        regex: '.*/([^/]+)\\.json'\n        target_label: sd_file\n\
             \x20     - source_labels: [__meta_url]\n        regex: '.+'\n        target_label: sd_via\n        replacement: http\n\
             \x20   metric_relabel_configs:\n\
             \x20     - source_labels: [__name__]\n        regex: sd_demo\n        target_label: relabeled\n        replacement: 'yes'\n",
            data = dir.path().join("agent-data").display(),
            write = collector.url("/api/v1/write"),
            files = targets_dir.join("*.json").display(),
            sd = sd.address(),
        ),
    )
    .expect("agent config");
    let check = Command::new(binary("vigil-agent").expect("binary"))
        .args(["check", "config"])
        .arg(&cfg)
        .output()
        .expect("check config");
    assert!(check.status.success(), "{check:?}");
    let mut agent = Agent {
        proc: Proc::spawn(
            "vigil-agent",
            Command::new(binary("vigil-agent").expect("binary"))
                .arg("--config")
                .arg(&cfg)
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
                ),
        )
        .expect("agent starts"),
        port,
    };
    wait_ready(
        &format!("http://127.0.0.1:{port}/-/healthy"),
        Duration::from_secs(30),
    )
    .expect("agent ready");
    let pid = agent.proc.child.id();

    // Phase 1: t1 (file) and t3 (HTTP) are scraped and shipped, relabeled.
    let series = wait_for("t1 and t3 at the collector", || {
        let s = collector_series(&collector);
        (s.contains_key(&t1.address()) && s.contains_key(&t3.address())).then_some(s)
    });
    let s1 = &series[&t1.address()];
    assert_eq!(s1["job"], "sd");
    assert_eq!(s1["team"], "a");
    assert_eq!(s1["sd_file"], "a");
    assert_eq!(s1["relabeled"], "yes");
    assert!(!s1.contains_key("sd_via"), "{s1:?}");
    assert!(
        s1.keys().all(|k| !k.starts_with("__") || k == "__name__"),
        "{s1:?}"
    );
    let s3 = &series[&t3.address()];
    assert_eq!(s3["team"], "c");
    assert_eq!(s3["sd_via"], "http");
    assert!(!s3.contains_key("sd_file"), "{s3:?}");
    let (active, dropped) = agent.targets();
    assert_eq!(active, sorted(vec![t1.address(), t3.address()]));
    assert_eq!(dropped, vec![t4.address()]);
    assert_eq!(
        agent.metric(
            "prometheus_sd_discovered_targets",
            &[("config", "sd"), ("name", "scrape")]
        ),
        Some(3.0)
    );
    let t3_loop = format!("scrape/sd/{}", t3.address());
    let t3_collections = agent
        .metric("vigil_agent_collections_total", &[("collector", &t3_loop)])
        .expect("t3's scrape loop");

    // Phase 2: the file trades t1 for t5; the endpoint adds t6.
    write_targets(
        &targets_dir,
        "a.json",
        &serde_json::json!([
            {"targets": [t5.address()], "labels": {"team": "e"}},
            {"targets": [t4.address()], "labels": {"role": "ignored"}},
        ]),
    );
    sd.set(
        200,
        &serde_json::json!([{"targets": [t3.address(), t6.address()], "labels": {"team": "c"}}])
            .to_string(),
    );
    let series = wait_for("t5 and t6 at the collector", || {
        let s = collector_series(&collector);
        (s.contains_key(&t5.address()) && s.contains_key(&t6.address())).then_some(s)
    });
    let s5 = &series[&t5.address()];
    assert_eq!(
        (
            s5["team"].as_str(),
            s5["sd_file"].as_str(),
            s5["relabeled"].as_str()
        ),
        ("e", "a", "yes")
    );
    let s6 = &series[&t6.address()];
    assert_eq!((s6["team"].as_str(), s6["sd_via"].as_str()), ("c", "http"));
    wait_for("t1 to leave the active targets", || {
        let (active, _) = agent.targets();
        (active == sorted(vec![t3.address(), t5.address(), t6.address()])).then_some(())
    });
    // t1 is no longer scraped: while t5 is scraped three more times, t1's
    // count does not move.
    let t1_hits = t1.hits();
    let (t3_before, t5_before) = (t3.hits(), t5.hits());
    wait_for("three more scrapes of t5", || {
        (t5.hits() >= t5_before + 3).then_some(())
    });
    assert_eq!(t1.hits(), t1_hits, "a removed target is still scraped");
    // t3 kept its one loop: scraped at t5's pace, not twice as often, and
    // its collection count went on rather than starting again.
    let (t3_delta, t5_delta) = (t3.hits() - t3_before, t5.hits() - t5_before);
    assert!(
        t3_delta <= t5_delta + 2,
        "t3 scraped {t3_delta} times while t5 was scraped {t5_delta} times: a duplicate loop"
    );
    assert!(
        agent
            .metric("vigil_agent_collections_total", &[("collector", &t3_loop)])
            .expect("t3's loop")
            >= t3_collections,
        "t3's scrape loop was restarted"
    );
    assert!(
        agent
            .metric(
                "vigil_agent_collections_total",
                &[("collector", &format!("scrape/sd/{}", t1.address()))]
            )
            .is_none(),
        "t1's loop still reports"
    );

    // Failures keep the last good targets, and are counted.
    sd.set(500, "oops");
    std::fs::write(targets_dir.join("a.json"), "[{\"targets\": [").expect("break the file");
    wait_for("both discovery failures to be counted", || {
        (agent.metric("prometheus_sd_http_failures_total", &[])? > 0.0
            && agent.metric("prometheus_sd_file_read_errors_total", &[])? > 0.0)
            .then_some(())
    });
    let (t5_before, t6_before) = (t5.hits(), t6.hits());
    wait_for("t5 and t6 still scraped after the failures", || {
        (t5.hits() > t5_before + 1 && t6.hits() > t6_before + 1).then_some(())
    });
    let (active, dropped) = agent.targets();
    assert_eq!(
        active,
        sorted(vec![t3.address(), t5.address(), t6.address()])
    );
    assert_eq!(dropped, vec![t4.address()]);

    // The dropped target was never requested and never shipped.
    assert_eq!(
        t4.hits(),
        0,
        "a target dropped by relabel_configs was scraped"
    );
    assert!(!collector_series(&collector).contains_key(&t4.address()));
    // And all of it without a restart.
    assert!(
        agent.proc.child.try_wait().expect("agent status").is_none(),
        "the agent exited"
    );
    assert_eq!(agent.proc.child.id(), pid);
    agent
        .proc
        .terminate(Duration::from_secs(30))
        .expect("agent stops");
}
