//! Email through a real SMTP server (aiosmtpd): plain SMTP, STARTTLS and
//! implicit TLS (SMTPS), with certificates verified against a test CA.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::certs::{make_ca, make_server_cert};
use crate::{Proc, free_port, post_alerts, start_vigil, wait_for};

/// aiosmtpd must be importable: tests/run.sh installs it, so a missing one
/// fails the test instead of passing it unchecked.
fn require_aiosmtpd() {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 with aiosmtpd is needed: python3 -m pip install aiosmtpd (tests/run.sh does)"
    );
}

/// How the SMTP server speaks TLS.
#[derive(Clone, Copy)]
enum ServerTls<'a> {
    None,
    /// Plain SMTP offering STARTTLS with this certificate and key.
    StartTls(&'a Path, &'a Path),
    /// TLS from the first byte (SMTPS).
    Implicit(&'a Path, &'a Path),
}

async fn start_smtp(dir: &Path, tls: ServerTls<'_>, port: u16) -> (Proc, std::path::PathBuf) {
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
    match tls {
        ServerTls::None => {}
        ServerTls::StartTls(cert, key) => {
            cmd.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
        }
        ServerTls::Implicit(cert, key) => {
            cmd.arg("--smtpscert").arg(cert).arg("--smtpskey").arg(key);
        }
    }
    cmd.arg(&out).stdout(Stdio::null()).stderr(Stdio::null());
    let child = cmd.spawn().expect("spawn aiosmtpd");
    let mut proc = Proc {
        child,
        url: format!("127.0.0.1:{port}"),
    };
    let up = wait_for(Duration::from_secs(30), || {
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!("aiosmtpd exited at start ({status}); is 127.0.0.1:{port} taken?");
        }
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .await;
    assert!(up.is_some(), "aiosmtpd did not start");
    (proc, out)
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

async fn check_delivery(vigil: &Proc, out: &Path, want_tls: bool) -> Value {
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
    assert_eq!(mail["tls"], want_tls, "{mail}");
    mail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_plain_smtp() {
    require_aiosmtpd();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (_smtp, out) = start_smtp(dir.path(), ServerTls::None, port).await;
    let vigil = start_vigil(
        &config(port, "        require_tls: false\n"),
        dir.path(),
        &[],
    )
    .await;
    let mail = check_delivery(&vigil, &out, false).await;
    assert_eq!(mail["tls_version"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_starttls() {
    require_aiosmtpd();
    let dir = tempfile::tempdir().expect("tempdir");
    make_ca(dir.path(), "mail");
    make_server_cert(dir.path(), "mail");
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    let port = free_port();
    let (_smtp, out) = start_smtp(dir.path(), ServerTls::StartTls(&cert, &key), port).await;
    // require_tls (the default) means STARTTLS; the test CA is trusted
    // explicitly, so the certificate is verified, not waved through.
    let tls = format!(
        "        tls_config:\n          ca_file: {}\n",
        dir.path().join("mail-ca.pem").display()
    );
    let vigil = start_vigil(&config(port, &tls), dir.path(), &[]).await;
    let mail = check_delivery(&vigil, &out, true).await;
    assert_eq!(mail["starttls"], true, "{mail}");
}

/// SMTPS: Alertmanager (and so Vigil) speaks TLS from the first byte when
/// the smarthost's port is 465, and only then, so the server must listen on
/// 127.0.0.1:465 itself. A lock file keeps concurrent test runs on the
/// machine from taking turns badly on that one port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_implicit_tls_on_port_465() {
    require_aiosmtpd();
    let lock = std::fs::File::create(std::env::temp_dir().join("vigil-test-smtps-465.lock"))
        .expect("create the port-465 lock file");
    lock.lock().expect("lock port 465 for this test");
    let dir = tempfile::tempdir().expect("tempdir");
    make_ca(dir.path(), "mail");
    make_server_cert(dir.path(), "mail");
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    let (_smtp, out) = start_smtp(dir.path(), ServerTls::Implicit(&cert, &key), 465).await;
    let tls = format!(
        "        tls_config:\n          ca_file: {}\n",
        dir.path().join("mail-ca.pem").display()
    );
    let vigil = start_vigil(&config(465, &tls), dir.path(), &[]).await;
    let mail = check_delivery(&vigil, &out, true).await;
    assert_eq!(
        mail["starttls"], false,
        "TLS from the first byte, not STARTTLS: {mail}"
    );
    assert!(
        mail["tls_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("TLSv1.")),
        "{mail}"
    );
}

/// A server certificate from an unknown CA is refused, not used: nothing is
/// delivered over an unverified implicit-TLS connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_implicit_tls_refuses_an_untrusted_certificate() {
    require_aiosmtpd();
    let lock = std::fs::File::create(std::env::temp_dir().join("vigil-test-smtps-465.lock"))
        .expect("create the port-465 lock file");
    lock.lock().expect("lock port 465 for this test");
    let dir = tempfile::tempdir().expect("tempdir");
    make_ca(dir.path(), "mail");
    make_server_cert(dir.path(), "mail");
    make_ca(dir.path(), "other");
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    let (_smtp, out) = start_smtp(dir.path(), ServerTls::Implicit(&cert, &key), 465).await;
    let tls = format!(
        "        tls_config:\n          ca_file: {}\n",
        dir.path().join("other-ca.pem").display()
    );
    let vigil = start_vigil(&config(465, &tls), dir.path(), &[]).await;
    post_alerts(
        &vigil.url,
        json!([{"labels": {"alertname": "PostgresDown", "severity": "critical"}}]),
    )
    .await;
    // The refused attempt is counted; by then it has been made.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = match reqwest::get(format!("{}/metrics", vigil.url)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.lines().any(|l| {
            l.starts_with("vigil_notification_requests_failed_total{")
                && l.contains("integration=\"email\"")
                && !l.ends_with(" 0")
        }) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed email attempt counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        mails(&out).is_empty(),
        "delivered over an untrusted TLS connection"
    );
}
