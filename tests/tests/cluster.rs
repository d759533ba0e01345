//! The alerting cluster end to end: three real `vigil serve` processes
//! gossiping on 127.0.0.1 (`--cluster-listen`, `--cluster-peer`) and one
//! webhook receiver counting what arrives.
//!
//! * the same alert posted to all three is delivered once;
//! * after `kill -9` of the member that sends first, a new alert is still
//!   delivered once;
//! * a silence created with `amtool` on one member mutes on another;
//! * `amtool cluster show` and the UI's `/status` list the members;
//! * a member cut off from gossip (the hidden `--cluster.test-block-file`
//!   drops its packets) and the rest both send: nothing is lost;
//! * the killed member restarts from its data directory, does not send
//!   again what it had sent, and gossip brings it the silence created
//!   while it was down.
//!
//! Every wait polls an observable condition (status, metrics, received
//! bodies); nothing sleeps for a fixed time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil_e2e::{Collector, free_port, webhook_receiver};

const PEER_TIMEOUT: &str = "2s";
const WAIT: Duration = Duration::from_secs(90);

/// A TCP port on 127.0.0.1 whose UDP twin is free too (gossip is UDP).
fn gossip_port() -> u16 {
    loop {
        let p = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

struct Member {
    c: Collector,
    http_port: u16,
    gossip: u16,
    data: PathBuf,
    block: PathBuf,
}

fn alerting_config(dir: &Path, hook_port: u16) -> PathBuf {
    let path = dir.join("alertmanager.yml");
    std::fs::write(
        &path,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{hook_port}/\n        send_resolved: false\n"
        ),
    )
    .expect("write alerting config");
    path
}

fn start(
    data: &Path,
    http_port: u16,
    gossip: u16,
    peers: &[u16],
    cfg: &Path,
    block: &Path,
) -> Collector {
    let mut args: Vec<String> = vec![
        "--alerting-config".into(),
        cfg.display().to_string(),
        "--cluster-listen".into(),
        format!("127.0.0.1:{gossip}"),
        // Alertmanager's spellings are accepted as well.
        "--cluster.peer-timeout".into(),
        PEER_TIMEOUT.into(),
        "--cluster.gossip-interval".into(),
        "100ms".into(),
        "--cluster.test-block-file".into(),
        block.display().to_string(),
    ];
    for (i, p) in peers.iter().enumerate() {
        args.push(if i % 2 == 0 {
            "--cluster-peer".into()
        } else {
            "--cluster.peer".into()
        });
        args.push(format!("127.0.0.1:{p}"));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Collector::start_on(data, http_port, &refs).expect("vigil serve starts")
}

fn get(m: &Member, path: &str) -> Value {
    reqwest::blocking::get(m.c.url(path))
        .and_then(|r| r.json())
        .unwrap_or(Value::Null)
}

fn cluster(m: &Member) -> Value {
    get(m, "/api/v2/status")["cluster"].clone()
}

fn peer_count(m: &Member) -> usize {
    cluster(m)["peers"].as_array().map_or(0, Vec::len)
}

fn metric(m: &Member, name: &str) -> f64 {
    let text = reqwest::blocking::get(m.c.url("/metrics"))
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn dedup(ms: &[&Member]) -> f64 {
    ms.iter()
        .map(|m| metric(m, "vigil_cluster_notifications_deduplicated_total"))
        .sum()
}

fn post_alerts(m: &Member, alerts: Value) {
    let r = reqwest::blocking::Client::new()
        .post(m.c.url("/api/v2/alerts"))
        .json(&alerts)
        .send()
        .expect("post alerts");
    assert!(r.status().is_success(), "{}", r.status());
}

fn deliveries(bodies: &Arc<Mutex<Vec<Value>>>, alertname: &str) -> Vec<Value> {
    bodies
        .lock()
        .expect("bodies")
        .iter()
        .filter(|b| b["groupLabels"]["alertname"] == alertname)
        .cloned()
        .collect()
}

fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs Alertmanager's `amtool` (Debian `prometheus-alertmanager`, installed
/// by tests/run.sh) against a member; its standard output.
fn amtool(m: &Member, args: &[&str]) -> String {
    let out = std::process::Command::new("amtool")
        .arg(format!("--alertmanager.url={}", m.c.url("")))
        .args(args)
        .output()
        .expect("amtool must be installed (apt-get install prometheus-alertmanager)");
    assert!(
        out.status.success(),
        "amtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn three_members_page_once_share_silences_and_fail_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hook_port, bodies) = webhook_receiver();
    let cfg = alerting_config(dir.path(), hook_port);
    let gossip: Vec<u16> = (0..3).map(|_| gossip_port()).collect();
    let mut members: Vec<Option<Member>> = (0..3)
        .map(|i| {
            let data = dir.path().join(format!("m{i}"));
            let block = dir.path().join(format!("block{i}"));
            let http_port = free_port();
            let peers: Vec<u16> = (0..3).filter(|j| *j != i).map(|j| gossip[j]).collect();
            let c = start(&data, http_port, gossip[i], &peers, &cfg, &block);
            Some(Member {
                c,
                http_port,
                gossip: gossip[i],
                data,
                block,
            })
        })
        .collect();

    // --- the cluster forms and settles; status reads as Alertmanager's.
    let all: Vec<&Member> = members.iter().flatten().collect();
    for m in &all {
        poll("three ready members", || {
            let c = cluster(m);
            (c["status"] == "ready" && peer_count(m) == 3).then_some(())
        });
    }
    let names: Vec<String> = all
        .iter()
        .map(|m| cluster(m)["name"].as_str().unwrap_or_default().to_string())
        .collect();
    for m in &all {
        let c = cluster(m);
        let mut listed: Vec<String> = c["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .map(|p| p["name"].as_str().unwrap_or_default().to_string())
            .collect();
        listed.sort();
        let mut expected = names.clone();
        expected.sort();
        assert_eq!(listed, expected, "every member lists the same three");
        let own = c["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .find(|p| p["name"] == c["name"])
            .expect("itself among the peers");
        assert_eq!(own["address"], format!("127.0.0.1:{}", m.gossip));
    }

    // amtool reads the same status.
    let shown = amtool(all[0], &["cluster", "show", "-o", "json"]);
    let shown: Value = serde_json::from_str(&shown).expect("amtool prints JSON");
    assert_eq!(shown["status"], "ready");
    assert_eq!(shown["peers"].as_array().map(Vec::len), Some(3));
    // So does the UI's /status page.
    let page = reqwest::blocking::get(all[1].c.url("/status"))
        .and_then(|r| r.text())
        .expect("/status page");
    assert!(page.contains("<h2>Cluster</h2>"), "{page}");
    for n in &names {
        assert!(page.contains(n.as_str()), "{n} missing from /status");
    }

    // --- the same alert posted to all three arrives once.
    let before = dedup(&all);
    for m in &all {
        post_alerts(
            m,
            json!([{"labels": {"alertname": "ClusterOnce", "instance": "a"}}]),
        );
    }
    // One member sends; each of the other two decides not to (the
    // gossiped log shows it sent): three decisions in all.
    poll("every member decided on ClusterOnce", || {
        let decided = deliveries(&bodies, "ClusterOnce").len() as f64 + dedup(&all) - before;
        (decided >= 3.0).then_some(())
    });
    assert_eq!(
        deliveries(&bodies, "ClusterOnce").len(),
        1,
        "{:?}",
        bodies.lock().expect("bodies")
    );
    assert_eq!(dedup(&all) - before, 2.0);

    // --- kill -9 the member that sends first (lowest name); a new alert
    // still arrives once.
    let first = (0..3)
        .min_by_key(|i| names[*i].clone())
        .expect("three members");
    let mut killed = members[first].take().expect("first member");
    killed.c.proc.kill9();
    let rest: Vec<&Member> = members.iter().flatten().collect();
    let before = dedup(&rest);
    for m in &rest {
        post_alerts(
            m,
            json!([{"labels": {"alertname": "AfterKill", "instance": "b"}}]),
        );
    }
    poll("both survivors decided on AfterKill", || {
        let decided = deliveries(&bodies, "AfterKill").len() as f64 + dedup(&rest) - before;
        (decided >= 2.0).then_some(())
    });
    assert_eq!(deliveries(&bodies, "AfterKill").len(), 1);

    // --- a silence created on one member mutes on the other.
    let (a, b) = (rest[0], rest[1]);
    // amtool, as an operator would, against one member.
    let id = amtool(
        a,
        &[
            "silence",
            "add",
            "alertname=Mute",
            "instance=x",
            "--comment=cluster test",
            "--duration=1h",
        ],
    )
    .trim()
    .to_string();
    assert_eq!(id.len(), 36, "amtool prints the new silence's ID: {id}");
    poll("the silence reaching the other member", || {
        let s = get(b, &format!("/api/v2/silence/{id}"));
        (s["status"]["state"] == "active").then_some(())
    });
    // Only the member that did not create the silence gets the alerts.
    post_alerts(
        b,
        json!([
            {"labels": {"alertname": "Mute", "instance": "x"}},
            {"labels": {"alertname": "Mute", "instance": "y"}}
        ]),
    );
    let sent = poll("the Mute notification", || {
        deliveries(&bodies, "Mute").into_iter().next()
    });
    let instances: Vec<&str> = sent["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|a| a["labels"]["instance"].as_str())
        .collect();
    assert_eq!(instances, vec!["y"], "x is silenced by a's silence");
    let listed = get(b, "/api/v2/alerts?filter=instance%3D%22x%22");
    assert_eq!(listed[0]["status"]["silencedBy"], json!([id]));

    // --- partition: b stops gossiping; each side sees itself alone and
    // both send.
    std::fs::write(&b.block, b"").expect("block b");
    for m in [a, b] {
        poll("each side alone", || (peer_count(m) == 1).then_some(()));
    }
    for m in [a, b] {
        post_alerts(
            m,
            json!([{"labels": {"alertname": "Split", "instance": "c"}}]),
        );
    }
    poll("both sides sending Split", || {
        (deliveries(&bodies, "Split").len() >= 2).then_some(())
    });
    assert_eq!(
        deliveries(&bodies, "Split").len(),
        2,
        "fails open: both send"
    );
    std::fs::remove_file(&b.block).expect("unblock b");
    for m in [a, b] {
        poll("the two members joined again", || {
            (peer_count(m) == 2).then_some(())
        });
    }

    // --- the killed member restarts from its data directory: it does not
    // send ClusterOnce again, and gossip brings it the silence.
    let peers: Vec<u16> = rest.iter().map(|m| m.gossip).collect();
    let restarted = start(
        &killed.data,
        killed.http_port,
        killed.gossip,
        &peers,
        &cfg,
        &killed.block,
    );
    killed.c = restarted;
    poll("the restarted member receiving the silence", || {
        let s = get(&killed, &format!("/api/v2/silence/{id}"));
        (s["status"]["state"] == "active").then_some(())
    });
    poll("the restarted member back among three", || {
        (peer_count(&killed) == 3 && cluster(&killed)["status"] == "ready").then_some(())
    });
    poll("the restarted member deciding on ClusterOnce", || {
        (metric(&killed, "vigil_cluster_notifications_deduplicated_total") >= 1.0).then_some(())
    });
    assert_eq!(deliveries(&bodies, "ClusterOnce").len(), 1);
    assert_eq!(deliveries(&bodies, "AfterKill").len(), 1);
}
