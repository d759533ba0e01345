//! Acknowledge, escalate, remember — through the real `vigil` binary and
//! two local webhook receivers (`team` gets the routed notifications,
//! `manager` the escalations).
//!
//! Two of Vigil's own rules fire at once (`vector(3)` and `vector(7)`, so
//! their alerts carry values). `AckMe` is acknowledged after its first
//! notification: counted over several repeat intervals afterwards (the
//! other alert's repeats are the clock), it never repeats, and it never
//! escalates. `EscalateMe` stays unacknowledged and reaches `manager` once,
//! after the configured delay. A later alert joining `AckMe`'s group still
//! notifies and shows the acknowledgement. `GET /api/vigil/v1/incidents`
//! lists both episodes with their notifications, the ack, the escalation
//! and the peak values; a note survives a restart. The write APIs need the
//! admin token; an unknown or resolved alert is refused with a clear 4xx.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil_e2e::{Collector, webhook_receiver};

const ADMIN: &str = "incidents-admin-token";
const REPEAT_INTERVAL_S: u64 = 2;
const ESCALATE_AFTER_S: u64 = 10;

type Bodies = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

/// Polls `f` until it gives a value; fails with `what` after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Notifications received whose alerts include `alertname`.
fn received(bodies: &Bodies, alertname: &str) -> Vec<Value> {
    bodies
        .lock()
        .expect("bodies")
        .iter()
        .filter(|b| {
            b["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["labels"]["alertname"] == alertname)
        })
        .cloned()
        .collect()
}

/// An RFC 3339 UTC time as the API writes it (Go's form: the fraction
/// trimmed) made comparable as text: the fraction padded to nanoseconds.
fn comparable(t: &str) -> String {
    let t = t.trim_end_matches('Z');
    match t.split_once('.') {
        Some((secs, frac)) => format!("{secs}.{frac:0<9}"),
        None => format!("{t}.000000000"),
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn get(c: &Collector, path: &str) -> Value {
    let r = client()
        .get(c.url(path))
        .bearer_auth(ADMIN)
        .send()
        .expect("GET");
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().expect("json")
}

fn post(c: &Collector, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = client().post(c.url(path)).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().expect("POST");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn incidents(c: &Collector, query: &str) -> Vec<Value> {
    let v = get(c, &format!("/api/vigil/v1/incidents{query}"));
    assert_eq!(v["status"], "success", "{v}");
    v["data"].as_array().cloned().unwrap_or_default()
}

fn incident_of<'a>(list: &'a [Value], alertname: &str) -> &'a Value {
    list.iter()
        .find(|i| i["labels"]["alertname"] == alertname)
        .unwrap_or_else(|| panic!("no incident for {alertname}: {list:?}"))
}

fn start(dir: &std::path::Path) -> Collector {
    Collector::start_on(
        &dir.join("data"),
        port_of(dir),
        &["--config", dir.join("vigil.yml").to_str().expect("utf-8")],
    )
    .expect("vigil starts")
}

/// The port chosen for this test's collector, kept across its restart.
fn port_of(dir: &std::path::Path) -> u16 {
    let f = dir.join("port");
    if let Ok(p) = std::fs::read_to_string(&f) {
        return p.trim().parse().expect("port");
    }
    let p = vigil_e2e::free_port();
    std::fs::write(&f, p.to_string()).expect("write port");
    p
}

#[test]
fn acknowledge_escalate_and_remember() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (team_port, team) = webhook_receiver();
    let (manager_port, manager) = webhook_receiver();
    std::fs::write(d.join("admin.token"), ADMIN).expect("token");
    std::fs::write(
        d.join("incidents.rules.yml"),
        "groups:\n  - name: incidents\n    interval: 1s\n    rules:\n      \
         - alert: AckMe\n        expr: vector(3)\n        labels:\n          severity: page\n      \
         - alert: EscalateMe\n        expr: vector(7)\n        labels:\n          severity: page\n",
    )
    .expect("rules");
    // A plain Alertmanager file: nothing of Vigil's extensions in it.
    std::fs::write(
        d.join("alerting.yml"),
        format!(
            "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  \
             repeat_interval: {REPEAT_INTERVAL_S}s\nreceivers:\n  - name: team\n    webhook_configs:\n      \
             - url: http://127.0.0.1:{team_port}/team\n        send_resolved: true\n  - name: manager\n    \
             webhook_configs:\n      - url: http://127.0.0.1:{manager_port}/manager\n"
        ),
    )
    .expect("alerting config");
    let vigil_yml = |receiver: &str| {
        format!(
            "auth:\n  admin_token_file: {}\nrules:\n  files: ['{}']\n  evaluation_interval: 1s\n  resend_delay: 5s\n\
             alerting_config: {}\nalerting:\n  escalations:\n    - matchers: ['severity=\"page\"']\n      \
             after: {ESCALATE_AFTER_S}s\n      receiver: {receiver}\n",
            d.join("admin.token").display(),
            d.join("incidents.rules.yml").display(),
            d.join("alerting.yml").display(),
        )
    };

    // An escalation to a receiver the Alertmanager file lacks is refused
    // at start, naming the file and line.
    std::fs::write(d.join("vigil.yml"), vigil_yml("nobody")).expect("config");
    let out = std::process::Command::new(vigil_e2e::binary("vigil").expect("vigil binary"))
        .args(["check", "config"])
        .arg(d.join("vigil.yml"))
        .output()
        .expect("vigil check config");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted an unknown receiver");
    assert!(
        err.contains(&format!("{}:12:", d.join("vigil.yml").display()))
            && err.contains("\"nobody\""),
        "{err}"
    );

    std::fs::write(d.join("vigil.yml"), vigil_yml("manager")).expect("config");
    let mut c = start(d);

    // Both rules fire; the first notifications reach the team.
    wait_for("AckMe notified", Duration::from_secs(30), || {
        (!received(&team, "AckMe").is_empty()).then_some(())
    });
    let alerts = get(&c, "/api/v2/alerts");
    let fingerprint = alerts
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["labels"]["alertname"] == "AckMe")
        .and_then(|a| a["fingerprint"].as_str())
        .expect("AckMe's fingerprint")
        .to_string();

    // The write API needs the admin token; bad requests are refused clearly.
    let ack =
        json!({"fingerprint": fingerprint, "author": "ann", "comment": "disk swap under way"});
    let (status, _) = post(&c, "/api/vigil/v1/alerts/ack", None, &ack);
    assert_eq!(status, 401, "an ack without a token");
    let (status, body) = post(
        &c,
        "/api/vigil/v1/alerts/ack",
        Some(ADMIN),
        &json!({"fingerprint": "0123456789abcdef", "author": "ann"}),
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["errorType"], "not_found", "{body}");
    let (status, body) = post(
        &c,
        "/api/vigil/v1/alerts/ack",
        Some(ADMIN),
        &json!({"fingerprint": fingerprint}),
    );
    assert_eq!(status, 400, "no author: {body}");
    // A resolved alert cannot be acknowledged (it started and ended at
    // AckMe's start, in the past).
    let ackme_start = alerts
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["labels"]["alertname"] == "AckMe")
        .and_then(|a| a["startsAt"].as_str())
        .expect("AckMe's start")
        .to_string();
    let (status, _) = post(
        &c,
        "/api/v2/alerts",
        None,
        &json!([{"labels": {"alertname": "Gone"}, "startsAt": ackme_start, "endsAt": ackme_start}]),
    );
    assert_eq!(status, 200);
    // Alertmanager's fingerprint of the label set (the v2 API does not
    // list resolved alerts).
    let gone_fp = format!(
        "{:016x}",
        vigil_wire::Labels::from_pairs([("alertname", "Gone")]).stable_hash()
    );
    let (status, body) = post(
        &c,
        "/api/vigil/v1/alerts/ack",
        Some(ADMIN),
        &json!({"fingerprint": gone_fp, "author": "ann"}),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("resolved")),
        "{body}"
    );

    // Acknowledge AckMe.
    let (status, body) = post(&c, "/api/vigil/v1/alerts/ack", Some(ADMIN), &ack);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["acknowledged"], true, "{body}");
    assert_eq!(body["data"]["acks"][0]["author"], "ann", "{body}");

    // Let a notification that was in flight at the ack land: two more
    // repeats of the other alert mean a whole repeat interval of flushes
    // has run since.
    let clock = |n: usize| received(&team, "EscalateMe").len() >= n;
    let settled = received(&team, "EscalateMe").len() + 2;
    wait_for("a repeat after the ack", Duration::from_secs(30), || {
        clock(settled).then_some(())
    });
    let acked_count = received(&team, "AckMe").len();
    // Four more repeat intervals: EscalateMe repeats, AckMe does not.
    let later = received(&team, "EscalateMe").len() + 4;
    wait_for(
        "four repeats of the unacknowledged alert",
        Duration::from_secs(60),
        || clock(later).then_some(()),
    );
    assert_eq!(
        received(&team, "AckMe").len(),
        acked_count,
        "the acknowledged alert repeated"
    );

    // EscalateMe, firing and unacknowledged, reaches the manager once it
    // has fired for the set time; AckMe never does.
    let esc = wait_for(
        "the escalation",
        Duration::from_secs(ESCALATE_AFTER_S + 30),
        || received(&manager, "EscalateMe").into_iter().next(),
    );
    let a = &esc["alerts"][0];
    assert_eq!(a["status"], "firing", "{esc}");
    let since_start = {
        let i = incident_of(&incidents(&c, "?state=open"), "EscalateMe").clone();
        let esc_at = i["escalations"][0]["at"]
            .as_str()
            .expect("escalation time")
            .to_string();
        (
            comparable(i["startsAt"].as_str().expect("start")),
            comparable(&esc_at),
        )
    };
    assert!(
        a["annotations"]["vigil_escalation"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("{ESCALATE_AFTER_S}s"))),
        "{esc}"
    );
    assert!(
        since_start.1 > since_start.0,
        "escalated after the start: {since_start:?}"
    );
    // Two more repeat intervals: still one escalation, none for AckMe.
    let later = received(&team, "EscalateMe").len() + 2;
    wait_for("two more repeats", Duration::from_secs(30), || {
        clock(later).then_some(())
    });
    assert_eq!(received(&manager, "EscalateMe").len(), 1, "escalated twice");
    assert!(
        received(&manager, "AckMe").is_empty(),
        "an acked alert escalated"
    );

    // A new alert in AckMe's group still notifies, and the notification
    // shows the acknowledgement on the acknowledged alert only; labels and
    // fingerprint stay as they were.
    let before = received(&team, "AckMe").len();
    let (status, _) = post(
        &c,
        "/api/v2/alerts",
        None,
        &json!([{"labels": {"alertname": "AckMe", "instance": "late"}}]),
    );
    assert_eq!(status, 200);
    let joined = wait_for("the group's new alert", Duration::from_secs(30), || {
        received(&team, "AckMe").into_iter().nth(before)
    });
    let list = joined["alerts"].as_array().expect("alerts");
    assert_eq!(list.len(), 2, "{joined}");
    let acked = list
        .iter()
        .find(|a| a["fingerprint"] == fingerprint.as_str())
        .expect("the acknowledged alert");
    assert_eq!(
        acked["annotations"]["vigil_acknowledged_by"], "ann",
        "{joined}"
    );
    assert_eq!(
        acked["annotations"]["vigil_acknowledgement"],
        "disk swap under way"
    );
    assert!(acked["labels"].get("vigil_acknowledged_by").is_none());
    let late = list
        .iter()
        .find(|a| a["labels"]["instance"] == "late")
        .expect("the late alert");
    assert!(late["annotations"].get("vigil_acknowledged_by").is_none());

    // The incidents: both episodes, with notifications, ack, escalation
    // and peak values.
    let list = incidents(&c, "");
    let ackme = list
        .iter()
        .find(|i| i["fingerprint"] == fingerprint.as_str())
        .expect("AckMe's incident");
    assert_eq!(ackme["state"], "open");
    assert_eq!(ackme["labels"]["alertname"], "AckMe");
    assert_eq!(
        list.len(),
        3,
        "AckMe, its late group mate, EscalateMe: {list:?}"
    );
    assert_eq!(ackme["peakValue"], 3.0);
    assert_eq!(ackme["acks"][0]["author"], "ann");
    assert_eq!(ackme["acks"][0]["comment"], "disk swap under way");
    assert!(ackme["escalations"].as_array().is_some_and(Vec::is_empty));
    let notes = ackme["notifications"].as_array().expect("notifications");
    assert!(!notes.is_empty(), "{ackme}");
    assert!(
        notes.iter().all(|n| n["receiver"] == "team"
            && n["integration"] == "webhook[0]"
            && n["status"] == "ok"),
        "{ackme}"
    );
    let escalate = incident_of(&list, "EscalateMe");
    assert_eq!(escalate["peakValue"], 7.0);
    assert_eq!(escalate["acknowledged"], false);
    assert_eq!(escalate["escalations"][0]["receiver"], "manager");
    assert_eq!(
        escalate["escalations"][0]["after"],
        format!("{ESCALATE_AFTER_S}s")
    );
    let sent = escalate["notifications"].as_array().expect("notifications");
    assert!(
        sent.iter()
            .any(|n| n["receiver"] == "manager" && n["escalation"] == true && n["status"] == "ok"),
        "{escalate}"
    );
    assert!(
        sent.iter().filter(|n| n["receiver"] == "team").count() >= 5,
        "its repeats are recorded: {escalate}"
    );
    // Newest first, filters and limits.
    let starts: Vec<String> = list
        .iter()
        .filter_map(|i| i["startsAt"].as_str().map(comparable))
        .collect();
    let mut sorted = starts.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(starts, sorted, "newest first");
    let only = incidents(&c, "?filter=alertname%3D%22EscalateMe%22&state=open");
    assert_eq!(only.len(), 1, "{only:?}");
    assert_eq!(incidents(&c, "?limit=1").len(), 1);
    assert!(
        incidents(
            &c,
            "?state=closed&filter=alertname%3D~%22AckMe|EscalateMe%22"
        )
        .is_empty()
    );
    let r = client()
        .get(c.url("/api/vigil/v1/incidents?state=sideways"))
        .bearer_auth(ADMIN)
        .send()
        .expect("GET");
    assert_eq!(r.status().as_u16(), 400);

    // A note, then a restart: the history is still there.
    let id = ackme["id"].as_str().expect("id").to_string();
    let (status, body) = post(
        &c,
        &format!("/api/vigil/v1/incidents/{id}/notes"),
        None,
        &json!({"author": "bob", "text": "x"}),
    );
    assert_eq!(status, 401, "a note without a token: {body}");
    let (status, body) = post(
        &c,
        &format!("/api/vigil/v1/incidents/{id}/notes"),
        Some(ADMIN),
        &json!({"author": "bob", "text": "replaced the disk"}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = post(
        &c,
        "/api/vigil/v1/incidents/ffff-1/notes",
        Some(ADMIN),
        &json!({"author": "bob", "text": "x"}),
    );
    assert_eq!(status, 404);
    c.proc
        .terminate(Duration::from_secs(20))
        .expect("vigil stops");
    let c = start(d);
    let kept = get(&c, &format!("/api/vigil/v1/incidents/{id}"));
    let kept = &kept["data"];
    assert_eq!(kept["notes"][0]["text"], "replaced the disk", "{kept}");
    assert_eq!(kept["acks"][0]["author"], "ann", "{kept}");
    assert_eq!(kept["peakValue"], 3.0);
    let escalate = incident_of(&incidents(&c, ""), "EscalateMe").clone();
    assert_eq!(
        escalate["escalations"].as_array().map(Vec::len),
        Some(1),
        "{escalate}"
    );
    // The episode survived the restart (the rule alerts stay valid for four
    // resend delays, longer than the restart): still acknowledged, still
    // quiet, and not escalated again.
    let clock_after = received(&team, "EscalateMe").len() + 3;
    let acked_count = received(&team, "AckMe")
        .iter()
        .filter(|b| b["alerts"].as_array().is_some_and(|a| a.len() == 1))
        .count();
    wait_for("repeats after the restart", Duration::from_secs(60), || {
        clock(clock_after).then_some(())
    });
    assert_eq!(
        received(&team, "AckMe")
            .iter()
            .filter(|b| b["alerts"].as_array().is_some_and(|a| a.len() == 1))
            .count(),
        acked_count,
        "the acknowledged alert alone repeated after the restart"
    );
    assert_eq!(
        received(&manager, "EscalateMe").len(),
        1,
        "escalated again after the restart"
    );
}
