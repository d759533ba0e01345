//! `vigil backtest` end to end. One series with known high stretches (a
//! stretch longer than `for`, a spike shorter than it, a gap longer than
//! the 5-minute lookback, a stale marker) is loaded into a running `vigil
//! serve` and into the real Prometheus 2.42; then:
//! - the backtest over the data directory, run while serve holds it, gives
//!   alert states at every minute that `promtool test rules` confirms on
//!   the same series (the test file is generated from the backtest's
//!   transitions and promtool must pass it);
//! - the backtest against Prometheus's query API (`--url`) prints the same
//!   transitions;
//! - `--alerting-config` prints the notifications (group_wait, silences);
//! - anomaly rules print their score series and flagged points;
//! - `--backfill` is refused while serve runs and writes the recorded
//!   series once it is stopped, and a rule over the backfilled series
//!   fires at the same times.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vigil_e2e::bench::Prometheus;
use vigil_e2e::{Collector, binary, now_ms, post_remote_write, series_request};

const MIN: i64 = 60_000;
/// Minutes of data.
const N: i64 = 150;

const RULES: &str = r#"groups:
  - name: bt
    interval: 1m
    rules:
      - record: instance:load:max
        expr: max by (instance) (load)
      - alert: LoadHigh
        expr: instance:load:max > 50
        for: 5m
        keep_firing_for: 3m
        labels:
          severity: page
      - alert: LoadSpike
        expr: load > 50
"#;

#[derive(Clone, Copy)]
enum P {
    V(f64),
    Missing,
    Stale,
}

