//! Behaviour beyond a single notification: resolve_timeout, the rate-limit
//! digest extension, hot reload, and Prometheus 2.42 using Vigil as its
//! Alertmanager.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{Capture, Proc, free_port, post_alerts, start_vigil, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_without_end_resolves_after_resolve_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = Capture::start().await;
    let cfg = format!(
        "global:\n  resolve_timeout: 1s\nroute:\n  receiver: hook\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}/hook\n",
        cap.url
    );
    let vigil = start_vigil(&cfg, dir.path(), &[]).await;
    post_alerts(&vigil.url, json!([{"labels": {"alertname": "Flap"}}])).await;
    let got = wait_for(Duration::from_secs(10), || {
        let d = cap.delivered("/hook");
        (d.len() >= 2).then_some(d)
    })
    .await
    .expect("firing then resolved");
    assert_eq!(got[0].body["status"], "firing");
    assert_eq!(got[1].body["status"], "resolved");
    assert_ne!(got[1].body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_folds_a_storm_into_a_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = Capture::start().await;
    let cfg = format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\nreceivers:\n  - name: hook\n    vigil_rate_limit: {{max_notifications: 2, per: 3s}}\n    webhook_configs:\n      - url: {}/hook\n",
        cap.url
    );
    let vigil = start_vigil(&cfg, dir.path(), &[]).await;
    let storm: Vec<_> = (0..6)
        .map(|i| json!({"labels": {"alertname": format!("Storm{i}")}}))
        .collect();
    let posted = Instant::now();
    post_alerts(&vigil.url, json!(storm)).await;
    let all = wait_for(Duration::from_secs(30), || {
        let d = cap.delivered("/hook");
        (d.len() >= 3).then_some(d)
    })
    .await
    .expect("the digest arrives when the window frees");
    assert_eq!(
        all.len(),
        3,
        "the four held notifications fold into one digest"
    );
    let mut names: Vec<String> = all
        .iter()
        .flat_map(|c| c.body["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| a["labels"]["alertname"].as_str().unwrap_or("").to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        (0..6).map(|i| format!("Storm{i}")).collect::<Vec<_>>(),
        "nothing dropped, nothing twice"
    );
    let is_digest = |c: &crate::Captured| {
        c.body["groupKey"]
            .as_str()
            .unwrap_or("")
            .starts_with("vigil-digest")
    };
    assert!(
        !is_digest(&all[0]) && !is_digest(&all[1]),
        "two notifications pass as they are"
    );
    assert!(is_digest(&all[2]), "{:?}", all[2].body);
    // The held ones wait for the window (3 s from the first send, which
    // follows `posted`): a lower bound, so a slow machine cannot fail it.
    assert!(
        all[2].at.duration_since(posted) >= Duration::from_secs(3),
        "the digest came {:?} after the storm, inside the window",
        all[2].at.duration_since(posted)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_config_and_rejects_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = Capture::start().await;
    let cfg = |path: &str| {
        format!(
            "route:\n  receiver: hook\n  group_wait: 0s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}/{path}\n",
            cap.url
        )
    };
    let vigil = start_vigil(&cfg("one"), dir.path(), &[]).await;
    let client = reqwest::Client::new();
    std::fs::write(
        dir.path().join("vigil.yml"),
        "route:\n  receiver: hook\n  bogus: 1\nreceivers:\n  - name: hook\n",
    )
    .expect("write");
    let r = client
        .post(format!("{}/-/reload", vigil.url))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status().as_u16(), 500);
    assert!(
        r.text().await.unwrap_or_default().contains("vigil.yml:3:3"),
        "error names file, line and column"
    );
    std::fs::write(dir.path().join("vigil.yml"), cfg("two")).expect("write");
    let r = client
        .post(format!("{}/-/reload", vigil.url))
        .send()
        .await
        .expect("reload");
    assert!(r.status().is_success());
    post_alerts(
        &vigil.url,
        json!([{"labels": {"alertname": "AfterReload"}}]),
    )
    .await;
    wait_for(Duration::from_secs(10), || {
        (!cap.delivered("/two").is_empty()).then_some(())
    })
    .await
    .expect("new receiver used");
    assert!(cap.delivered("/one").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sends_its_alerts_to_vigil() {
    assert!(
        Command::new("prometheus")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok(),
        "prometheus is missing: apt-get install prometheus (tests/run.sh does)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = Capture::start().await;
    let cfg = format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}/hook\n",
        cap.url
    );
    let vigil = start_vigil(&cfg, dir.path(), &[]).await;
    let target = vigil.url.trim_start_matches("http://");
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: t\n    interval: 1s\n    rules:\n      - alert: AlwaysOn\n        expr: vector(1) > 0\n        labels: {severity: info}\n        annotations: {summary: 'value {{ $value }}'}\n",
    )
    .expect("write rules");
    std::fs::write(
        dir.path().join("prom.yml"),
        format!("global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nalerting:\n  alertmanagers:\n    - api_version: v2\n      static_configs:\n        - targets: ['{target}']\n"),
    )
    .expect("write prometheus config");
    let port = free_port();
    let child = Command::new("prometheus")
        .current_dir(dir.path())
        .arg("--config.file=prom.yml")
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // The first send can race Alertmanager discovery and be dropped;
        // resend every second instead of every minute.
        .arg("--rules.alert.resend-delay=1s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn prometheus");
    let _prom = Proc {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let got = wait_for(Duration::from_secs(20), || {
        cap.delivered("/hook").first().cloned()
    })
    .await
    .expect("Prometheus alert delivered via Vigil");
    let alert = &got.body["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "AlwaysOn");
    assert_eq!(alert["annotations"]["summary"], "value 1");
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap_or("")
            .contains("/graph?g0.expr=")
    );
}
