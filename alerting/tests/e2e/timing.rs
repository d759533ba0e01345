//! Grouping and timing through the binary: group_wait, group_interval,
//! repeat_interval, and inhibition of a warning by its critical.

use std::time::Duration;

use serde_json::json;

use crate::{Capture, post_alerts, start_vigil, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_wait_interval_repeat_and_inhibition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = Capture::start().await;
    let cfg = format!(
        r#"
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 4s
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [alertname, instance]
receivers:
  - name: hook
    webhook_configs:
      - url: {}/hook
"#,
        cap.url
    );
    let vigil = start_vigil(&cfg, dir.path(), &[]).await;
    let alert = |instance: &str, severity: &str| json!({"labels": {"alertname": "Cpu", "instance": instance, "severity": severity}});
    post_alerts(
        &vigil.url,
        json!([
            alert("a", "critical"),
            alert("a", "warning"),
            alert("b", "warning"),
            alert("c", "warning")
        ]),
    )
    .await;

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        cap.delivered("/hook").is_empty(),
        "nothing before group_wait"
    );
    let first = wait_for(Duration::from_secs(5), || {
        cap.delivered("/hook").first().cloned()
    })
    .await
    .expect("first notification");
    let got: Vec<(String, String)> = first.body["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| {
            (
                a["labels"]["instance"].as_str().unwrap_or("").into(),
                a["labels"]["severity"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".into(), "critical".into()),
            ("b".into(), "warning".into()),
            ("c".into(), "warning".into())
        ],
        "one notification for the group, the inhibited warning left out"
    );

    // A new alert joins the group: it is sent at the next group_interval.
    post_alerts(&vigil.url, json!([alert("d", "warning")])).await;
    let second = wait_for(Duration::from_secs(5), || {
        cap.delivered("/hook").get(1).cloned()
    })
    .await
    .expect("second notification");
    assert_eq!(second.body["alerts"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        cap.delivered("/hook").len(),
        2,
        "no duplicate of the first notification"
    );

    // Nothing changes: the group repeats after repeat_interval (4 s), not
    // at each group_interval (2 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        cap.delivered("/hook").len(),
        2,
        "no repeat before repeat_interval"
    );
    let third = wait_for(Duration::from_secs(6), || {
        cap.delivered("/hook").get(2).cloned()
    })
    .await
    .expect("repeat");
    assert_eq!(third.body["alerts"], second.body["alerts"]);
}
