//! `vigil report` and the scheduled digest, end to end: an hour of known
//! history (alert episodes, an outage, LLM spend, an SLO's recorded
//! series) is written to a real collector, the report built from its API
//! must match figures computed by hand, and the digest the collector
//! schedules a few seconds after start must reach a real SMTP server and a
//! Slack-style webhook, while a receiver that cannot be reached is counted
//! as failed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vigil_e2e::{Collector, Proc, binary, free_port, series_request, workspace_root};

const STEP: i64 = 15_000;

fn write(c: &Collector, labels: &[(&str, &str)], samples: &[(i64, f64)]) {
    let (status, body) = c
        .remote_write(&series_request(labels, samples))
        .expect("remote_write");
    assert_eq!(status, 204, "remote_write refused: {body}");
}

/// Samples every 15 s over `[from, to]` (inclusive) with `value(t)`.
fn every_step(from: i64, to: i64, value: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    (from..=to)
        .step_by(STEP as usize)
        .map(|t| (t, value(t)))
        .collect()
}

/// An episode of a firing alert, ended by the stale marker the rule
/// manager writes when an alert resolves.
fn firing(from: i64, to: Option<i64>, end_of_data: i64) -> Vec<(i64, f64)> {
    let mut s = every_step(from, to.unwrap_or(end_of_data), |_| 1.0);
    if let Some(to) = to {
        s.push((to + STEP, vigil_wire::stale_nan()));
    }
    s
}

