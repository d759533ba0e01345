//! The same alerts through Vigil and Alertmanager 0.25 give the same
//! webhook bodies (external URL aside).

use std::time::Duration;

use serde_json::{Value, json};

use crate::{Capture, post_alerts, start_alertmanager, start_vigil, wait_for};

/// group_wait is longer than the alerts' age (2 s): for an alert older than
/// group_wait Alertmanager flushes its group at once, and on a loaded
/// machine between the two alerts of one request.
fn config(capture: &str, who: &str) -> String {
    format!(
        r#"
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 6s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {capture}/{who}
      - url: {capture}/{who}-truncated
        max_alerts: 1
"#
    )
}

fn strip(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("externalURL");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_body_matches_alertmanager() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = Capture::start().await;
    let am = start_alertmanager(&config(&cap.url, "am"), dir.path()).await;
    let vigil = start_vigil(&config(&cap.url, "vigil"), dir.path(), &[]).await;

    let start = chrono::Utc::now() - chrono::Duration::seconds(2);
    let starts = start.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let alerts = json!([
        {"labels": {"alertname": "HighLatency", "instance": "b:9000", "job": "api", "severity": "warning"},
         "annotations": {"summary": "p95 above 2s", "value": "2.7"}, "startsAt": starts,
         "generatorURL": "http://prom:9090/graph?g0.expr=x"},
        {"labels": {"alertname": "HighLatency", "instance": "a:9000", "job": "api", "severity": "warning"},
         "annotations": {"summary": "p95 above 2s", "value": "3.1"}, "startsAt": starts,
         "generatorURL": "http://prom:9090/graph?g0.expr=x"},
    ]);
    post_alerts(&am.url, alerts.clone()).await;
    post_alerts(&vigil.url, alerts.clone()).await;

    for (a, v) in [("/am", "/vigil"), ("/am-truncated", "/vigil-truncated")] {
        let both = wait_for(Duration::from_secs(15), || {
            let x = cap.delivered(a);
            let y = cap.delivered(v);
            (!x.is_empty() && !y.is_empty()).then(|| (x[0].body.clone(), y[0].body.clone()))
        })
        .await
        .expect("both systems deliver the firing group");
        assert_eq!(strip(both.1), strip(both.0), "firing body for {v}");
    }

    // Resolve one alert at a fixed past time: both send firing + resolved.
    let ends = (chrono::Utc::now() - chrono::Duration::milliseconds(500))
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut resolved = alerts[1].clone();
    resolved["endsAt"] = json!(ends);
    post_alerts(&am.url, json!([resolved.clone()])).await;
    post_alerts(&vigil.url, json!([resolved])).await;
    let both = wait_for(Duration::from_secs(15), || {
        let x = cap.delivered("/am");
        let y = cap.delivered("/vigil");
        (x.len() >= 2 && y.len() >= 2).then(|| (x[1].body.clone(), y[1].body.clone()))
    })
    .await
    .expect("both systems deliver the change");
    assert_eq!(
        both.1["alerts"][0]["status"], "resolved",
        "sorted by instance: a is first"
    );
    assert_eq!(strip(both.1), strip(both.0), "body after a resolution");
}
