//! `vigil-agent check config FILE` through the real binary: exit status 0
//! for a file the agent would run with, 1 with the file, the line and the
//! reason for one it would refuse.

use std::process::Command;

fn check(yaml: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("agent.yml");
    std::fs::write(&file, yaml).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
        .args(["check", "config"])
        .arg(&file)
        .output()
        .expect("run vigil-agent");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_example_passes() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
        .args(["check", "config"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/agent.example.yaml"
        ))
        .output()
        .expect("run vigil-agent");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("agent.example.yaml: OK"), "{stdout}");
}

#[test]
fn an_unknown_key_names_file_and_line() {
    let (ok, _, err) = check("interval: 15s\nremote_write:\n  url: http://a/w\n  tiemout: 5s\n");
    assert!(!ok);
    assert!(err.contains("agent.yml"), "{err}");
    assert!(err.contains("tiemout"), "{err}");
    assert!(err.contains("line 4"), "{err}");
}

#[test]
fn an_invalid_value_names_file_and_reason() {
    let (ok, _, err) = check(
        "remote_writes:\n  - name: a\n    url: http://a/w\n  - name: a\n    url: http://b/w\n",
    );
    assert!(!ok);
    assert!(err.contains("agent.yml"), "{err}");
    assert!(
        err.contains("remote_writes[1]: name \"a\" is used twice"),
        "{err}"
    );
}

#[test]
fn a_good_file_passes_with_a_summary() {
    let (ok, out, err) = check(
        "remote_writes:\n  - name: a\n    url: http://a/w\n  - name: b\n    url: http://b/w\n",
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("OK (2 remote_write destinations, 0 scrape jobs)"),
        "{out}"
    );
}

/// Service discovery and relabeling mistakes are refused with the job, the
/// entry and Prometheus's reason.
#[test]
fn discovery_and_relabel_mistakes_are_explained() {
    for (yaml, want) in [
        (
            "scrape:\n  - job: a\n    relabel_configs:\n      - source_labels: [x]\n        regex: '(unclosed'\n        target_label: y\n",
            "scrape[0] (job a): relabel_configs[0]: invalid regex \"(unclosed\"",
        ),
        (
            "scrape:\n  - job: a\n    relabel_configs:\n      - action: explode\n",
            "line 4",
        ),
        (
            "scrape:\n  - job: a\n    relabel_configs:\n      - action: explode\n",
            "unknown relabel action \"explode\"",
        ),
        (
            "scrape:\n  - job: a\n    metric_relabel_configs:\n      - {}\n",
            "scrape[0] (job a): metric_relabel_configs[0]: relabel configuration for replace action requires 'target_label' value",
        ),
        (
            "scrape:\n  - job: a\n    file_sd_configs:\n      - files: []\n",
            "scrape[0] (job a): file_sd_configs[0]: file service discovery config must contain at least one path name",
        ),
        (
            "scrape:\n  - job: a\n    file_sd_configs:\n      - files: ['/etc/*/t.json']\n",
            "path name \"/etc/*/t.json\" is not valid for file discovery",
        ),
        (
            "scrape:\n  - job: a\n    file_sd_configs:\n      - refresh_interval: 1m\n",
            "missing field `files`",
        ),
        (
            "scrape:\n  - job: a\n    http_sd_configs:\n      - url: ftp://x/t\n",
            "http_sd_configs[0]: URL scheme must be 'http' or 'https'",
        ),
        (
            "scrape:\n  - job: a\n    http_sd_configs:\n      - url: http://x/t\n        refresh: 1m\n",
            "unknown field `refresh`",
        ),
        (
            "scrape:\n  - job: a\n    static_configs:\n      - targets: ['http://x:1/metrics']\n",
            "must be host:port",
        ),
    ] {
        let (ok, _, err) = check(yaml);
        assert!(!ok, "accepted: {yaml}");
        assert!(err.contains(want), "{yaml}\nwant {want:?} in:\n{err}");
        assert!(err.contains("agent.yml"), "{err}");
    }
    let (ok, out, err) = check(
        "scrape:\n  - job: a\n    file_sd_configs:\n      - files: [targets/*.json]\n    http_sd_configs:\n      - url: http://127.0.0.1:1/sd\n    relabel_configs:\n      - source_labels: [__address__]\n        modulus: 2\n        target_label: __tmp_shard\n        action: HashMod\n",
    );
    assert!(ok, "{out}{err}");
}
