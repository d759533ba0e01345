//! Shipping end to end: the real agent binary pushes to a real remote_write
//! receiver that fails (503) and then goes away entirely for `OUTAGE`;
//! every sample collected meanwhile must arrive afterwards, none twice, in
//! order — also when the agent is restarted in the middle of the outage.
//!
//! The issue asks for a one-minute outage; `OUTAGE` is 20 s to keep the
//! suite fast on a 2-core CI machine (the agent's behaviour does not depend
//! on the length: data sits in the disk buffer either way).

mod common;

use std::time::{Duration, Instant};

use common::{AgentProc, Receiver, get_text, metric};

/// How long the receiver is unavailable (half answering 503, half down).
const OUTAGE: Duration = Duration::from_secs(20);

fn config(url: &str, data_dir: &std::path::Path) -> String {
    format!(
        "interval: 1s\ndata_dir: {}\nremote_write:\n  url: {url}\n  min_backoff: 50ms\n  max_backoff: 1s\nllm:\n  enabled: false\n",
        data_dir.display()
    )
}

const SERIES: &[(&str, &str)] = &[("__name__", "node_boot_time_seconds")];

/// Collections of the system collector so far, from the agent's own counter.
async fn collections(agent: &AgentProc) -> u64 {
    let text = get_text(&agent.url("/metrics")).await;
    metric(
        &text,
        "vigil_agent_collections_total",
        &[("collector", "system")],
    )
    .unwrap_or(0.0) as u64
}

fn assert_strictly_increasing(ts: &[i64]) {
    for w in ts.windows(2) {
        assert!(
            w[0] < w[1],
            "samples out of order or duplicated: {} then {}",
            w[0],
            w[1]
        );
    }
}

async fn wait_for_count(rx: &Receiver, want: usize, within: Duration) -> Vec<i64> {
    let deadline = Instant::now() + within;
    loop {
        let ts = rx.timestamps(SERIES);
        if ts.len() >= want || Instant::now() > deadline {
            return ts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_buffered_and_replayed_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rx = Receiver::start().await;
    let agent = AgentProc::spawn(
        &config(&rx.url(), &dir.path().join("data")),
        dir.path(),
        &[],
    );
    agent.wait_healthy().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !rx.timestamps(SERIES).is_empty(),
        "nothing shipped while the receiver was up"
    );

    // Outage: first the receiver fails every request, then it is gone.
    let outage_start = common_now_ms();
    rx.status.store(503, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(OUTAGE / 2).await;
    rx.down().await;
    tokio::time::sleep(OUTAGE / 2).await;
    let text = get_text(&agent.url("/metrics")).await;
    let buffered = metric(&text, "vigil_agent_buffer_samples", &[]).unwrap_or(0.0);
    let failures = metric(&text, "vigil_agent_remote_write_failures_total", &[]).unwrap_or(0.0);
    assert!(buffered > 0.0, "nothing buffered during the outage");
    assert!(failures > 0.0, "no failed sends counted during the outage");
    let outage_end = common_now_ms();

    rx.status.store(204, std::sync::atomic::Ordering::SeqCst);
    rx.up().await;
    let collected = collections(&agent).await as usize;
    let ts = wait_for_count(&rx, collected, Duration::from_secs(30)).await;
    assert!(
        ts.len() >= collected,
        "{} of {collected} collections arrived after the outage",
        ts.len()
    );
    assert_strictly_increasing(&ts);
    let during = ts
        .iter()
        .filter(|t| **t >= outage_start && **t <= outage_end)
        .count();
    let expected = OUTAGE.as_secs() as usize;
    assert!(
        during + 3 >= expected,
        "only {during} samples collected during a {expected} s outage at a 1 s interval arrived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_survives_an_agent_restart_during_the_outage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut rx = Receiver::start().await;
    let cfg = config(&rx.url(), &data);

    let mut first = AgentProc::spawn(&cfg, dir.path(), &[]);
    first.wait_healthy().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    rx.status.store(503, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(OUTAGE / 2).await;
    let c1 = collections(&first).await as usize;
    first.terminate();

    // Restart on the same data dir while the receiver is down altogether.
    rx.down().await;
    let second = AgentProc::spawn(&cfg, dir.path(), &[]);
    second.wait_healthy().await;
    tokio::time::sleep(OUTAGE / 2).await;
    rx.status.store(204, std::sync::atomic::Ordering::SeqCst);
    rx.up().await;
    let c2 = collections(&second).await as usize;
    let ts = wait_for_count(&rx, c1 + c2, Duration::from_secs(30)).await;
    // One more collection may slip in between reading the first agent's
    // counter and its SIGTERM; nothing else may be extra or missing.
    assert!(
        ts.len() >= c1 + c2,
        "{} of {} collections arrived",
        ts.len(),
        c1 + c2
    );
    assert!(
        ts.len() <= c1 + c2 + 1,
        "{} samples for {} collections: duplicates",
        ts.len(),
        c1 + c2
    );
    assert_strictly_increasing(&ts);
}

fn common_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
