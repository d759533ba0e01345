//! Every Alertmanager 0.25 receiver type, delivered by the real
//! Alertmanager and by Vigil from the same configuration, each to its own
//! half of a capture server that answers as the real service does. What
//! arrives is compared request by request: method, path and query, the
//! headers that matter, and the body (parsed: JSON, form or query). Only
//! what legitimately differs is normalised: the external URL, the product
//! name in `__alertmanager`, and SNS signatures (each side's signature is
//! verified instead, with the configured secret).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{post_alerts, start_alertmanager, start_vigil, wait_for};

/// One request as the capture server saw it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// The path as sent, before the side's prefix is removed.
    pub raw_path: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: String,
}

type Answer = Arc<dyn Fn(&Req) -> (u16, String) + Send + Sync>;
type Shared = (Arc<Mutex<Vec<Req>>>, Answer);

/// A server recording every request and answering through `answer`.
pub struct Recorder {
    pub url: String,
    reqs: Arc<Mutex<Vec<Req>>>,
}

impl Recorder {
    pub async fn start(answer: Answer) -> Recorder {
        let reqs: Arc<Mutex<Vec<Req>>> = Arc::default();
        let app = axum::Router::new()
            .fallback(
                |State((reqs, answer)): State<Shared>,
                 method: Method,
                 uri: Uri,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let r = Req {
                        method: method.to_string(),
                        raw_path: uri.path().to_string(),
                        path: uri.path().to_string(),
                        query: uri.query().unwrap_or_default().to_string(),
                        headers,
                        body: String::from_utf8_lossy(&body).to_string(),
                    };
                    let (code, text) = answer(&r);
                    reqs.lock().push(r);
                    (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), text)
                },
            )
            .with_state((Arc::clone(&reqs), answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Recorder {
            url: format!("http://{addr}"),
            reqs,
        }
    }

    /// Requests under `/{side}`, with that prefix removed from the path.
    pub fn side(&self, side: &str) -> Vec<Req> {
        let prefix = format!("/{side}");
        self.reqs
            .lock()
            .iter()
            .filter(|r| r.path == prefix || r.path.starts_with(&format!("{prefix}/")))
            .map(|r| {
                let mut r = r.clone();
                r.path = r.path[prefix.len()..].to_string();
                if r.path.is_empty() {
                    r.path = "/".into();
                }
                r
            })
            .collect()
    }
}

/// How real services answer a successful call.
fn service_answer(r: &Req) -> (u16, String) {
    if r.path.ends_with("/gettoken") {
        return (
            200,
            json!({"errcode": 0, "errmsg": "ok", "access_token": "wx-token-1", "expires_in": 7200})
                .to_string(),
        );
    }
    if r.path.ends_with("/message/send") {
        return (200, json!({"errcode": 0, "errmsg": "ok"}).to_string());
    }
    if r.path.ends_with("/sendMessage") {
        return (
            200,
            json!({"ok": true, "result": {"message_id": 7, "date": 1700000000,
                "chat": {"id": -1001, "type": "group", "title": "ops"}, "text": "x"}})
            .to_string(),
        );
    }
    if r.body.starts_with("Action=") || r.body.contains("&Action=Publish") {
        return (
            200,
            "<PublishResponse xmlns=\"https://sns.amazonaws.com/doc/2010-03-31/\"><PublishResult><MessageId>94f20ce6-13c5-43a0-9a9e-ca52d816e90b</MessageId></PublishResult><ResponseMetadata><RequestId>f187a3c1-376f-11df-8963-01868b7c937a</RequestId></ResponseMetadata></PublishResponse>".into(),
        );
    }
    (
        200,
        json!({"result": "ok", "took": 0.01, "requestId": "1"}).to_string(),
    )
}

/// Replaces what legitimately differs between the two systems.
fn norm_str(s: &str) -> String {
    s.replace("http://am.example", "EXTERNAL")
        .replace("http://vigil.example", "EXTERNAL")
        .replace("http%3A%2F%2Fam.example", "EXTERNAL")
        .replace("http%3A%2F%2Fvigil.example", "EXTERNAL")
        .replace("Alertmanager", "PRODUCT")
        .replace("Vigil", "PRODUCT")
}

