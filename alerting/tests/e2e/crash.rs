//! Durability: a notification failing with 503 survives `kill -9` and is
//! delivered exactly once after restart, when the receiver recovers.

use std::time::Duration;

use serde_json::json;

use crate::{Capture, post_alerts, start_vigil, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_notification_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = Capture::start().await;
    cap.set_status(503);
    let cfg = format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}/hook\n",
        cap.url
    );
    let args = [
        "--notify.retry-initial-backoff",
        "200ms",
        "--notify.retry-max-backoff",
        "500ms",
    ];
    let mut vigil = start_vigil(&cfg, dir.path(), &args).await;
    post_alerts(
        &vigil.url,
        json!([{"labels": {"alertname": "DbDown", "instance": "pg1"}}]),
    )
    .await;
    wait_for(Duration::from_secs(10), || {
        (cap.all("/hook").len() >= 2).then_some(())
    })
    .await
    .expect("the failing receiver is retried");
    vigil.kill9();
    assert!(cap.delivered("/hook").is_empty());

    cap.set_status(200);
    let vigil = start_vigil(&cfg, dir.path(), &args).await;
    let got = wait_for(Duration::from_secs(10), || {
        cap.delivered("/hook").first().cloned()
    })
    .await
    .expect("delivered after restart");
    assert_eq!(got.body["alerts"][0]["labels"]["alertname"], "DbDown");
    // A second alert joins the group: the notification that carries it
    // proves the group was flushed again after the replay, and nothing
    // before it may repeat the first.
    post_alerts(
        &vigil.url,
        json!([{"labels": {"alertname": "DbDown", "instance": "pg2"}}]),
    )
    .await;
    let all = wait_for(Duration::from_secs(30), || {
        let d = cap.delivered("/hook");
        d.iter()
            .any(|c| c.body["alerts"].as_array().is_some_and(|a| a.len() == 2))
            .then_some(d)
    })
    .await
    .expect("the grown group is notified");
    let alone = all
        .iter()
        .filter(|c| c.body["alerts"].as_array().is_some_and(|a| a.len() == 1))
        .count();
    assert_eq!(
        alone, 1,
        "the replayed notification was delivered exactly once"
    );

    // The alert itself survived too.
    let alerts: serde_json::Value = reqwest::get(format!("{}/api/v2/alerts", vigil.url))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(
        alerts
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["labels"]["instance"] == "pg1")),
        "{alerts}"
    );
}
