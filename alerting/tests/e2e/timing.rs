//! Grouping and timing through the binary: group_wait, group_interval,
//! repeat_interval, and inhibition of a warning by its critical. Only lower
//! bounds on real time are asserted (a slow machine is late, never early);
//! the exact schedule is checked with a fake clock in dispatch/tests.rs.

use std::time::{Duration, Instant};

use serde_json::json;

const GROUP_WAIT: Duration = Duration::from_secs(1);
const GROUP_INTERVAL: Duration = Duration::from_secs(2);
const REPEAT_INTERVAL: Duration = Duration::from_secs(4);

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
    let posted = Instant::now();
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

    // The exact schedule is the fake-clock unit tests' business
    // (dispatch/tests.rs); through the binary only "not before" can be
    // checked without racing a loaded machine: lateness is no failure.
    let first = wait_for(Duration::from_secs(30), || {
        cap.delivered("/hook").first().cloned()
    })
    .await
    .expect("first notification");
    // Every bound is taken from `posted`, which precedes the alerts'
    // arrival: a slow delivery of one notification cannot make the next
    // look early.
    assert!(
        first.at.duration_since(posted) >= GROUP_WAIT,
        "sent {:?} after the alerts, before group_wait",
        first.at.duration_since(posted)
    );
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
    let second = wait_for(Duration::from_secs(30), || {
        cap.delivered("/hook").get(1).cloned()
    })
    .await
    .expect("second notification");
    assert_eq!(second.body["alerts"].as_array().map(Vec::len), Some(4));
    assert!(
        second.at.duration_since(posted) >= GROUP_WAIT + GROUP_INTERVAL,
        "the change was sent {:?} after the alerts, before the next group_interval",
        second.at.duration_since(posted)
    );

    // Nothing changes: the group repeats after repeat_interval (4 s), not
    // at each group_interval (2 s). The third notification is the repeat,
    // with the same alerts: not a duplicate of the first.
    let third = wait_for(Duration::from_secs(30), || {
        cap.delivered("/hook").get(2).cloned()
    })
    .await
    .expect("repeat");
    assert_eq!(third.body["alerts"], second.body["alerts"]);
    assert!(
        third.at.duration_since(posted) >= GROUP_WAIT + GROUP_INTERVAL + REPEAT_INTERVAL,
        "repeated {:?} after the alerts, before repeat_interval had passed",
        third.at.duration_since(posted)
    );
    let firsts = cap
        .delivered("/hook")
        .iter()
        .filter(|c| c.body["alerts"] == first.body["alerts"])
        .count();
    assert_eq!(firsts, 1, "no duplicate of the first notification");
}
