//! LLM budgets and quotas through the real collector: with `llm.budgets`
//! and `llm.quotas` in vigil.yml, the collector writes the budget, the
//! month-to-date spend of the matching `llm_cost_usd_total` series (and
//! only those), the month-end forecast and the quotas as series the
//! default pack's rules (rules/llm-budget.rules.yml) read.

use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::{
    free_port, now_ms, post_remote_write, series_request, spawn_vigil_serve, wait_ready,
};
use vigil_wire::remote_write::encode_write_request;

fn query(base: &str, q: &str) -> Vec<Value> {
    let v: Value = reqwest::blocking::Client::new()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .expect("query")
        .json()
        .expect("json");
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Start (ms) and length (ms) of the UTC calendar month holding `t_ms`,
/// from the civil calendar (H. Hinnant's days/date conversions).
fn month_bounds(t_ms: i64) -> (i64, i64) {
    let days = t_ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let len_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    ((days - (day - 1)) * 86_400_000, len_days * 86_400_000)
}

fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("sample value")
}

#[test]
fn budgets_and_quotas_become_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("vigil.yml");
    std::fs::write(
        &cfg,
        r#"
rules:
  evaluation_interval: 1s
llm:
  budgets:
    - name: acme
      labels: { tenant: acme }
      monthly_usd: 100
    - name: everything
      monthly_usd: 1000
  quotas:
    - provider: openai
      model: gpt-4o
      tokens_per_minute: 30000
      requests_per_minute: 500
"#,
    )
    .expect("write config");
    let port = free_port();
    let _vigil = spawn_vigil_serve(&cfg, port, &dir.path().join("data")).expect("spawn vigil");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/-/ready"), Duration::from_secs(30)).expect("ready");

    // Cost counters of two tenants, starting at 0 within the last two
    // minutes (this month, barring the first two minutes of one).
    let t = now_ms();
    for (tenant, values) in [("acme", [0.0, 2.5, 5.0]), ("globex", [0.0, 10.0, 30.0])] {
        let req = series_request(
            &[
                ("__name__", "llm_cost_usd_total"),
                ("tenant", tenant),
                ("provider", "openai"),
                ("model", "gpt-4o"),
            ],
            &[
                (t - 120_000, values[0]),
                (t - 60_000, values[1]),
                (t - 1_000, values[2]),
            ],
        );
        let (status, body) =
            post_remote_write(&format!("{base}/api/v1/write"), encode_write_request(&req))
                .expect("push");
        assert!(status < 300, "{status}: {body}");
    }

    // The writer runs every evaluation interval; wait for a spend that
    // covers the pushed samples.
    let deadline = Instant::now() + Duration::from_secs(30);
    let spend = loop {
        let r = query(&base, "llm_spend_month_to_date_usd");
        if r.len() == 2 && r.iter().all(|s| value(s) > 0.0) {
            break r;
        }
        assert!(Instant::now() < deadline, "no month-to-date spend: {r:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let by_budget = |rows: &[Value], budget: &str| -> f64 {
        rows.iter()
            .find(|s| s["metric"]["budget"] == budget)
            .map(value)
            .unwrap_or_else(|| panic!("budget {budget} missing: {rows:?}"))
    };
    // increase() as Prometheus computes it: not extrapolated before a
    // counter's first sample at 0, extrapolated from the last sample to
    // the evaluation time (less than 1.1 sample spacings), the same
    // factor for both tenants' series, which share their timestamps.
    let (acme_spend, all_spend) = (by_budget(&spend, "acme"), by_budget(&spend, "everything"));
    assert!(
        (5.0..5.0 * (1.0 + 1.1 * 60.0 / 119.0)).contains(&acme_spend),
        "{acme_spend}"
    );
    assert!(
        (all_spend / acme_spend - 7.0).abs() < 1e-9,
        "everything = acme + globex = 7 x acme: {all_spend} vs {acme_spend}"
    );
    let acme = spend
        .iter()
        .find(|s| s["metric"]["budget"] == "acme")
        .expect("acme");
    assert_eq!(
        acme["metric"]["tenant"], "acme",
        "the budget's labels are kept"
    );

    let budgets = query(&base, "llm_budget_usd");
    assert_eq!(by_budget(&budgets, "acme"), 100.0);
    assert_eq!(by_budget(&budgets, "everything"), 1000.0);

    // forecast = spend × month length / time elapsed, at the sample's time.
    let rows = query(
        &base,
        "llm_spend_forecast_month_usd{budget=\"acme\"} / llm_spend_month_to_date_usd{budget=\"acme\"}",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    let ratio = value(&rows[0]);
    let at = query(
        &base,
        "timestamp(llm_spend_forecast_month_usd{budget=\"acme\"})",
    );
    let at_ms = (value(&at[0]) * 1000.0).round() as i64;
    let (start, len) = month_bounds(at_ms);
    let expected = len as f64 / (at_ms - start) as f64;
    assert!(
        (ratio - expected).abs() / expected < 1e-3,
        "forecast ratio {ratio}, expected {expected}"
    );

    let tpm = query(
        &base,
        "llm_quota_tokens_per_minute{provider=\"openai\",model=\"gpt-4o\"}",
    );
    assert_eq!(tpm.len(), 1);
    assert_eq!(value(&tpm[0]), 30000.0);
    let rpm = query(&base, "llm_quota_requests_per_minute");
    assert_eq!(value(&rpm[0]), 500.0);
}

#[test]
fn month_bounds_follow_the_calendar() {
    // 2024-02-29T12:00:00Z: a leap February.
    assert_eq!(
        month_bounds(1_709_208_000_000),
        (1_706_745_600_000, 29 * 86_400_000)
    );
    // 2026-12-06T00:00:00Z.
    assert_eq!(
        month_bounds(1_796_515_200_000),
        (1_796_083_200_000, 31 * 86_400_000)
    );
}

#[test]
fn a_bad_budget_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("vigil.yml");
    std::fs::write(
        &cfg,
        "llm:\n  budgets:\n    - name: acme\n      monthly_usd: -5\n",
    )
    .expect("write config");
    let vigil = vigil_e2e::binary("vigil").expect("vigil binary");
    let out = std::process::Command::new(vigil)
        .args(["check", "config"])
        .arg(&cfg)
        .output()
        .expect("run vigil check config");
    assert!(!out.status.success(), "accepted a negative budget");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("llm.budgets[0]: monthly_usd must be a positive number"),
        "{text}"
    );
}
