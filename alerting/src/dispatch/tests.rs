//! Grouping, timing and muting, driven with explicit clocks (no sleeping).

use std::time::Duration;

use super::*;
use crate::alert::PostableAlert;
use crate::silence::{ApiMatcher, PostableSilence};

const CFG: &str = r#"
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 10s
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [alertname, instance]
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:1/hook
"#;

struct Clock {
    wall: DateTime<Utc>,
    mono: Instant,
}

impl Clock {
    fn advance(&mut self, d: Duration) {
        self.wall += chrono::Duration::from_std(d).expect("small duration");
        self.mono += d;
    }
}

fn setup(cfg: &str) -> (State, Clock, u64) {
    let cfg = crate::config::parse_config(cfg, "t.yml").expect("valid config");
    let rt = Arc::new(Runtime::new(cfg, Duration::from_secs(1)).expect("runtime"));
    (
        State::new(rt, Silences::default(), HashMap::new()),
        Clock {
            wall: Utc::now(),
            mono: Instant::now(),
        },
        0,
    )
}

fn alert(pairs: &[(&str, &str)], c: &Clock, ends: Option<DateTime<Utc>>) -> Alert {
    let p = PostableAlert {
        labels: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        starts_at: Some(c.wall),
        ends_at: ends,
        ..Default::default()
    };
    Alert::from_postable(p, c.wall, chrono::Duration::minutes(5)).expect("valid alert")
}

fn flush(st: &mut State, c: &Clock, ids: &mut u64) -> Vec<OutboxEntry> {
    flush_in(st, c, ids, None).notifications
}

fn flush_in(st: &mut State, c: &Clock, ids: &mut u64, cluster: Option<ClusterWait>) -> FlushOutput {
    let opts = FlushOptions {
        external_url: "http://vigil".into(),
        give_up_after: chrono::Duration::hours(1),
        cluster,
    };
    let mut next = || {
        *ids += 1;
        *ids
    };
    st.flush_due(c.wall, c.mono, &mut next, &opts)
}

fn names(n: &OutboxEntry) -> Vec<String> {
    n.data
        .alerts
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                a.labels.get("instance").cloned().unwrap_or_default(),
                a.status
            )
        })
        .collect()
}

#[test]
fn group_wait_then_interval_then_repeat() {
    let (mut st, mut c, mut ids) = setup(CFG);
    for i in ["a", "b", "c"] {
        st.put(
            alert(&[("alertname", "Cpu"), ("instance", i)], &c, None),
            c.wall,
            c.mono,
        );
    }
    assert!(
        flush(&mut st, &c, &mut ids).is_empty(),
        "nothing before group_wait"
    );
    c.advance(Duration::from_millis(1000));
    let n = flush(&mut st, &c, &mut ids);
    assert_eq!(n.len(), 1, "one notification for the whole group");
    assert_eq!(names(&n[0]), vec!["a:firing", "b:firing", "c:firing"]);
    assert_eq!(n[0].data.group_key, r#"{}:{alertname="Cpu"}"#);

    // A new alert joins; it goes out at the next group_interval, not before.
    c.advance(Duration::from_millis(500));
    st.put(
        alert(&[("alertname", "Cpu"), ("instance", "d")], &c, None),
        c.wall,
        c.mono,
    );
    assert!(flush(&mut st, &c, &mut ids).is_empty());
    c.advance(Duration::from_millis(1500));
    let n = flush(&mut st, &c, &mut ids);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].data.alerts.len(), 4);

    // Unchanged: no notification at the next intervals until repeat_interval.
    let mut repeats = 0;
    for _ in 0..5 {
        c.advance(Duration::from_secs(2));
        repeats += flush(&mut st, &c, &mut ids).len();
    }
    assert_eq!(repeats, 1, "exactly one repeat within 10 s of silence");
}

#[test]
fn resolved_is_sent_and_group_retires() {
    let (mut st, mut c, mut ids) = setup(CFG);
    st.put(
        alert(&[("alertname", "Disk"), ("instance", "a")], &c, None),
        c.wall,
        c.mono,
    );
    c.advance(Duration::from_secs(1));
    assert_eq!(flush(&mut st, &c, &mut ids).len(), 1);
    let end = c.wall + chrono::Duration::milliseconds(100);
    st.put(
        alert(&[("alertname", "Disk"), ("instance", "a")], &c, Some(end)),
        c.wall,
        c.mono,
    );
    c.advance(Duration::from_secs(2));
    let n = flush(&mut st, &c, &mut ids);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].data.status, "resolved");
    assert_ne!(n[0].data.alerts[0].ends_at, crate::alert::go_zero_time());
    assert!(
        st.groups.is_empty(),
        "a group with only notified resolved alerts is removed"
    );
}