fn norm_json(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(norm_str(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(norm_json).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, norm_json(v))).collect()),
        other => other,
    }
}

/// Decodes `application/x-www-form-urlencoded` text.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn parse_form(s: &str) -> BTreeMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unescape(k), norm_str(&unescape(v)))
        })
        .collect()
}

/// The comparable view of a request.
pub(crate) fn view(r: &Req) -> Value {
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = if ct.starts_with("application/json") {
        norm_json(serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone())))
    } else if ct.starts_with("application/x-www-form-urlencoded") {
        json!(parse_form(&r.body))
    } else {
        Value::String(norm_str(&r.body))
    };
    let auth = r
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|a| {
            if a.starts_with("AWS4-HMAC-SHA256") {
                // Signed over different timestamps: compared by verifying.
                "AWS4-HMAC-SHA256 (verified)".to_string()
            } else {
                a.to_string()
            }
        });
    json!({
        "method": r.method,
        "path": r.path,
        "query": parse_form(&r.query),
        "content_type": ct.to_lowercase().replace("; ", ";"),
        "authorization": auth,
        "body": body,
    })
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = if key.len() > 64 {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Checks an AWS Signature Version 4 as SNS would, from what arrived.
fn verify_sigv4(r: &Req, full_path: &str, secret: &str) {
    let auth = r
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .expect("signed request has Authorization");
    let field = |name: &str| {
        auth.split([' ', ','])
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {auth}"))
            .to_string()
    };
    let credential = field("Credential");
    let signed = field("SignedHeaders");
    let signature = field("Signature");
    let scope: Vec<&str> = credential.splitn(2, '/').collect();
    let scope = scope[1];
    let parts: Vec<&str> = scope.split('/').collect();
    let (date, region, service) = (parts[0], parts[1], parts[2]);
    assert_eq!(service, "sns");
    let amz_date = r
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .expect("X-Amz-Date");
    let canonical_headers: String = signed
        .split(';')
        .map(|h| {
            let v = r
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("signed header {h} present"));
            format!(
                "{h}:{}\n",
                v.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        })
        .collect();
    let canonical = format!(
        "{}\n{full_path}\n{}\n{canonical_headers}\n{signed}\n{}",
        r.method,
        r.query,
        hex::encode(Sha256::digest(r.body.as_bytes()))
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for p in [region, "sns", "aws4_request"] {
        key = hmac(&key, p.as_bytes());
    }
    assert_eq!(
        hex::encode(hmac(&key, to_sign.as_bytes())),
        signature,
        "SigV4 signature over {canonical:?}"
    );
}

pub(crate) fn alerts(now: chrono::DateTime<chrono::Utc>, resolved: bool) -> Value {
    // Started 2 s ago: well inside `parity`'s group_wait, so Alertmanager
    // waits for the group instead of flushing at its first alert (it
    // flushes at once for an alert older than group_wait, which with 30 s
    // let a loaded machine split one request's two alerts).
    let starts =
        (now - chrono::Duration::seconds(2)).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut a = json!([
        {"labels": {"alertname": "DiskFull", "instance": "db-1:9100", "job": "node", "severity": "critical"},
         "annotations": {"summary": "disk > 95% & rising", "description": "it's \"full\" <soon>"},
         "startsAt": starts, "generatorURL": "http://prom:9090/graph?g0.expr=disk+%3E+0.95"},
        {"labels": {"alertname": "DiskFull", "instance": "db-2:9100", "job": "node", "severity": "critical"},
         "annotations": {"summary": "disk > 95% & rising", "description": "it's \"full\" <soon>"},
         "startsAt": starts, "generatorURL": "http://prom:9090/graph?g0.expr=disk+%3E+0.95"},
    ]);
    if resolved {
        let ends = (now - chrono::Duration::seconds(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        for x in a.as_array_mut().into_iter().flatten() {
            x["endsAt"] = json!(ends);
        }
    }
    a
}

/// Runs both systems with `receiver` (YAML of one receiver's integration
/// list, `{base}` standing for each side's capture URL) and compares what
/// arrives for a firing and then a resolved notification. Returns both
/// sides' requests for further checks.
async fn parity(
    receiver: &str,
    global: &str,
    sends_resolved: bool,
) -> Option<(Vec<Req>, Vec<Req>, Recorder)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = Recorder::start(Arc::new(service_answer)).await;
    // group_wait 6s: both alerts of one request must be in the first
    // notification. Alertmanager inserts them one by one and flushes a
    // group at once when an inserted alert's startsAt is already more than
    // group_wait old (see `alerts`); with alerts 30 s old, one run in ten
    // of the whole suite beside four builds split them.
    let config = |side: &str| {
        let base = format!("{}/{side}", rec.url);
        format!(
            "global:\n{}\nroute:\n  receiver: r\n  group_by: [alertname]\n  group_wait: 6s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: r\n{}\n",
            global.replace("{base}", &base),
            receiver.replace("{base}", &base)
        )
    };
    let am = start_alertmanager(&config("am"), dir.path()).await;
    let vigil = start_vigil(&config("vigil"), dir.path(), &[]).await;
    let now = chrono::Utc::now();
    post_alerts(&am.url, alerts(now, false)).await;
    post_alerts(&vigil.url, alerts(now, false)).await;
    let first = wait_for(Duration::from_secs(20), || {
        let (a, v) = (rec.side("am"), rec.side("vigil"));
        (!a.is_empty() && a.len() == v.len()).then_some(a.len())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "both deliver the firing group: am {:#?}\nvigil {:#?}",
            rec.side("am").iter().map(view).collect::<Vec<_>>(),
            rec.side("vigil").iter().map(view).collect::<Vec<_>>()
        )
    });
    // Let stragglers of the same notification (several calls) arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = first;
    let firing_count = rec.side("am").len();
    let now = chrono::Utc::now();
    post_alerts(&am.url, alerts(now, true)).await;
    post_alerts(&vigil.url, alerts(now, true)).await;
    if sends_resolved {
        wait_for(Duration::from_secs(20), || {
            let (a, v) = (rec.side("am"), rec.side("vigil"));
            (a.len() > firing_count && v.len() == a.len()).then_some(())
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "both deliver the resolved group: am {:#?}\nvigil {:#?}",
                rec.side("am").iter().map(view).collect::<Vec<_>>(),
                rec.side("vigil").iter().map(view).collect::<Vec<_>>()
            )
        });
    } else {
        // Nothing may arrive for a resolved group: give both systems
        // several group intervals to (wrongly) send one.
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (a, v) = (rec.side("am"), rec.side("vigil"));
    let av: Vec<Value> = a.iter().map(view).collect();
    let vv: Vec<Value> = v.iter().map(view).collect();
    assert_eq!(
        serde_json::to_string_pretty(&vv).expect("json"),
        serde_json::to_string_pretty(&av).expect("json"),
        "Vigil's requests (left) differ from Alertmanager 0.25's (right)"
    );
    Some((a, v, rec))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsgenie_matches_alertmanager() {
    let Some((a, _, _)) = parity(
        "    opsgenie_configs:\n      - api_key: og-key\n        api_url: '{base}/'\n        tags: 'db, disk,'\n        priority: P2\n        details: {team: '{{ .CommonLabels.job }}'}\n        responders: [{name: ops, type: team}]\n",
        "  resolve_timeout: 5m",
        true,
    )
    .await
    else {
        return;
    };
    assert_eq!(a.len(), 2, "create then close");
    assert_eq!(
        a[1].path,
        "/v2/alerts/".to_string() + a[1].path.split('/').nth(3).unwrap_or_default() + "/close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsgenie_update_alerts_matches_alertmanager() {
    parity(
        "    opsgenie_configs:\n      - api_url: '{base}/'\n        update_alerts: true\n        send_resolved: false\n",
        "  opsgenie_api_key: global-key",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victorops_matches_alertmanager() {
    parity(
        "    victorops_configs:\n      - api_key: vo-key\n        api_url: '{base}/integrations/'\n        routing_key: 'team-{{ .CommonLabels.job }}'\n        custom_fields: {runbook: 'http://wiki/{{ .GroupLabels.alertname }}'}\n",
        "  resolve_timeout: 5m",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_matches_alertmanager() {
    let Some((a, v, _)) = parity(
        "    wechat_configs:\n      - send_resolved: true\n        to_user: '@all'\n        agent_id: '1000002'\n",
        "  wechat_api_url: '{base}/cgi-bin/'\n  wechat_api_secret: wx-secret\n  wechat_api_corp_id: wx-corp",
        true,
    )
    .await
    else {
        return;
    };
    // One token exchange, reused for both messages.
    for side in [&a, &v] {
        let paths: Vec<&str> = side.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/cgi-bin/gettoken",
                "/cgi-bin/message/send",
                "/cgi-bin/message/send"
            ]
        );
        assert_eq!(side[1].query, "access_token=wx-token-1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_markdown_matches_alertmanager() {
    parity(
        "    wechat_configs:\n      - api_secret: s2\n        corp_id: c2\n        api_url: '{base}/'\n        message_type: markdown\n        to_party: '2'\n        to_tag: ops\n",
        "  resolve_timeout: 5m",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_topic_matches_alertmanager() {
    let Some((a, v, _)) = parity(
        "    sns_configs:\n      - api_url: '{base}'\n        topic_arn: 'arn:aws:sns:us-east-1:123456789012:alerts'\n        sigv4: {region: us-east-1, access_key: AKIDEXAMPLE, secret_key: wJalrXUtnFEMI}\n        attributes: {severity: '{{ .CommonLabels.severity }}', team: db}\n",
        "  resolve_timeout: 5m",
        true,
    )
    .await
    else {
        return;
    };
    for r in a.iter().chain(&v) {
        verify_sigv4(r, &r.raw_path, "wJalrXUtnFEMI");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_sms_matches_alertmanager() {
    let Some((a, v, _)) = parity(
        "    sns_configs:\n      - api_url: '{base}'\n        phone_number: '+15555550100'\n        subject: 'ALERT {{ .CommonLabels.alertname }}'\n        sigv4: {region: eu-west-1, access_key: AKIDSMS, secret_key: smssecret}\n",
        "  resolve_timeout: 5m",
        true,
    )
    .await
    else {
        return;
    };
    for r in a.iter().chain(&v) {
        verify_sigv4(r, &r.raw_path, "smssecret");
        assert!(r.body.contains("PhoneNumber=%2B15555550100"), "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_matches_alertmanager() {
    parity(
        "    telegram_configs:\n      - api_url: '{base}'\n        bot_token: '123:abc'\n        chat_id: -1001\n",
        "  resolve_timeout: 5m",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_markdown_matches_alertmanager() {
    parity(
        "    telegram_configs:\n      - bot_token: '123:abc'\n        chat_id: 42\n        parse_mode: MarkdownV2\n        disable_notifications: true\n        message: '*{{ .Status }}* {{ .CommonAnnotations.summary }}'\n",
        "  telegram_api_url: '{base}'",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_matches_alertmanager() {
    parity(
        "    discord_configs:\n      - webhook_url: '{base}/api/webhooks/1/tok'\n",
        "  resolve_timeout: 5m",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webex_matches_alertmanager() {
    parity(
        "    webex_configs:\n      - api_url: '{base}/v1/messages'\n        room_id: 'Y2lzY29zcGFyazovL3VzL1JPT00v'\n        http_config:\n          authorization: {credentials: webex-token}\n",
        "  resolve_timeout: 5m",
        true,
    )
    .await;
}
