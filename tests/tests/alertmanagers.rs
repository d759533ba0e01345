//! `alerting.alertmanagers` through the real Alertmanager 0.25 (Debian's
//! `prometheus-alertmanager`): an alert Vigil's rules raise appears in the
//! Alertmanager's `/api/v2/alerts`, active, with Vigil's labels and
//! annotations; once the rule resolves it is sent again with `endsAt` set,
//! so the Alertmanager drops it long before the `endsAt` of the firing
//! alert (four resend delays ahead) would have. A second, unreachable
//! Alertmanager neither blocks the first nor goes unnoticed: its failures
//! are counted per target.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::{Collector, Proc, free_port, now_ms, series_request, wait_ready};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_alertmanager(dir: &Path, port: u16) -> Proc {
    assert!(
        Path::new(ALERTMANAGER).exists(),
        "{ALERTMANAGER} is missing: install the Debian package `prometheus-alertmanager` (tests/run.sh does)"
    );
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .expect("write alertmanager.yml");
    let p = Proc::spawn(
        "alertmanager",
        Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // A single instance: no gossip port.
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("alertmanager starts");
    wait_ready(
        &format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(30),
    )
    .expect("alertmanager ready");
    p
}

/// The Alertmanager's alerts named `name`.
fn am_alerts(port: u16, name: &str) -> Vec<Value> {
    let v: Value = reqwest::blocking::get(format!("http://127.0.0.1:{port}/api/v2/alerts"))
        .and_then(|r| r.json())
        .expect("alertmanager /api/v2/alerts");
    v.as_array()
        .expect("an array")
        .iter()
        .filter(|a| a["labels"]["alertname"] == name)
        .cloned()
        .collect()
}

/// Sum of Vigil's `/metrics` lines named `name` whose text contains `with`.
fn vigil_metric(vigil: &Collector, name: &str, with: &str) -> f64 {
    let text = reqwest::blocking::get(vigil.url("/metrics"))
        .and_then(|r| r.text())
        .expect("/metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter(|l| l.contains(with))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn push(vigil: &Collector, value: f64) {
    let req = series_request(
        &[
            ("__name__", "am_test_metric"),
            ("job", "api"),
            ("instance", "web-1"),
        ],
        &[(now_ms(), value)],
    );
    let (status, body) = vigil.remote_write(&req).expect("push");
    assert_eq!(status, 204, "{body}");
}

#[test]
fn alerts_reach_a_real_alertmanager_and_resolve_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let am_port = free_port();
    let _am = start_alertmanager(dir.path(), am_port);
    let dead_port = free_port();

    let rules = dir.path().join("am.rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: am\n    interval: 1s\n    rules:\n      - alert: AmTest\n        expr: am_test_metric > 0\n        labels:\n          severity: page\n        annotations:\n          summary: '{{ $labels.instance }} is at {{ $value }}'\n",
    )
    .expect("write rules");
    let cfg = dir.path().join("vigil.yml");
    std::fs::write(
        &cfg,
        format!(
            "external_labels:\n  cluster: test\nrules:\n  files: ['{}']\n  evaluation_interval: 1s\n  resend_delay: 1m\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}', '127.0.0.1:{dead_port}']\n      timeout: 2s\n",
            rules.display()
        ),
    )
    .expect("write vigil.yml");
    let vigil = Collector::start(
        &dir.path().join("vigil"),
        &["--config", cfg.to_str().expect("utf-8 path")],
    )
    .expect("vigil starts");
    assert_eq!(
        vigil_metric(
            &vigil,
            "vigil_alertmanager_notifications_alertmanagers_discovered",
            ""
        ),
        2.0
    );

    push(&vigil, 3.0);
    let firing = wait_for("AmTest active in the Alertmanager", || {
        am_alerts(am_port, "AmTest")
            .into_iter()
            .find(|a| a["status"]["state"] == "active")
    });
    assert_eq!(firing["labels"]["instance"], "web-1", "{firing}");
    assert_eq!(firing["labels"]["severity"], "page", "{firing}");
    assert_eq!(
        firing["labels"]["cluster"], "test",
        "external labels: {firing}"
    );
    assert_eq!(
        firing["annotations"]["summary"], "web-1 is at 3",
        "{firing}"
    );
    assert!(
        firing["generatorURL"]
            .as_str()
            .is_some_and(|u| u.contains("/graph?g0.expr=")),
        "{firing}"
    );
    // Firing: endsAt lies four resend delays ahead.
    let firing_ends =
        chrono::DateTime::parse_from_rfc3339(firing["endsAt"].as_str().expect("endsAt"))
            .expect("RFC 3339");

    // The unreachable one is counted, and did not hold the first back.
    wait_for("failures to the dead Alertmanager counted", || {
        (vigil_metric(
            &vigil,
            "vigil_alertmanager_notifications_errors_total",
            &format!(":{dead_port}/"),
        ) > 0.0)
            .then_some(())
    });
    assert_eq!(
        vigil_metric(
            &vigil,
            "vigil_alertmanager_notifications_errors_total",
            &format!(":{am_port}/"),
        ),
        0.0
    );
    assert!(
        vigil_metric(
            &vigil,
            "vigil_alertmanager_notifications_sent_total",
            &format!(":{am_port}/"),
        ) >= 1.0
    );

    // Resolve: the rule sends the alert with endsAt = now, and the
    // Alertmanager stops listing it.
    push(&vigil, 0.0);
    wait_for("AmTest resolved in the Alertmanager", || {
        am_alerts(am_port, "AmTest").is_empty().then_some(())
    });
    assert!(
        chrono::Utc::now() < firing_ends,
        "gone only because the firing alert's endsAt ({firing_ends}) passed"
    );
}
