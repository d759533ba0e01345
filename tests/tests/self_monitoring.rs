//! Vigil watching its own notifications through the real binaries: a
//! receiver answering 500 makes `VigilNotificationsFailing` (the default
//! pack, rules/vigil.rules.yml) reach a second receiver.
//!
//! `vigil serve` runs the default pack with an Alertmanager configuration
//! that routes `Watchdog` (always firing) to a receiver whose webhook
//! answers 500, and the self-monitoring alerts to a working webhook. A real
//! `vigil-agent` scrapes the collector's `/metrics` (job `vigil`, as
//! deploy/agent.example.yaml does) so its self-metrics reach the store.

use std::io::{Read as _, Write as _};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vigil_e2e::{
    Collector, Proc, binary, bind_local, free_port, wait_ready, webhook_receiver, workspace_root,
};

/// An HTTP server on 127.0.0.1 answering every request with 500; counts them.
fn failing_receiver() -> (u16, Arc<AtomicUsize>) {
    let listener = bind_local();
    let port = listener.local_addr().expect("port").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 16384];
            // One read holds a small webhook request's head (and usually
            // its body); the answer does not depend on it.
            let _ = stream.read(&mut buf);
            counter.fetch_add(1, Ordering::Relaxed);
            let _ = stream.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\nboom",
            );
        }
    });
    (port, hits)
}

#[test]
fn a_failing_receiver_pages_through_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bad_port, bad_hits) = failing_receiver();
    let (good_port, bodies) = webhook_receiver();
    let am = dir.path().join("alerting.yml");
    std::fs::write(
        &am,
        format!(
            "route:\n  receiver: ops\n  group_by: [alertname, instance]\n  group_wait: 0s\n  \
             group_interval: 1s\n  repeat_interval: 1h\n  routes:\n    \
             - matchers: ['alertname=\"Watchdog\"']\n      receiver: deadmansswitch\n\
             receivers:\n  - name: ops\n    webhook_configs:\n      - url: http://127.0.0.1:{good_port}/ops\n  \
             - name: deadmansswitch\n    webhook_configs:\n      - url: http://127.0.0.1:{bad_port}/ping\n"
        ),
    )
    .expect("alerting config");
    let cfg = dir.path().join("vigil.yml");
    std::fs::write(
        &cfg,
        "rules:\n  evaluation_interval: 1s\n  resend_delay: 1s\n",
    )
    .expect("config");
    let pack = workspace_root().join("rules/*.rules.yml");
    let port = free_port();
    let args = [
        "--config",
        cfg.to_str().expect("utf-8"),
        "--rule-file",
        pack.to_str().expect("utf-8"),
        "--alerting-config",
        am.to_str().expect("utf-8"),
    ];
    let c = Collector::start_on(&dir.path().join("data"), port, &args).expect("collector");

    let agent_port = free_port();
    let agent_cfg = dir.path().join("agent.yml");
    std::fs::write(
        &agent_cfg,
        format!(
            "listen: 127.0.0.1:{agent_port}\ndata_dir: {}\ninterval: 1s\nsystem: {{enabled: false}}\n\
             remote_write:\n  url: http://127.0.0.1:{port}/api/v1/write\n  max_backoff: 500ms\n\
             scrape:\n  - job: vigil\n    targets: ['127.0.0.1:{port}']\n",
            dir.path().join("agent").display()
        ),
    )
    .expect("agent config");
    let _agent = Proc::spawn(
        "vigil-agent",
        Command::new(binary("vigil-agent").expect("binary"))
            .arg("--config")
            .arg(&agent_cfg)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ),
    )
    .expect("agent starts");
    wait_ready(
        &format!("http://127.0.0.1:{agent_port}/-/healthy"),
        Duration::from_secs(30),
    )
    .expect("agent ready");

    let deadline = Instant::now() + Duration::from_secs(90);
    let alert = loop {
        let found = bodies.lock().expect("bodies").iter().find_map(|b| {
            b["alerts"].as_array()?.iter().find_map(|a| {
                (a["labels"]["alertname"] == "VigilNotificationsFailing" && a["status"] == "firing")
                    .then(|| a.clone())
            })
        });
        if let Some(a) = found {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "VigilNotificationsFailing never reached the second receiver ({} attempts hit the failing one)",
            bad_hits.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        bad_hits.load(Ordering::Relaxed) >= 2,
        "the failing receiver was not retried"
    );
    assert_eq!(alert["labels"]["receiver"], "deadmansswitch", "{alert}");
    assert_eq!(alert["labels"]["job"], "vigil", "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert!(
        alert["labels"]["integration"]
            .as_str()
            .is_some_and(|i| i.contains("webhook")),
        "{alert}"
    );
    // Only the self-monitoring alert went to the working receiver, never
    // the Watchdog.
    let watchdog_to_ops = bodies
        .lock()
        .expect("bodies")
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .any(|a| a["labels"]["alertname"] == "Watchdog");
    assert!(!watchdog_to_ops);
    drop(c);
}
