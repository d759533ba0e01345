//! Slack attachments, webhook auth headers, and isolation of a slow
//! receiver from a fast one.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::{Capture, post_alerts, start_vigil, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_attachment_and_webhook_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = Capture::start().await;
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").expect("write token");
    let cfg = format!(
        r#"
route:
  receiver: team
  group_by: [alertname]
  group_wait: 0s
receivers:
  - name: team
    slack_configs:
      - api_url: {url}/slack
        channel: '#alerts'
    webhook_configs:
      - url: {url}/hook
        http_config:
          authorization:
            credentials_file: {token}
"#,
        url = cap.url,
        token = token.display()
    );
    let vigil = start_vigil(&cfg, dir.path(), &[]).await;
    post_alerts(
        &vigil.url,
        json!([{
            "labels": {"alertname": "HighErrorRate", "severity": "critical", "service": "api"},
            "annotations": {"summary": "error rate 12%", "value": "0.12"},
        }]),
    )
    .await;
    let slack = wait_for(Duration::from_secs(10), || {
        cap.delivered("/slack").first().cloned()
    })
    .await
    .expect("slack message");
    assert_eq!(slack.body["channel"], "#alerts");
    let att = &slack.body["attachments"][0];
    assert_eq!(att["color"], "#ff4444", "critical is red");
    let field = |t: &str| {
        att["fields"]
            .as_array()
            .and_then(|f| f.iter().find(|x| x["title"] == t))
            .map(|x| x["value"].clone())
    };
    assert_eq!(field("Alert"), Some(json!("HighErrorRate")));
    assert_eq!(field("Severity"), Some(json!("critical")));
    assert_eq!(field("Value"), Some(json!("0.12")));
    assert_eq!(field("Summary"), Some(json!("error rate 12%")));
    assert!(field("Time").is_some());

    let hook = wait_for(Duration::from_secs(10), || {
        cap.delivered("/hook").first().cloned()
    })
    .await
    .expect("webhook");
    assert_eq!(
        hook.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer s3cret")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_does_not_delay_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = Capture::start().await;
    // A server that accepts connections and never answers.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hole = black_hole.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = black_hole.accept().await {
            held.push(s);
        }
    });
    let cfg = format!(
        "route:\n  receiver: slow\n  group_wait: 0s\n  routes:\n    - matchers: ['x=\"y\"']\n      receiver: slow\n      continue: true\n    - matchers: ['x=\"y\"']\n      receiver: fast\nreceivers:\n  - name: slow\n    webhook_configs:\n      - url: http://{hole}/hang\n  - name: fast\n    webhook_configs:\n      - url: {}/fast\n",
        cap.url
    );
    let vigil = start_vigil(&cfg, dir.path(), &["--notify.timeout", "20s"]).await;
    let t0 = Instant::now();
    post_alerts(
        &vigil.url,
        json!([{"labels": {"alertname": "A", "x": "y"}}]),
    )
    .await;
    wait_for(Duration::from_secs(5), || {
        (!cap.delivered("/fast").is_empty()).then_some(())
    })
    .await
    .expect("fast receiver notified");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "fast receiver waited for the hanging one"
    );
}
