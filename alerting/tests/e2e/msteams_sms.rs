//! Microsoft Teams (Alertmanager 0.26's `msteams_configs`) and Vigil's
//! generic SMS gateway, against a local capture server, checked against
//! their documented formats: Teams' `MessageCard`, and the gateway's form
//! or templated body with the message cut to SMS length.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::receivers_parity::{Recorder, Req, alerts};
use crate::{post_alerts, start_vigil, wait_for};

fn ok(_: &Req) -> (u16, String) {
    (200, "1".into())
}

fn route(receiver: &str) -> String {
    format!(
        "route:\n  receiver: none\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n  routes:\n    - matchers: ['severity=\"critical\"']\n      receiver: {receiver}\nreceivers:\n  - name: none\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msteams_message_card_and_url_file_read_when_sending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Recorder::start(Arc::new(ok)).await;
    let url_file = dir.path().join("teams-url");
    std::fs::write(&url_file, format!("{}/teams/first\n", rec.url)).expect("write url");
    let cfg = format!(
        "{}  - name: teams\n    msteams_configs:\n      - webhook_url_file: {}\n",
        route("teams"),
        url_file.display()
    );
    let vigil = start_vigil(&cfg, dir.path(), &[]).await;
    post_alerts(&vigil.url, alerts(chrono::Utc::now(), false)).await;
    let first = wait_for(Duration::from_secs(15), || {
        rec.side("teams").first().cloned()
    })
    .await
    .expect("Teams card for the firing group");
    assert_eq!(first.path, "/first");
    let card: Value = serde_json::from_str(&first.body).expect("JSON card");
    assert_eq!(card["@context"], "http://schema.org/extensions");
    assert_eq!(card["type"], "MessageCard");
    assert_eq!(card["themeColor"], "8C1A1A");
    assert_eq!(card["title"], "[FIRING:2] DiskFull (node critical)");
    assert_eq!(card["summary"], card["title"]);
    let text = card["text"].as_str().expect("text");
    assert!(text.contains("# Alerts Firing:"), "{text}");
    assert!(text.contains("  - instance = db-2:9100"), "{text}");
    assert!(text.contains("Source: http://prom:9090/graph"), "{text}");

    // The file is read when sending: a new URL takes effect without reload.
    std::fs::write(&url_file, format!("{}/teams/second\n", rec.url)).expect("rewrite url");
    post_alerts(&vigil.url, alerts(chrono::Utc::now(), true)).await;
    let second = wait_for(Duration::from_secs(15), || {
        rec.side("teams").into_iter().find(|r| r.path == "/second")
    })
    .await
    .expect("resolved card at the URL now in the file");
    let card: Value = serde_json::from_str(&second.body).expect("JSON card");
    assert_eq!(card["themeColor"], "2DC72D");
    assert_eq!(card["title"], "[RESOLVED] DiskFull (node critical)");
    assert!(
        card["text"]
            .as_str()
            .is_some_and(|t| t.contains("# Alerts Resolved:"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_gateway_form_with_basic_auth_from_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Recorder::start(Arc::new(ok)).await;
    let pass = dir.path().join("sms-pass");
    std::fs::write(&pass, "gw-secret\n").expect("write password");
    let cfg = format!(
        "{}  - name: sms\n    vigil_sms_configs:\n      - url: {}/sms/send\n        to: ['+15555550100', '+15555550101']\n        send_resolved: true\n        http_config:\n          basic_auth: {{username: vigil, password_file: {}}}\n",
        route("sms"),
        rec.url,
        pass.display()
    );
    let vigil = start_vigil(&cfg, dir.path(), &[]).await;
    // A warning goes nowhere: only critical alerts are routed to SMS.
    post_alerts(
        &vigil.url,
        json!([{"labels": {"alertname": "Minor", "severity": "warning"}}]),
    )
    .await;
    let mut long = alerts(chrono::Utc::now(), false);
    for a in long.as_array_mut().into_iter().flatten() {
        a["annotations"]["summary"] = json!("x".repeat(300));
    }
    post_alerts(&vigil.url, long).await;
    let sent = wait_for(Duration::from_secs(15), || {
        let s = rec.side("sms");
        (s.len() >= 2).then_some(s)
    })
    .await
    .expect("one SMS per number");
    let mut numbers = Vec::new();
    for r in &sent[..2] {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/send");
        assert_eq!(
            r.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some("Basic dmlnaWw6Z3ctc2VjcmV0"),
            "vigil:gw-secret"
        );
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/x-www-form-urlencoded")
        );
        let form: std::collections::BTreeMap<String, String> = r
            .body
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), percent_decode(v)))
            .collect();
        numbers.push(form["to"].clone());
        let msg = &form["message"];
        assert_eq!(msg.chars().count(), 160, "cut to one SMS: {msg}");
        assert!(msg.starts_with("[FIRING:2] DiskFull: xxx"), "{msg}");
        assert!(msg.ends_with('…'), "{msg}");
    }
    numbers.sort();
    assert_eq!(numbers, ["+15555550100", "+15555550101"]);
    assert!(
        !rec.side("sms").iter().any(|r| r.body.contains("Minor")),
        "the warning was not sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_gateway_json_body_template() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Recorder::start(Arc::new(ok)).await;
    let token = dir.path().join("sms-token");
    std::fs::write(&token, "tok-1\n").expect("write token");
    let cfg = format!(
        "{}  - name: sms\n    vigil_sms_configs:\n      - url: {}/sms/v1/messages\n        method: PUT\n        to: ['+447700900000']\n        max_length: 70\n        body: '{{\"destination\": {{{{ .To | toJson }}}}, \"text\": {{{{ .Message | toJson }}}}, \"status\": \"{{{{ .Status }}}}\"}}'\n        http_config:\n          authorization: {{credentials_file: {}}}\n",
        route("sms"),
        rec.url,
        token.display()
    );
    let vigil = start_vigil(&cfg, dir.path(), &[]).await;
    post_alerts(&vigil.url, alerts(chrono::Utc::now(), false)).await;
    let r = wait_for(Duration::from_secs(15), || rec.side("sms").first().cloned())
        .await
        .expect("SMS request");
    assert_eq!(r.method, "PUT");
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(
        r.headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer tok-1")
    );
    let body: Value = serde_json::from_str(&r.body).expect("JSON body");
    assert_eq!(body["destination"], "+447700900000");
    assert_eq!(body["status"], "firing");
    let text = body["text"].as_str().expect("text");
    assert!(text.chars().count() <= 70, "{text}");
    assert!(
        text.starts_with("[FIRING:2] DiskFull: disk > 95% & rising"),
        "{text}"
    );
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let v = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16)
                    .unwrap_or(b'?');
                out.push(v);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}