#[test]
fn inhibited_and_silenced_alerts_are_not_sent() {
    let (mut st, mut c, mut ids) = setup(CFG);
    st.put(
        alert(
            &[
                ("alertname", "Cpu"),
                ("instance", "a"),
                ("severity", "critical"),
            ],
            &c,
            None,
        ),
        c.wall,
        c.mono,
    );
    st.put(
        alert(
            &[
                ("alertname", "Cpu"),
                ("instance", "a"),
                ("severity", "warning"),
            ],
            &c,
            None,
        ),
        c.wall,
        c.mono,
    );
    st.put(
        alert(
            &[
                ("alertname", "Cpu"),
                ("instance", "b"),
                ("severity", "warning"),
            ],
            &c,
            None,
        ),
        c.wall,
        c.mono,
    );
    st.put(
        alert(&[("alertname", "Mem"), ("instance", "a")], &c, None),
        c.wall,
        c.mono,
    );
    st.silences
        .upsert(
            PostableSilence {
                id: None,
                matchers: vec![ApiMatcher {
                    name: "alertname".into(),
                    value: "Mem".into(),
                    is_regex: false,
                    is_equal: true,
                }],
                starts_at: Some(c.wall),
                ends_at: Some(c.wall + chrono::Duration::hours(1)),
                created_by: "t".into(),
                comment: "t".into(),
            },
            c.wall,
        )
        .expect("silence");
    c.advance(Duration::from_secs(1));
    let n = flush(&mut st, &c, &mut ids);
    assert_eq!(n.len(), 1, "the Mem group is fully silenced");
    let got: Vec<(String, String)> = n[0]
        .data
        .alerts
        .iter()
        .map(|a| (a.labels["instance"].clone(), a.labels["severity"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".into(), "critical".into()),
            ("b".into(), "warning".into())
        ]
    );
}

#[test]
fn old_alerts_skip_group_wait_and_reload_keeps_the_log() {
    let (mut st, mut c, mut ids) = setup(CFG);
    let mut a = alert(&[("alertname", "Old"), ("instance", "a")], &c, None);
    a.starts_at = c.wall - chrono::Duration::minutes(10);
    st.put(a, c.wall, c.mono);
    assert_eq!(
        flush(&mut st, &c, &mut ids).len(),
        1,
        "an alert older than group_wait is sent at once"
    );
    // After a reload groups are rebuilt, but the notification log stops a
    // duplicate.
    st.reroute_all(c.wall, c.mono);
    c.advance(Duration::from_secs(1));
    assert!(flush(&mut st, &c, &mut ids).is_empty());
}

#[test]
fn reload_keeps_resolutions_in_flight_and_group_timing() {
    let (mut st, mut c, mut ids) = setup(CFG);
    let labels = [("alertname", "Flap"), ("instance", "a")];
    st.put(alert(&labels, &c, None), c.wall, c.mono);
    st.put(
        alert(&[("alertname", "Steady"), ("instance", "b")], &c, None),
        c.wall,
        c.mono,
    );
    c.advance(Duration::from_secs(1));
    assert_eq!(flush(&mut st, &c, &mut ids).len(), 2, "both groups fire");

    // Flap resolves; a reload comes before its group's next flush.
    c.advance(Duration::from_millis(500));
    st.put(alert(&labels, &c, Some(c.wall)), c.wall, c.mono);
    c.advance(Duration::from_millis(100));
    st.reroute_all(c.wall, c.mono);
    // The group keeps its schedule: nothing before its group_interval...
    assert!(flush(&mut st, &c, &mut ids).is_empty());
    c.advance(Duration::from_millis(1400));
    // ...and then the resolution goes out, on time.
    let n = flush(&mut st, &c, &mut ids);
    assert_eq!(n.len(), 1, "resolved notification sent on schedule");
    assert_eq!(names(&n[0]), vec!["a:resolved"]);

    // It fires again: a new notification, although the log last saw it
    // firing before the reload.
    c.advance(Duration::from_millis(100));
    st.put(alert(&labels, &c, None), c.wall, c.mono);
    st.reroute_all(c.wall, c.mono);
    c.advance(Duration::from_secs(1));
    let n = flush(&mut st, &c, &mut ids);
    assert_eq!(n.len(), 1, "firing again is notified");
    assert_eq!(names(&n[0]), vec!["a:firing"]);
    // The untouched group was not pulled forward or repeated by reloads.
    assert!(
        st.groups
            .values()
            .any(|g| g.key.contains("Steady") && g.has_flushed),
        "Steady keeps its flushed state"
    );
}

#[test]
fn mute_time_interval_suppresses_route() {
    let cfg = format!(
        "{CFG}time_intervals:\n  - name: always\n    time_intervals:\n      - years: ['1:9999']\n"
    )
    .replace("  repeat_interval: 10s\n", "  repeat_interval: 10s\n  routes:\n    - matchers: ['team=\"db\"']\n      mute_time_intervals: [always]\n");
    let (mut st, mut c, mut ids) = setup(&cfg);
    st.put(
        alert(&[("alertname", "X"), ("team", "db")], &c, None),
        c.wall,
        c.mono,
    );
    st.put(
        alert(&[("alertname", "X"), ("team", "web")], &c, None),
        c.wall,
        c.mono,
    );
    c.advance(Duration::from_secs(1));
    let n = flush(&mut st, &c, &mut ids);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].data.alerts[0].labels["team"], "web");
}

