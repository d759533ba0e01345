//! SIGHUP reload through the real binary: a valid new configuration takes
//! effect without a restart (the process and its buffer stay), a refused
//! one is reported (`vigil_agent_config_last_reload_successful 0`) and the
//! running configuration stays.

mod common;

use std::time::{Duration, Instant};

use common::{AgentProc, get_text, metric};

fn config(stage: &str, extra: &str) -> String {
    format!(
        "interval: 1s\nremote_write:\n  url: \"\"\nllm:\n  enabled: false\nexternal_labels:\n  stage: {stage}\n{extra}"
    )
}

fn hangup(agent: &AgentProc) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &agent.child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
}

/// Polls the agent's `/metrics` until `f` holds (it may be restarting its
/// listener in between).
async fn wait_metrics(agent: &AgentProc, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(agent.url("/metrics")).await
            && let Ok(text) = r.text().await
            && f(&text)
        {
            return text;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_good_config_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = AgentProc::spawn(&config("one", ""), dir.path(), &[]);
    agent.wait_healthy().await;
    let file = dir.path().join(format!("agent-{}.yaml", agent.port));
    wait_metrics(&agent, "stage one", |t| {
        metric(t, "node_boot_time_seconds", &[("stage", "one")]).is_some()
    })
    .await;

    // A good configuration: the new label appears, the old one is gone.
    std::fs::write(&file, config("two", "")).expect("rewrite");
    hangup(&agent);
    let text = wait_metrics(&agent, "stage two", |t| {
        metric(t, "node_boot_time_seconds", &[("stage", "two")]).is_some()
    })
    .await;
    assert!(metric(&text, "node_boot_time_seconds", &[("stage", "one")]).is_none());
    assert_eq!(
        metric(&text, "vigil_agent_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert!(
        agent.child.try_wait().expect("wait").is_none(),
        "same process"
    );

    // A bad one: refused, the running configuration stays.
    std::fs::write(
        &file,
        config("three", "remote_writes:\n  - url: http://a/w\n"),
    )
    .expect("rewrite");
    hangup(&agent);
    let text = wait_metrics(&agent, "the refusal", |t| {
        metric(t, "vigil_agent_config_last_reload_successful", &[]) == Some(0.0)
    })
    .await;
    assert!(metric(&text, "node_boot_time_seconds", &[("stage", "two")]).is_some());
    assert!(metric(&text, "node_boot_time_seconds", &[("stage", "three")]).is_none());
    // Still serving (get_text fails on an error).
    get_text(&agent.url("/-/healthy")).await;
    assert!(
        agent.child.try_wait().expect("wait").is_none(),
        "still running"
    );
    agent.terminate();
    let log =
        std::fs::read_to_string(dir.path().join(format!("agent-{}.log", agent.port))).expect("log");
    assert!(
        log.contains("configuration refused") && log.contains("remote_writes are both set"),
        "{log}"
    );
}
