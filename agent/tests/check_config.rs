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