#[test]
fn escalating_repeat_interval_doubles_up_to_its_cap() {
    let cfg = CFG
        .replace(
            "repeat_interval: 10s",
            "repeat_interval: 2s\n  vigil_repeat_backoff: {factor: 2, max: 8s}",
        )
        .replace("group_interval: 2s", "group_interval: 1s");
    let (mut st, mut c, mut ids) = setup(&cfg);
    st.put(
        alert(&[("alertname", "Stuck"), ("instance", "a")], &c, None),
        c.wall,
        c.mono,
    );
    let mut sent_at = Vec::new();
    for t in 0..=23 {
        if !flush(&mut st, &c, &mut ids).is_empty() {
            sent_at.push(t);
        }
        c.advance(Duration::from_secs(1));
    }
    // First notification after group_wait, then repeats after 2, 4, 8, 8 s.
    assert_eq!(sent_at, vec![1, 3, 7, 15, 23]);
}

fn second_in_line() -> Option<ClusterWait> {
    Some(ClusterWait {
        // Shorter than the repeat interval (10s), as peer_timeout is.
        delay: Duration::from_secs(5),
        ready: true,
    })
}

#[test]
fn cluster_member_waits_its_position_then_skips_what_a_peer_sent() {
    let (mut st, mut c, mut ids) = setup(CFG);
    st.put(alert(&[("alertname", "Cpu")], &c, None), c.wall, c.mono);
    c.advance(Duration::from_secs(1));
    let out = flush_in(&mut st, &c, &mut ids, second_in_line());
    assert!(
        out.notifications.is_empty(),
        "position 1 waits 1 x peer_timeout"
    );
    assert!(out.writes.is_empty(), "nothing logged while waiting");
    assert_eq!(st.next_deferred(), Some(c.mono + Duration::from_secs(5)));

    // The first member sent it; its log entry arrives by gossip.
    let key = st.deferred.keys().next().cloned().expect("one held");
    let peer_entry = NflogEntry {
        firing: st.deferred[&key].pending.firing.clone(),
        resolved: BTreeSet::new(),
        timestamp: c.wall,
        repeats: 0,
    };
    st.nflog.insert(key.clone(), peer_entry.clone());
    c.advance(Duration::from_secs(4));
    assert!(
        flush_in(&mut st, &c, &mut ids, second_in_line())
            .notifications
            .is_empty()
    );
    c.advance(Duration::from_secs(1));
    let out = flush_in(&mut st, &c, &mut ids, second_in_line());
    assert!(out.notifications.is_empty(), "the peer already notified");
    assert_eq!(out.deduplicated, 1);
    assert!(st.deferred.is_empty());
    assert_eq!(st.nflog[&key], peer_entry, "the peer's entry stays");
}

#[test]
fn cluster_member_sends_when_no_peer_did() {
    let (mut st, mut c, mut ids) = setup(CFG);
    st.put(alert(&[("alertname", "Cpu")], &c, None), c.wall, c.mono);
    c.advance(Duration::from_secs(1));
    assert!(
        flush_in(&mut st, &c, &mut ids, second_in_line())
            .notifications
            .is_empty()
    );
    // group_interval (2s) flushes come and go: the held one keeps its time.
    for _ in 0..2 {
        c.advance(Duration::from_secs(2));
        assert!(
            flush_in(&mut st, &c, &mut ids, second_in_line())
                .notifications
                .is_empty()
        );
    }
    c.advance(Duration::from_secs(1));
    let out = flush_in(&mut st, &c, &mut ids, second_in_line());
    assert_eq!(out.notifications.len(), 1, "the peer ahead is gone: send");
    let entry = out.notifications[0]
        .nflog
        .clone()
        .expect("carries its log entry");
    assert_eq!(entry.timestamp, c.wall);
    assert_eq!(out.deduplicated, 0);
}

