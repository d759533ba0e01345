//! `amtool` manages silences against Vigil; a silenced alert is not
//! delivered until the silence is expired.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::{Capture, post_alerts, start_vigil, wait_for};

fn amtool(url: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("amtool")
        .arg(format!("--alertmanager.url={url}"))
        .args(args)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "amtool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_silence_add_query_expire() {
    assert!(
        Command::new("amtool").arg("--version").output().is_ok(),
        "amtool is missing: apt-get install prometheus-alertmanager (tests/run.sh does)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = Capture::start().await;
    let cfg = format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}/hook\n",
        cap.url
    );
    let vigil = start_vigil(&cfg, dir.path(), &[]).await;
    let id = amtool(
        &vigil.url,
        &[
            "silence",
            "add",
            "alertname=Maintenance",
            "severity=~warn|crit",
            "-c",
            "planned work",
            "-a",
            "ops",
        ],
    )
    .expect("amtool runs");
    assert_eq!(id.len(), 36, "amtool prints the new silence ID: {id:?}");
    let listed = amtool(&vigil.url, &["silence", "query", "-q"]).expect("query");
    assert_eq!(listed, id);
    let listed = amtool(&vigil.url, &["silence", "query", "alertname=Maintenance"])
        .expect("query by matcher");
    assert!(listed.contains("planned work"), "{listed}");

    post_alerts(
        &vigil.url,
        json!([
            {"labels": {"alertname": "Maintenance", "severity": "warn"}},
            {"labels": {"alertname": "Other", "severity": "warn"}},
        ]),
    )
    .await;
    wait_for(Duration::from_secs(10), || {
        (!cap.delivered("/hook").is_empty()).then_some(())
    })
    .await
    .expect("unsilenced alert delivered");
    let alerts =
        amtool(&vigil.url, &["alert", "query", "--silenced", "-o", "json"]).expect("alert query");
    assert!(
        alerts.contains(&id),
        "the alert lists its silence: {alerts}"
    );

    let expiring = std::time::Instant::now();
    amtool(&vigil.url, &["silence", "expire", &id]).expect("expire");
    let got = wait_for(Duration::from_secs(30), || {
        cap.delivered("/hook")
            .into_iter()
            .find(|c| c.body["groupLabels"]["alertname"] == "Maintenance")
    })
    .await
    .expect("delivered once the silence expired");
    // The first Maintenance notification came after the expiry: nothing
    // was delivered while the silence held, however long that was.
    assert!(
        got.at >= expiring,
        "the silenced alert was delivered before its silence expired"
    );
    assert_eq!(got.body["alerts"][0]["labels"]["severity"], "warn");
    let expired =
        amtool(&vigil.url, &["silence", "query", "--expired", "-q"]).expect("query expired");
    assert_eq!(expired, id);
}

/// amtool compares the server's `versionInfo.version` with its own and
/// prints a warning on every call when they differ; Vigil reports the
/// Alertmanager API version it speaks there and names itself elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_prints_no_version_warning() {
    let out = Command::new("amtool").arg("--version").output();
    assert!(
        out.is_ok(),
        "amtool is needed (Debian package prometheus-alertmanager)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = "route:\n  receiver: none\nreceivers:\n  - name: none\n";
    let vigil = start_vigil(cfg, dir.path(), &[]).await;
    let out = Command::new("amtool")
        .arg(format!("--alertmanager.url={}", vigil.url))
        .args(["silence", "query"])
        .output()
        .expect("amtool runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "amtool failed: {stderr}");
    assert!(
        !stderr.to_lowercase().contains("version"),
        "amtool warned about the version: {stderr}"
    );
    let status: serde_json::Value = reqwest::get(format!("{}/api/v2/status", vigil.url))
        .await
        .expect("status answers")
        .json()
        .await
        .expect("status is JSON");
    assert_eq!(status["versionInfo"]["branch"], "vigil", "{status}");
    assert_eq!(
        status["vigil"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{status}"
    );
}