/// The value of `load{instance}` at minute `m`.
fn load(inst: &str, m: i64) -> P {
    let base = 1.0 + (m % 7) as f64 * 0.1;
    match inst {
        "a" => match m {
            20..=39 => P::V(100.0),           // longer than for
            60..=62 => P::V(100.0),           // shorter than for
            70..=79 | 90..=99 => P::V(100.0), // around a gap
            80..=89 => P::Missing,            // gap > 5m lookback
            105..=110 => P::V(100.0),
            111 => P::Stale, // ends at once
            112..=114 => P::Missing,
            _ => P::V(base),
        },
        _ => match m {
            30..=49 => P::V(80.0),
            _ => P::V(base),
        },
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

/// Both series in one request: Prometheus's head takes samples older than
/// an hour before its newest only in the request that first fills it.
fn push(url: &str, base: i64) {
    let mut req = series_request(&[("__name__", "load"), ("instance", "a")], &[]);
    req.timeseries.clear();
    for inst in ["a", "b"] {
        let samples: Vec<(i64, f64)> = (0..=N)
            .filter_map(|m| match load(inst, m) {
                P::V(v) => Some((base + m * MIN, v)),
                P::Stale => Some((base + m * MIN, f64::from_bits(vigil_wire::STALE_NAN_BITS))),
                P::Missing => None,
            })
            .collect();
        let one = series_request(&[("__name__", "load"), ("instance", inst)], &samples);
        req.timeseries.extend(one.timeseries);
    }
    let (status, msg) =
        post_remote_write(url, vigil_wire::remote_write::encode_write_request(&req))
            .expect("remote write");
    assert!((200..300).contains(&status), "{url}: {status} {msg}");
}

fn backtest(args: &[&str]) -> (i32, Vec<Value>, String) {
    let out = Command::new(binary("vigil").expect("vigil"))
        .arg("backtest")
        .args(args)
        .output()
        .expect("run vigil backtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rfc(ms: i64) -> String {
    let secs = ms / 1000;
    // Seconds since the epoch as RFC 3339 via the binary's own parser is
    // what we test; the test passes Unix seconds instead.
    secs.to_string()
}

fn minute(v: &Value, base: i64) -> i64 {
    let t = v["time"].as_str().expect("time");
    let ms = chrono_like_parse(t);
    (ms - base) / MIN
}

/// RFC 3339 `YYYY-MM-DDTHH:MM:SSZ` to ms (UTC), enough for the output.
fn chrono_like_parse(t: &str) -> i64 {
    let d = |a: usize, b: usize| t[a..b].parse::<i64>().expect("digits");
    let (y, mo, da, h, mi, s) = (d(0, 4), d(5, 7), d(8, 10), d(11, 13), d(14, 16), d(17, 19));
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400) + h * 3600 + mi * 60 + s) * 1000
}

/// (minute, rule, instance, state) of every transition line.
fn transitions(lines: &[Value], base: i64) -> Vec<(i64, String, String, String)> {
    lines
        .iter()
        .filter(|l| l.get("state").is_some())
        .map(|l| {
            (
                minute(l, base),
                l["rule"].as_str().unwrap_or("").to_string(),
                l["labels"]["instance"].as_str().unwrap_or("").to_string(),
                l["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// A promtool unit-test file asserting, at every minute, exactly the
/// `ALERTS` the backtest's transitions imply.
fn promtool_test(rules_file: &str, trans: &[(i64, String, String, String)]) -> String {
    let mut series = String::new();
    for inst in ["a", "b"] {
        let vals: Vec<String> = (0..=N)
            .map(|m| match load(inst, m) {
                P::V(v) => format!("{v}"),
                P::Missing => "_".into(),
                P::Stale => "stale".into(),
            })
            .collect();
        series.push_str(&format!(
            "      - series: 'load{{instance=\"{inst}\"}}'\n        values: '{}'\n",
            vals.join(" ")
        ));
    }
    let mut tests = String::new();
    for m in 0..=N {
        // State of each (rule, instance) at m: the last transition at or before m.
        let mut states: std::collections::BTreeMap<(String, String), String> = Default::default();
        for (t, rule, inst, state) in trans {
            if *t <= m {
                states.insert((rule.clone(), inst.clone()), state.clone());
            }
        }
        let mut exp = String::new();
        for ((rule, inst), state) in &states {
            if state == "resolved" {
                continue;
            }
            let sev = if rule == "LoadHigh" {
                ",severity=\"page\""
            } else {
                ""
            };
            exp.push_str(&format!(
                "          - labels: 'ALERTS{{alertname=\"{rule}\",alertstate=\"{state}\",instance=\"{inst}\"{sev}}}'\n            value: 1\n"
            ));
        }
        if exp.is_empty() {
            tests.push_str(&format!(
                "      - expr: ALERTS\n        eval_time: {m}m\n        exp_samples: []\n"
            ));
        } else {
            tests.push_str(&format!(
                "      - expr: ALERTS\n        eval_time: {m}m\n        exp_samples:\n{exp}"
            ));
        }
    }
    format!(
        "rule_files:\n  - {rules_file}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series}    promql_expr_test:\n{tests}"
    )
}

#[test]
fn backtest_matches_promtool_and_prometheus_and_simulates_notifications() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = write(dir.path(), "bt.rules.yml", RULES);
    // Whole minutes, old enough that all of the series is in the past.
    let base = (now_ms() / MIN - N - 5) * MIN;
    let from = rfc(base);
    let to = rfc(base + N * MIN);

    let data = dir.path().join("data");
    let mut serve = Collector::start(&data, &[]).expect("vigil serve");
    push(&serve.url("/api/v1/write"), base);

    // 1. Over the data directory, while serve holds it.
    let dd = data.display().to_string();
    let (code, lines, err) = backtest(&[
        "--data-dir",
        &dd,
        "--rule-file",
        &rules,
        "--from",
        &from,
        "--to",
        &to,
    ]);
    assert_eq!(code, 0, "{err}");
    let got = transitions(&lines, base);
    let expect_some = [
        (20, "LoadHigh", "a", "pending"),
        (25, "LoadHigh", "a", "firing"),
        // Clear at 40, kept firing for 3m.
        (43, "LoadHigh", "a", "resolved"),
        (60, "LoadHigh", "a", "pending"),
        (63, "LoadHigh", "a", "resolved"),
    ];
    for e in expect_some {
        assert!(
            got.iter()
                .any(|g| (g.0, g.1.as_str(), g.2.as_str(), g.3.as_str()) == e),
            "{e:?} missing from {got:#?}"
        );
    }
    let p = dir.path().join("bt.test.yml");
    std::fs::write(&p, promtool_test(&rules, &got)).expect("write test");
    let out = Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg(&p)
        .output()
        .expect("promtool (apt-get install prometheus)");
    assert!(
        out.status.success(),
        "promtool disagrees with the backtest:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // 2. The same against the real Prometheus's query API.
    let prom = Prometheus::start(dir.path()).expect("prometheus");
    push(&prom.url("/api/v1/write"), base);
    let (code, lines, err) = backtest(&[
        "--url",
        &prom.base,
        "--rule-file",
        &rules,
        "--from",
        &from,
        "--to",
        &to,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        transitions(&lines, base),
        got,
        "--url and --data-dir differ"
    );

    // 3. Notifications: group_wait 30s, a silence on instance b.
    let am = write(
        dir.path(),
        "am.yml",
        "route:\n  receiver: team\n  group_by: [alertname, instance]\n  group_wait: 30s\n  group_interval: 5m\n  repeat_interval: 4h\nreceivers:\n  - name: team\n    webhook_configs:\n      - url: http://127.0.0.1:1/never-called\n",
    );
    let silences = write(
        dir.path(),
        "silences.json",
        &format!(
            r#"[{{"matchers":[{{"name":"instance","value":"b","isRegex":false,"isEqual":true}}],"startsAt":"{}","endsAt":"{}","createdBy":"test","comment":"b is under maintenance"}}]"#,
            to_rfc(base),
            to_rfc(base + N * MIN)
        ),
    );
    let (code, lines, err) = backtest(&[
        "--data-dir",
        &dd,
        "--rule-file",
        &rules,
        "--from",
        &from,
        "--to",
        &to,
        "--alerting-config",
        &am,
        "--silences",
        &silences,
    ]);
    assert_eq!(code, 0, "{err}");
    let notes: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("notification").is_some())
        .collect();
    assert!(!notes.is_empty(), "no notifications: {err}");
    let about = |n: &Value, rule: &str| {
        n["notification"]["groupKey"].as_str().is_some_and(|k| {
            k.contains(&format!("alertname=\"{rule}\"")) && k.contains("instance=\"a\"")
        })
    };
    let high: Vec<&&Value> = notes.iter().filter(|n| about(n, "LoadHigh")).collect();
    // Fired at minute 25; the group waits group_wait (30s) before its first flush.
    let first = high.first().expect("LoadHigh notified");
    assert_eq!(
        chrono_like_parse(first["time"].as_str().expect("time")),
        base + 25 * MIN + 30_000
    );
    assert_eq!(first["notification"]["status"], "firing");
    assert_eq!(first["notification"]["receiver"], "team");
    assert!(
        high.iter()
            .any(|n| n["notification"]["status"] == "resolved"),
        "resolved notification missing: {high:#?}"
    );
    assert!(
        notes.iter().all(|n| !n["notification"]["groupKey"]
            .as_str()
            .unwrap_or("")
            .contains("instance=\"b\"")),
        "instance b is silenced"
    );

    // 4. Anomaly rules: the score series and flagged points.
    let anomaly = write(
        dir.path(),
        "load.anomaly.yml",
        "groups:\n  - name: an\n    interval: 1m\n    rules:\n      - anomaly: LoadAnomaly\n        expr: load{instance=\"a\"}\n        training_window: 15m\n        model:\n          min_points: 10\n",
    );
    let (code, lines, err) = backtest(&[
        "--data-dir",
        &dd,
        "--rule-file",
        &anomaly,
        "--from",
        &rfc(base + 15 * MIN),
        "--to",
        &to,
    ]);
    assert_eq!(code, 0, "{err}");
    let scores: Vec<&Value> = lines.iter().filter(|l| l.get("score").is_some()).collect();
    assert!(scores.len() > 100, "{} scores", scores.len());
    for s in &scores {
        let v = s["score"].as_f64().expect("score");
        assert!(v > 0.0 && v <= 1.0, "{s}");
        assert_eq!(s["rule"], "LoadAnomaly");
    }
    let flagged: Vec<i64> = scores
        .iter()
        .filter(|s| s["anomaly"] == true)
        .map(|s| minute(s, base))
        .collect();
    assert!(
        flagged.iter().any(|m| (20..=22).contains(m)),
        "the jump at minute 20 is flagged: {flagged:?}"
    );
    let (_, only, _) = backtest(&[
        "--data-dir",
        &dd,
        "--rule-file",
        &anomaly,
        "--from",
        &rfc(base + 15 * MIN),
        "--to",
        &to,
        "--scores",
        "flagged",
    ]);
    let only_flagged: Vec<i64> = only
        .iter()
        .filter(|l| l.get("score").is_some())
        .map(|s| {
            assert_eq!(s["anomaly"], true);
            minute(s, base)
        })
        .collect();
    assert_eq!(only_flagged, flagged);

    // 5. Backfill: refused while serve holds the directory...
    let (code, _, err) = backtest(&[
        "--data-dir",
        &dd,
        "--rule-file",
        &rules,
        "--from",
        &from,
        "--to",
        &to,
        "--backfill",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("backfill refused") && err.contains("running `vigil serve`"),
        "{err}"
    );
    // ...and written once it is stopped: a rule over the backfilled series
    // alone fires exactly as the rule over the recording did.
    serve
        .proc
        .terminate(Duration::from_secs(30))
        .expect("stop serve");
    let (code, _, err) = backtest(&[
        "--data-dir",
        &dd,
        "--rule-file",
        &rules,
        "--from",
        &from,
        "--to",
        &to,
        "--backfill",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("samples of 2 series written"), "{err}");
    let only_alert = write(
        dir.path(),
        "only.rules.yml",
        "groups:\n  - name: bt\n    interval: 1m\n    rules:\n      - alert: LoadHigh\n        expr: instance:load:max > 50\n        for: 5m\n        keep_firing_for: 3m\n        labels:\n          severity: page\n",
    );
    let (code, lines, err) = backtest(&[
        "--data-dir",
        &dd,
        "--rule-file",
        &only_alert,
        "--from",
        &from,
        "--to",
        &to,
    ]);
    assert_eq!(code, 0, "{err}");
    let high_only: Vec<_> = got.iter().filter(|t| t.1 == "LoadHigh").cloned().collect();
    assert_eq!(transitions(&lines, base), high_only);
}

fn to_rfc(ms: i64) -> String {
    // Days to civil (Howard Hinnant's algorithm), UTC.
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}