#[test]
fn cluster_first_member_sends_at_once_but_not_while_settling() {
    let (mut st, mut c, mut ids) = setup(CFG);
    st.put(alert(&[("alertname", "Cpu")], &c, None), c.wall, c.mono);
    c.advance(Duration::from_secs(1));
    let settling = Some(ClusterWait {
        delay: Duration::ZERO,
        ready: false,
    });
    assert!(
        flush_in(&mut st, &c, &mut ids, settling)
            .notifications
            .is_empty()
    );
    c.advance(Duration::from_secs(30));
    assert!(
        flush_in(&mut st, &c, &mut ids, settling)
            .notifications
            .is_empty()
    );
    let ready = Some(ClusterWait {
        delay: Duration::ZERO,
        ready: true,
    });
    let out = flush_in(&mut st, &c, &mut ids, ready);
    assert_eq!(out.notifications.len(), 1, "settled: position 0 sends");
    // Alone in the cluster (a partition): position 0, no wait.
    st.put(alert(&[("alertname", "Disk")], &c, None), c.wall, c.mono);
    c.advance(Duration::from_secs(1));
    assert_eq!(
        flush_in(&mut st, &c, &mut ids, ready).notifications.len(),
        1
    );
}

#[test]
fn acknowledged_group_does_not_repeat_but_changes_and_resolution_notify() {
    let (mut st, mut c, mut ids) = setup(CFG);
    let a = alert(&[("alertname", "Cpu"), ("instance", "a")], &c, None);
    let fp_a = a.fingerprint;
    st.put(a, c.wall, c.mono);
    c.advance(Duration::from_secs(1));
    assert_eq!(flush(&mut st, &c, &mut ids).len(), 1, "first notification");
    // Acknowledged: the repeat after repeat_interval does not go out.
    let ack = AckView {
        open: true,
        author: "ann".into(),
        comment: "looking".into(),
        at: c.wall,
    };
    st.acks.insert(fp_a, ack.clone());
    for _ in 0..10 {
        c.advance(Duration::from_secs(2));
        assert!(
            flush(&mut st, &c, &mut ids).is_empty(),
            "an acknowledged alert repeated"
        );
    }
    // Without the ack it would have repeated by now.
    st.acks.clear();
    assert_eq!(
        flush_after(&mut st, &mut c, &mut ids).len(),
        1,
        "repeats unacked"
    );
    st.acks.insert(fp_a, ack);
    // A new alert in the group still notifies, and shows the ack on the
    // acknowledged one only (labels and fingerprint unchanged).
    st.put(
        alert(&[("alertname", "Cpu"), ("instance", "b")], &c, None),
        c.wall,
        c.mono,
    );
    let n = flush_after(&mut st, &mut c, &mut ids);
    assert_eq!(n.len(), 1, "a new alert notifies");
    let shown = &n[0].data.alerts;
    assert_eq!(names(&n[0]), vec!["a:firing", "b:firing"]);
    assert_eq!(
        shown[0].annotations.get(ACK_BY).map(String::as_str),
        Some("ann")
    );
    assert_eq!(
        shown[0].annotations.get(ACK_COMMENT).map(String::as_str),
        Some("looking")
    );
    assert_eq!(shown[0].fingerprint, crate::matchers::fingerprint_hex(fp_a));
    assert!(!shown[0].labels.contains_key(ACK_BY));
    assert!(!shown[1].annotations.contains_key(ACK_BY));
    assert!(
        !st.alerts[&fp_a].annotations.contains_key(ACK_BY),
        "the stored alert is unchanged"
    );
    // Both acknowledged: no repeats. The resolution still goes out, with
    // the ack (the episode has ended: the view is closed now).
    let fp_b = crate::matchers::fingerprint(
        &[("alertname", "Cpu"), ("instance", "b")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    st.acks.insert(
        fp_b,
        AckView {
            open: true,
            author: "bob".into(),
            comment: String::new(),
            at: c.wall,
        },
    );
    for _ in 0..8 {
        c.advance(Duration::from_secs(2));
        assert!(flush(&mut st, &c, &mut ids).is_empty());
    }
    let end = c.wall;
    st.put(
        alert(&[("alertname", "Cpu"), ("instance", "a")], &c, Some(end)),
        c.wall,
        c.mono,
    );
    if let Some(v) = st.acks.get_mut(&fp_a) {
        v.open = false;
    }
    let n = flush_after(&mut st, &mut c, &mut ids);
    assert_eq!(n.len(), 1, "the resolution goes out");
    assert_eq!(names(&n[0]), vec!["a:resolved", "b:firing"]);
    assert_eq!(
        n[0].data.alerts[0]
            .annotations
            .get(ACK_BY)
            .map(String::as_str),
        Some("ann")
    );
}

/// Flushes after the group interval.
fn flush_after(st: &mut State, c: &mut Clock, ids: &mut u64) -> Vec<OutboxEntry> {
    c.advance(Duration::from_secs(2));
    flush(st, c, ids)
}