fn start_smtp(dir: &Path) -> (Proc, std::path::PathBuf, u16) {
    let port = free_port();
    let out = dir.join("mail.jsonl");
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", workspace_root().join("alerting/tests"))
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "smtp_capture.Capture",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let proc = Proc::spawn("aiosmtpd", &mut cmd).expect("aiosmtpd (tests/run.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "aiosmtpd did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (proc, out, port)
}

fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[test]
fn report_matches_hand_computed_figures_and_the_digest_is_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_smtp, mail_log, smtp_port) = start_smtp(dir.path());
    let (slack_port, slack_posts) = vigil_e2e::webhook::webhook_receiver();
    let dead_port = free_port();

    // The digest is scheduled for after the history below is written (UTC).
    let at_secs = (vigil_e2e::now_ms() / 1000 + 45) % 86_400;
    let at = format!(
        "{:02}:{:02}:{:02}",
        at_secs / 3600,
        at_secs % 3600 / 60,
        at_secs % 60
    );
    std::fs::write(
        dir.path().join("am.yml"),
        format!(
            "route:\n  receiver: digest\nreceivers:\n  - name: digest\n    email_configs:\n      - to: sre@example.org\n        from: vigil@example.org\n        smarthost: 127.0.0.1:{smtp_port}\n        require_tls: false\n    slack_configs:\n      - api_url: http://127.0.0.1:{slack_port}/slack\n        channel: '#sre'\n  - name: broken\n    slack_configs:\n      - api_url: http://127.0.0.1:{dead_port}/slack\n"
        ),
    )
    .expect("write am.yml");
    std::fs::write(
        dir.path().join("vigil.yml"),
        format!(
            "alerting_config: {}\nllm:\n  budgets:\n    - name: acme\n      labels: {{tenant: acme}}\n      monthly_usd: 5\nreports:\n  digest:\n    every: daily\n    at: \"{}\"\n    receivers: [digest, broken]\n",
            dir.path().join("am.yml").display(),
            at
        ),
    )
    .expect("write vigil.yml");
    let data = dir.path().join("data");
    let config = dir.path().join("vigil.yml");
    let c = Collector::start(&data, &["--config", config.to_str().expect("utf-8 path")])
        .expect("collector");

    // The budget series are written by the collector itself (llm.budgets),
    // at each evaluation from start; the period must end after the first.
    let first_budget_ms = poll("the budget series", Duration::from_secs(60), || {
        let v = c.get_json("/api/v1/query?query=llm_budget_usd").ok()?;
        let t = v["data"]["result"][0]["value"][0].as_f64()?;
        Some((t * 1000.0) as i64)
    });
    poll(
        "the clock to pass the next 15 s step",
        Duration::from_secs(30),
        || {
            let now = vigil_e2e::now_ms();
            (now - now % STEP >= first_budget_ms).then_some(())
        },
    );

    // One hour of history ending now, on the report's 15 s grid.
    let now = vigil_e2e::now_ms();
    let to = now - now % STEP;
    let from = to - 3_600_000;
    let min = 60_000;
    // HighErrorRate: two episodes, 10m15s and 5m15s (firing until the
    // stale marker a step after the last sample).
    write(
        &c,
        &[
            ("__name__", "ALERTS"),
            ("alertname", "HighErrorRate"),
            ("alertstate", "firing"),
            ("severity", "page"),
            ("job", "api"),
        ],
        &[
            firing(from + 10 * min, Some(from + 20 * min), to),
            firing(from + 40 * min, Some(from + 45 * min), to),
        ]
        .concat(),
    );
    // DiskFull: still firing at the end.
    write(
        &c,
        &[
            ("__name__", "ALERTS"),
            ("alertname", "DiskFull"),
            ("alertstate", "firing"),
            ("severity", "warning"),
            ("instance", "db1"),
        ],
        &firing(from + 50 * min, None, to),
    );
    // The watchdog is not an incident.
    write(
        &c,
        &[
            ("__name__", "ALERTS"),
            ("alertname", "Watchdog"),
            ("alertstate", "firing"),
            ("severity", "none"),
        ],
        &firing(from, None, to),
    );
    // A target down from 30m to 32m15s (the first `up 1` after the outage).
    write(
        &c,
        &[
            ("__name__", "up"),
            ("job", "node"),
            ("instance", "web1:9100"),
        ],
        &every_step(from, to, |t| {
            if (from + 30 * min..from + 32 * min + STEP).contains(&t) {
                0.0
            } else {
                1.0
            }
        }),
    );
    // LLM cost counters: acme $0.01 and beta $0.025 per 15 s, so $2.40 and
    // $6.00 over the hour.
    for (tenant, per_step) in [("acme", 0.01), ("beta", 0.025)] {
        write(
            &c,
            &[
                ("__name__", "llm_cost_usd_total"),
                ("tenant", tenant),
                ("model", "gpt-4o"),
                ("provider", "openai"),
            ],
            &every_step(from, to, |t| (t - from) as f64 / STEP as f64 * per_step),
        );
    }
    // An availability SLO's recorded series: 0.2% errors against a 99.9%
    // objective (burn rate 2), a quarter of the 30-day budget left.
    let slo = [("slo_service", "api"), ("slo_name", "availability")];
    let with = |name: &'static str, extra: &[(&'static str, &'static str)]| {
        let mut l = vec![("__name__", name)];
        l.extend_from_slice(&slo);
        l.extend_from_slice(extra);
        l
    };
    write(
        &c,
        &with("slo:sli_error:ratio_rate5m", &[("slo_window", "5m")]),
        &every_step(from, to, |_| 0.002),
    );
    write(
        &c,
        &with("slo:objective:ratio", &[]),
        &every_step(from, to, |_| 0.999),
    );
    write(
        &c,
        &with("slo:period_error_budget_remaining:ratio", &[]),
        &every_step(from, to, |_| 0.25),
    );

    let run = |format: &str| {
        let out = Command::new(binary("vigil").expect("vigil"))
            .args(["report", "--url", &c.url(""), "--format", format])
            .args([
                "--from",
                &format!("{}", from / 1000),
                "--to",
                &format!("{}", to / 1000),
            ])
            .output()
            .expect("vigil report");
        assert!(
            out.status.success(),
            "vigil report failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 report")
    };
    let json: serde_json::Value = serde_json::from_str(&run("json")).expect("JSON report");
    assert_eq!(json["errors"], serde_json::json!([]), "{json:#}");
    let inc = &json["incidents"];
    assert_eq!(inc["count"], 3, "{inc:#}");
    assert_eq!(inc["resolved"], 2, "{inc:#}");
    // (615 s + 315 s) / 2.
    assert_eq!(inc["mttr_seconds"].as_f64(), Some(465.0), "{inc:#}");
    assert_eq!(inc["list"][0]["alertname"], "HighErrorRate");
    assert_eq!(inc["list"][0]["start_ms"], from + 10 * min);
    assert_eq!(inc["list"][2]["alertname"], "DiskFull");
    assert!(inc["list"][2]["end_ms"].is_null(), "still firing: {inc:#}");
    assert!(!inc.to_string().contains("Watchdog"));
    let noisy = &json["noisiest_alerts"];
    assert_eq!(noisy[0]["alertname"], "HighErrorRate");
    assert_eq!(noisy[0]["episodes"], 2);
    assert_eq!(noisy[0]["firing_seconds"].as_f64(), Some(930.0));
    assert_eq!(noisy[1]["alertname"], "DiskFull");
    assert_eq!(noisy[1]["firing_seconds"].as_f64(), Some(600.0));

    let down = json["agents_down"].as_array().expect("agents_down");
    let web1: Vec<_> = down
        .iter()
        .filter(|d| d["instance"] == "web1:9100")
        .collect();
    assert_eq!(web1.len(), 1, "{down:?}");
    assert_eq!(web1[0]["episodes"], 1);
    assert_eq!(web1[0]["down_seconds"].as_f64(), Some(135.0));
    assert_eq!(web1[0]["down_at_end"], false);

    let spend = &json["llm_spend"];
    let usd = |tenant: &str| {
        spend["by_tenant_model"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["tenant"] == tenant))
            .and_then(|s| s["usd"].as_f64())
            .unwrap_or_else(|| panic!("no spend for {tenant}: {spend:#}"))
    };
    assert!(close(usd("beta"), 6.0), "{spend:#}");
    assert!(close(usd("acme"), 2.4), "{spend:#}");
    assert!(
        close(spend["total_usd"].as_f64().expect("total"), 8.4),
        "{spend:#}"
    );
    assert_eq!(spend["budgets"][0]["budget"], "acme");
    assert_eq!(spend["budgets"][0]["monthly_usd"].as_f64(), Some(5.0));

    let slo = &json["slos"][0];
    assert_eq!(slo["service"], "api", "{json:#}");
    assert!(close(slo["objective"].as_f64().expect("objective"), 0.999));
    assert!(close(
        slo["period_error_ratio"].as_f64().expect("ratio"),
        0.002
    ));
    assert!(close(slo["period_burn_rate"].as_f64().expect("burn"), 2.0));
    assert!(close(
        slo["budget_remaining"].as_f64().expect("remaining"),
        0.25
    ));

    let md = run("markdown");
    assert!(md.contains("| HighErrorRate | 2 | 15m 30s |"), "{md}");
    assert!(md.contains("| beta | gpt-4o | $6.00 |"), "{md}");
    assert!(
        md.contains("| api | availability | 99.90% | 0.200% | 2.00x | 25.0% |"),
        "{md}"
    );
    assert!(
        md.contains("| node | web1:9100 | 1 | 2m 15s | no |"),
        "{md}"
    );
    let html = run("html");
    assert!(html.contains("<td>HighErrorRate</td>"), "{html}");

    // The digest: one mail and one Slack post, and the unreachable
    // receiver counted as a failure after its retries.
    let mail = poll("the digest mail", Duration::from_secs(90), || {
        let text = std::fs::read_to_string(&mail_log).ok()?;
        let line = text.lines().next()?;
        serde_json::from_str::<serde_json::Value>(line).ok()
    });
    assert!(
        mail["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("Vigil daily report")),
        "{mail}"
    );
    assert_eq!(mail["rcpt"], serde_json::json!(["sre@example.org"]));
    let parts = mail["parts"].to_string();
    assert!(
        parts.contains("HighErrorRate") && parts.contains("text/html"),
        "{mail}"
    );
    let post = poll("the digest Slack post", Duration::from_secs(30), || {
        slack_posts.lock().ok()?.first().cloned()
    });
    assert_eq!(post["channel"], "#sre");
    assert!(
        post["text"]
            .as_str()
            .is_some_and(|t| t.contains("HighErrorRate")),
        "{post}"
    );
    poll("the failed digest counted", Duration::from_secs(60), || {
        let text = reqwest::blocking::get(c.url("/metrics"))
            .ok()?
            .text()
            .ok()?;
        let sent =
            vigil_e2e::bench::metric_value(&text, "vigil_report_digests_total{result=\"sent\"}")?;
        let failed =
            vigil_e2e::bench::metric_value(&text, "vigil_report_digests_total{result=\"failed\"}")?;
        (sent == 2.0 && failed == 1.0).then_some(())
    });
}

#[test]
fn a_digest_receiver_that_cannot_take_it_refuses_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("am.yml"),
        "route:\n  receiver: hook\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:9/\n",
    )
    .expect("write am.yml");
    std::fs::write(
        dir.path().join("vigil.yml"),
        format!(
            "alerting_config: {}\nreports:\n  digest:\n    every: weekly\n    receivers: [hook]\n",
            dir.path().join("am.yml").display()
        ),
    )
    .expect("write vigil.yml");
    let out = Command::new(binary("vigil").expect("vigil"))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--config")
        .arg(dir.path().join("vigil.yml"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("vigil serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has webhook_configs") && err.contains("hook"),
        "{err}"
    );
}
