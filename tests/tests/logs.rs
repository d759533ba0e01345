//! Logs as journald and a log shipper see them, from the real binaries with
//! stderr redirected to a file (not a terminal): Prometheus's
//! `--log.format logfmt|json` and `--log.level`, no colour codes, one record
//! per line however many lines an error has, an error's cause once, a
//! startup error once, and refused remote_write requests logged with their
//! sender and reason, rate-limited.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::{Proc, binary, free_port, wait_ready};

/// Runs to completion with stderr captured to a file; returns it.
fn run(cmd: &mut Command, log: &Path) -> (bool, String) {
    let file = std::fs::File::create(log).expect("log file");
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .expect("runs");
    (status.success(), std::fs::read_to_string(log).expect("log"))
}

fn assert_clean_logfmt(text: &str) {
    assert!(!text.contains('\u{1b}'), "colour codes in a file:\n{text}");
    for line in text.lines() {
        assert!(
            line.starts_with("ts=") && line.contains(" level=") && line.contains(" msg="),
            "not one logfmt record per line: {line:?}\nwhole log:\n{text}"
        );
    }
}

#[test]
fn a_startup_error_is_one_record_with_its_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Port taken.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let (ok, text) = run(
        Command::new(binary("vigil").expect("vigil"))
            .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(dir.path().join("data")),
        &dir.path().join("port.log"),
    );
    assert!(!ok, "started on a taken port:\n{text}");
    assert_clean_logfmt(&text);
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("level=error")).collect();
    assert_eq!(errors.len(), 1, "one error record:\n{text}");
    // EADDRINUSE's text, as the OS words it, appears once.
    assert_eq!(
        errors[0].matches("(os error 98)").count(),
        1,
        "the cause once: {}",
        errors[0]
    );

    // A configuration error whose text spans lines: one record, once.
    let cfg = dir.path().join("bad.yml");
    std::fs::write(
        &cfg,
        "listen: 127.0.0.1:1\nstorage:\n  retention: [not, a, duration]\n  nonsense: 1\n",
    )
    .expect("config");
    let (ok, text) = run(
        Command::new(binary("vigil").expect("vigil"))
            .args(["serve", "--config"])
            .arg(&cfg),
        &dir.path().join("config.log"),
    );
    assert!(!ok);
    assert_clean_logfmt(&text);
    assert_eq!(text.lines().count(), 1, "printed once, one line:\n{text}");

    // The agent, in JSON: every line an object with Prometheus's keys.
    let agent_cfg = dir.path().join("agent.yml");
    std::fs::write(&agent_cfg, "interval: 0s\n").expect("agent config");
    let (ok, text) = run(
        Command::new(binary("vigil-agent").expect("agent"))
            .args(["--log.format", "json", "--config"])
            .arg(&agent_cfg),
        &dir.path().join("agent.log"),
    );
    assert!(!ok);
    assert_eq!(text.lines().count(), 1, "{text}");
    let rec: Value = serde_json::from_str(text.trim()).expect("a JSON record");
    assert_eq!(rec["level"], "error", "{rec}");
    assert!(rec["ts"].is_string() && rec["caller"].is_string(), "{rec}");
    assert!(
        rec["msg"].as_str().is_some_and(|m| m.contains("interval")),
        "{rec}"
    );

    // Bad flag values are refused by name.
    let (ok, _) = run(
        Command::new(binary("vigil").expect("vigil")).args(["--log.format", "text", "serve"]),
        &dir.path().join("flag.log"),
    );
    assert!(!ok, "--log.format text is refused");
}

#[test]
fn refused_remote_writes_are_logged_with_sender_and_reason_rate_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let log = dir.path().join("collector.log");
    let file = std::fs::File::create(&log).expect("log");
    let mut cmd = Command::new(binary("vigil").expect("vigil"));
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir.path().join("data"))
    .args(["--log.level", "warn"])
    .stderr(file);
    let _collector = Proc::spawn("vigil", &mut cmd).expect("starts");
    wait_ready(
        &format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(60),
    )
    .expect("ready");
    let http = reqwest::blocking::Client::new();
    for _ in 0..5 {
        let r = http
            .post(format!("http://127.0.0.1:{port}/api/v1/write"))
            .header("content-encoding", "snappy")
            .body(b"not snappy at all".to_vec())
            .send()
            .expect("answers");
        assert_eq!(r.status().as_u16(), 400);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("ingest request refused") {
            break text;
        }
        assert!(Instant::now() < deadline, "refusals never logged:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_clean_logfmt(&text);
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ingest request refused"))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "five refusals in a burst, one line:\n{text}"
    );
    assert!(
        refused[0].contains("reason=malformed") && refused[0].contains("sender=127.0.0.1:"),
        "{}",
        refused[0]
    );
    assert!(
        !text.contains("level=info"),
        "--log.level warn hides info:\n{text}"
    );
}
