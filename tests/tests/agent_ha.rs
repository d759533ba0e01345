//! The HA data path through the real binaries: one `vigil-agent` ships to
//! two real collectors (`remote_writes`), each destination with its own
//! disk buffer. One collector is stopped for a while and started again on
//! the same data directory; meanwhile the agent keeps collecting, the other
//! collector keeps receiving (one destination down does not block the
//! other), and afterwards both collectors hold every sample, the same ones,
//! none twice.
//!
//! Counts, not seconds: the outage lasts `OUTAGE_COLLECTIONS` of the
//! agent's own collections (1 s interval), read from its counters, and every
//! wait polls an observable condition under a generous deadline that only a
//! hang reaches.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vigil_e2e::{Collector, Proc, binary, free_port, wait_ready};

/// Collections the second collector misses while it is down.
const OUTAGE_COLLECTIONS: u64 = 10;
const DEADLINE: Duration = Duration::from_secs(120);
const INSTANCE: &str = "ha-agent";
const SERIES: &str = "node_boot_time_seconds{job=\"vigil-agent\",instance=\"ha-agent\"}";

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

struct Agent {
    proc: Proc,
    port: u16,
}

impl Agent {
    fn start(dir: &Path, a: &Collector, b: &Collector, collect: bool) -> Agent {
        let port = free_port();
        let cfg = dir.join(format!("agent-{port}.yml"));
        let dest = |name: &str, c: &Collector| {
            format!(
                "  - name: {name}\n    url: {}\n    min_backoff: 50ms\n    max_backoff: 500ms\n",
                c.url("/api/v1/write")
            )
        };
        std::fs::write(
            &cfg,
            format!(
                "listen: 127.0.0.1:{port}\ndata_dir: {}\ninterval: 1s\ninstance: {INSTANCE}\n\
                 llm:\n  enabled: false\nsystem:\n  enabled: {collect}\nremote_writes:\n{}{}",
                dir.join("agent-data").display(),
                dest("a", a),
                dest("b", b),
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
        Agent { proc, port }
    }

    /// The agent's value of `name` whose labels contain every `want` pair.
    fn metric(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        let text = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .and_then(|r| r.text())
            .expect("agent /metrics");
        let exp = vigil_wire::exposition::parse(&text, &Default::default()).expect("parses");
        exp.samples
            .iter()
            .find(|s| {
                s.labels.metric_name() == Some(name)
                    && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map_or(0.0, |s| s.value)
    }

    fn collections(&self) -> u64 {
        self.metric("vigil_agent_collections_total", &[("collector", "system")]) as u64
    }
}

/// Every timestamp the collector holds for the agent's one-per-collection
/// series, oldest first.
fn timestamps(c: &Collector) -> Vec<i64> {
    let q = format!("{SERIES}[1h]");
    let v = reqwest::blocking::Client::new()
        .get(c.url("/api/v1/query"))
        .query(&[("query", q.as_str())])
        .send()
        .and_then(|r| r.json::<serde_json::Value>())
        .expect("query");
    assert_eq!(v["status"], "success", "{v}");
    let Some(series) = v["data"]["result"].as_array().and_then(|r| r.first()) else {
        return Vec::new();
    };
    series["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|p| (p[0].as_f64().expect("timestamp") * 1000.0).round() as i64)
        .collect()
}

#[test]
fn agent_ships_to_two_collectors_and_one_outage_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Collector::start(&dir.path().join("a"), &[]).expect("collector a");
    let b_port = free_port();
    let b_data = dir.path().join("b");
    let mut b = Collector::start_on(&b_data, b_port, &[]).expect("collector b");
    let mut agent = Agent::start(dir.path(), &a, &b, true);
    wait_for(
        "both collectors to receive the agent's first samples",
        || (!timestamps(&a).is_empty() && !timestamps(&b).is_empty()).then_some(()),
    );

    // B goes away; the agent keeps collecting and A keeps receiving.
    b.proc.terminate(Duration::from_secs(30)).expect("b stops");
    let c0 = agent.collections();
    wait_for("failed sends to b during its outage", || {
        (agent.metric(
            "vigil_agent_remote_write_failures_total",
            &[("remote_name", "b")],
        ) > 0.0
            && agent.collections() >= c0 + OUTAGE_COLLECTIONS)
            .then_some(())
    });
    let during = agent.collections();
    // Not blocked by B: A has what was collected during B's outage.
    wait_for("a to keep up while b is down", || {
        (timestamps(&a).len() as u64 >= during.saturating_sub(1)).then_some(())
    });
    assert_eq!(
        agent.metric(
            "vigil_agent_remote_write_failures_total",
            &[("remote_name", "a")]
        ),
        0.0,
        "sends to a failed while only b was down"
    );
    let waiting = agent.metric("vigil_agent_buffer_samples", &[("remote_name", "b")]);
    assert!(
        waiting > 0.0,
        "nothing waits in b's buffer during its outage"
    );

    // B comes back on the same data directory and catches up.
    b = Collector::start_on(&b_data, b_port, &[]).expect("collector b restarts");
    wait_for("b's buffer to drain", || {
        (agent.metric("vigil_agent_samples_sent_total", &[("remote_name", "b")]) > 0.0
            && agent.metric("vigil_agent_buffer_samples", &[("remote_name", "b")]) == 0.0)
            .then_some(())
    });

    // Freeze the ground truth: stop the agent (whatever it had not sent
    // stays in its buffers) and run it again without collecting, so it
    // only drains them.
    let collected = agent.collections();
    agent
        .proc
        .terminate(Duration::from_secs(30))
        .expect("agent stops");
    let _drain = Agent::start(dir.path(), &a, &b, false);
    let (ta, tb) = wait_for("both collectors to hold every collection", || {
        let (ta, tb) = (timestamps(&a), timestamps(&b));
        (ta.len() as u64 >= collected && tb.len() as u64 >= collected && ta == tb)
            .then_some((ta, tb))
    });
    // One collection may slip in between reading the counter and SIGTERM.
    assert!(
        ta.len() as u64 <= collected + 1,
        "{} samples for {collected} collections",
        ta.len()
    );
    for w in ta.windows(2) {
        assert!(w[0] < w[1], "duplicated or out of order: {w:?}");
    }
    assert_eq!(ta, tb, "the two collectors hold different samples");
}
