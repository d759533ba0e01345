//! PagerDuty delivery to a local HTTP server: the Events API v2 bodies Vigil
//! sends (trigger while the group fires, resolve once it has resolved) are
//! compared with the ones the real Alertmanager 0.25 sends for the same
//! alerts and the same receiver configuration.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{Capture, post_alerts, start_alertmanager, start_vigil, wait_for};

const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";

/// group_wait is longer than the alerts' age (2 s): for an alert older than
/// group_wait Alertmanager flushes its group at once, and on a loaded
/// machine between the two alerts of one request, which shifts every later
/// delivery by one.
fn config(capture: &str, who: &str) -> String {
    format!(
        r#"
route:
  receiver: pd
  group_by: [alertname]
  group_wait: 6s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: pd
    pagerduty_configs:
      # Every default: summary, details, client and severity from the
      # default templates.
      - routing_key: {ROUTING_KEY}
        url: {capture}/{who}
      # Every field set, most of them templated.
      - routing_key: {ROUTING_KEY}
        url: {capture}/{who}-custom
        client: 'vigil e2e'
        client_url: 'http://client.example/{{{{ .GroupLabels.alertname }}}}'
        description: '{{{{ .CommonAnnotations.summary }}}} ({{{{ .Alerts.Firing | len }}}} firing)'
        severity: '{{{{ .CommonLabels.severity }}}}'
        class: latency
        component: '{{{{ .CommonLabels.job }}}}'
        group: backend
        source: '{{{{ .CommonLabels.job }}}}-source'
        details:
          firing: '{{{{ .Alerts.Firing | len }}}}'
          team: ops
        links:
          - href: 'http://runbook.example/{{{{ .GroupLabels.alertname }}}}'
            text: runbook
        images:
          - src: 'http://img.example/graph.png'
            alt: graph
            href: 'http://img.example/'
"#
    )
}

/// Whether a trigger event speaks of both alerts of the firing group.
fn carries_both(body: &Value) -> bool {
    let text = body.to_string();
    text.contains("(2 firing)") || (text.contains("a:9000") && text.contains("b:9000"))
}

/// The two systems run with different external URLs, and Vigil's
/// `__alertmanager` template (the default client and source) names Vigil;
/// everything else must be the same.
fn normalise(v: &Value) -> Value {
    let text = v
        .to_string()
        .replace("http://vigil.example", "http://am.example")
        .replace(r#""Alertmanager""#, r#""Vigil""#);
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_events_match_alertmanager() {
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

    for (a, v) in [("/am", "/vigil"), ("/am-custom", "/vigil-custom")] {
        // A loaded machine can deliver the two alerts of one POST in two
        // flushes (Alertmanager's dispatcher takes them one at a time), so
        // compare each side's first delivery that carries both.
        let (theirs, ours) = wait_for(Duration::from_secs(30), || {
            let x = cap.delivered(a);
            let y = cap.delivered(v);
            let theirs = x.iter().find(|d| carries_both(&d.body))?.clone();
            let ours = y.iter().find(|d| carries_both(&d.body))?.clone();
            Some((theirs, ours))
        })
        .await
        .expect("both systems deliver the firing group");
        assert_eq!(ours.body["event_action"], "trigger", "{}", ours.body);
        assert_eq!(ours.body["routing_key"], ROUTING_KEY);
        assert_eq!(
            normalise(&ours.body),
            normalise(&theirs.body),
            "trigger event for {v}"
        );
        assert_eq!(
            ours.headers
                .get("content-type")
                .and_then(|h| h.to_str().ok()),
            theirs
                .headers
                .get("content-type")
                .and_then(|h| h.to_str().ok()),
        );
    }

    // Both alerts resolve: one resolve event, under the same dedup key.
    let ends = (chrono::Utc::now() - chrono::Duration::milliseconds(500))
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let resolved: Vec<Value> = alerts
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let mut a = a.clone();
            a["endsAt"] = json!(ends);
            a
        })
        .collect();
    post_alerts(&am.url, json!(resolved)).await;
    post_alerts(&vigil.url, json!(resolved)).await;
    for (a, v) in [("/am", "/vigil"), ("/am-custom", "/vigil-custom")] {
        let (theirs, ours) = wait_for(Duration::from_secs(30), || {
            let x = cap.delivered(a);
            let y = cap.delivered(v);
            (x.len() >= 2 && y.len() >= 2).then(|| (x.clone(), y.clone()))
        })
        .await
        .expect("both systems deliver the resolution");
        assert_eq!(ours[1].body["event_action"], "resolve", "{}", ours[1].body);
        assert_eq!(
            ours[1].body["dedup_key"], ours[0].body["dedup_key"],
            "the resolve closes the incident the trigger opened"
        );
        assert_eq!(
            normalise(&ours[1].body),
            normalise(&theirs[1].body),
            "resolve event for {v}"
        );
        assert_eq!(ours.len(), theirs.len(), "{v}: {ours:?}\nvs {theirs:?}");
    }
}
