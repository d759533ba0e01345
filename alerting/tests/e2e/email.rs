//! Email through a real SMTP server (aiosmtpd): plain SMTP and STARTTLS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{Proc, free_port, post_alerts, start_vigil, wait_for};

/// Makes sure aiosmtpd is importable, installing it with pip if needed.
fn have_aiosmtpd() -> bool {
    let ok = |c: &mut Command| {
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if ok(Command::new("python3").args(["-c", "import aiosmtpd"])) {
        return true;
    }
    ok(Command::new("python3").args(["-m", "pip", "install", "--quiet", "aiosmtpd"]))
        && ok(Command::new("python3").args(["-c", "import aiosmtpd"]))
}

async fn start_smtp(dir: &Path, tls: Option<(&Path, &Path)>) -> (Proc, u16, std::path::PathBuf) {
    let port = free_port();
    let out = dir.join("mail.jsonl");
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", concat!(env!("CARGO_MANIFEST_DIR"), "/tests"))
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "smtp_capture.Capture",
        ]);
    if let Some((cert, key)) = tls {
        cmd.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
    }
    cmd.arg(&out).stdout(Stdio::null()).stderr(Stdio::null());
    let child = cmd.spawn().expect("spawn aiosmtpd");
    let proc = Proc {
        child,
        url: format!("127.0.0.1:{port}"),
    };
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .await;
    assert!(up.is_some(), "aiosmtpd did not start");
    (proc, port, out)
}

fn mails(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn config(port: u16, tls: &str) -> String {
    format!(
        r#"
global:
  smtp_smarthost: 127.0.0.1:{port}
  smtp_from: vigil@example.org
route:
  receiver: mail
  group_by: [alertname]
  group_wait: 0s
receivers:
  - name: mail
    email_configs:
      - to: ops@example.org, dba@example.org
{tls}"#
    )
}

async fn check_delivery(vigil: &Proc, out: &Path, want_tls: bool) {
    post_alerts(
        &vigil.url,
        json!([{
            "labels": {"alertname": "PostgresDown", "severity": "critical", "instance": "pg1"},
            "annotations": {"summary": "pg1 is unreachable"},
        }]),
    )
    .await;
    let mail = wait_for(Duration::from_secs(15), || mails(out).into_iter().next())
        .await
        .expect("mail received");
    assert_eq!(mail["subject"], "[FIRING:1] [CRITICAL] PostgresDown");
    assert_eq!(mail["content_type"], "multipart/alternative");
    assert_eq!(mail["rcpt"], json!(["ops@example.org", "dba@example.org"]));
    let parts = mail["parts"].as_array().expect("parts");
    let part = |t: &str| {
        parts
            .iter()
            .find(|p| p["type"] == t)
            .and_then(|p| p["body"].as_str())
            .map(str::to_string)
    };
    let text = part("text/plain").expect("plain-text part");
    let html = part("text/html").expect("html part");
    assert!(text.contains("pg1 is unreachable"), "{text}");
    assert!(html.contains("#ff4444"), "critical colour in the HTML part");
    assert_eq!(mail["tls"], want_tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_plain_smtp() {
    if !have_aiosmtpd() {
        eprintln!("aiosmtpd unavailable; skipping");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_smtp, port, out) = start_smtp(dir.path(), None).await;
    let vigil = start_vigil(
        &config(port, "        require_tls: false\n"),
        dir.path(),
        &[],
    )
    .await;
    check_delivery(&vigil, &out, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_starttls() {
    if !have_aiosmtpd() {
        eprintln!("aiosmtpd unavailable; skipping");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !made {
        eprintln!("openssl unavailable; skipping");
        return;
    }
    let (_smtp, port, out) = start_smtp(dir.path(), Some((&cert, &key))).await;
    // require_tls (the default) means STARTTLS; the self-signed test
    // certificate is accepted explicitly.
    let tls = "        tls_config:\n          insecure_skip_verify: true\n";
    let vigil = start_vigil(&config(port, tls), dir.path(), &[]).await;
    check_delivery(&vigil, &out, true).await;
}
