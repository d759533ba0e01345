//! Pushover through Alertmanager 0.25 and Vigil. Alertmanager 0.25 has no
//! setting for Pushover's endpoint (it always calls
//! `https://api.pushover.net/1/messages.json`), so each system is given an
//! `http_config.proxy_url` pointing at a local intercepting proxy that
//! answers `CONNECT` and terminates TLS with a certificate for
//! `api.pushover.net` signed by a test CA the configuration trusts
//! (`tls_config.ca_file`). The requests that arrive are compared.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::receivers_parity::{Req, alerts, view};
use crate::{post_alerts, start_alertmanager, start_vigil, wait_for};

/// A CA and a leaf certificate for `api.pushover.net`, made with openssl.
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=vigil test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=api.pushover.net",
    ]);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:api.pushover.net\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
}

/// Reads up to the blank line ending an HTTP head; `None` at EOF.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    while !buf.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        match s.read(&mut b).await {
            Ok(1) => buf.push(b[0]),
            _ => return None,
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&buf).to_string())
}

/// An intercepting HTTPS proxy recording what its clients send.
async fn start_mitm(
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
) -> (String, Arc<Mutex<Vec<Req>>>) {
    let reqs: Arc<Mutex<Vec<Req>>> = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let seen = Arc::clone(&reqs);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let Some(head) = read_head(&mut tcp).await else {
                    return;
                };
                if !head.starts_with("CONNECT api.pushover.net:443 ") {
                    let _ = tcp.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
                    return;
                }
                if tcp
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                while let Some(head) = read_head(&mut s).await {
                    let mut lines = head.split("\r\n");
                    let first: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
                    let mut headers = HeaderMap::new();
                    for l in lines.filter(|l| !l.is_empty()) {
                        if let Some((k, v)) = l.split_once(':')
                            && let (Ok(k), Ok(v)) = (
                                HeaderName::from_bytes(k.trim().as_bytes()),
                                HeaderValue::from_str(v.trim()),
                            )
                        {
                            headers.append(k, v);
                        }
                    }
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; len];
                    if s.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let target = first.get(1).copied().unwrap_or("/");
                    let (path, query) = target.split_once('?').unwrap_or((target, ""));
                    seen.lock().push(Req {
                        method: first.first().copied().unwrap_or("").to_string(),
                        raw_path: path.to_string(),
                        path: path.to_string(),
                        query: query.to_string(),
                        headers,
                        body: String::from_utf8_lossy(&body).to_string(),
                    });
                    // Pushover's answer to an accepted message.
                    let answer = r#"{"status":1,"request":"647d2300-702c-4b38-8b2f-d56326ae460b"}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = s.flush().await;
                }
            });
        }
    });
    (format!("http://{addr}"), reqs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushover_matches_alertmanager() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_certs(dir.path());
    let tls = vigil_tls::server_config(
        &dir.path().join("leaf.pem"),
        &dir.path().join("leaf.key"),
        None,
    )
    .expect("server TLS config");
    let (am_proxy, am_reqs) = start_mitm(Arc::clone(&tls)).await;
    let (vigil_proxy, vigil_reqs) = start_mitm(tls).await;
    // group_wait is longer than the alerts' age (2 s, see `alerts`): for an
    // alert older than group_wait Alertmanager flushes the group at once,
    // and on a loaded machine between the two alerts of one request.
    let config = |proxy: &str| {
        format!(
            "route:\n  receiver: r\n  group_by: [alertname]\n  group_wait: 6s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: r\n    pushover_configs:\n      - user_key: uQiRzpo4DXghDmr9QzzfQu27cmVRsG\n        token: azGDORePK8gMaC0QOYAMyEEuzJnyUi\n        url_title: Open\n        sound: siren\n        http_config:\n          proxy_url: {proxy}\n          tls_config: {{ca_file: {ca}}}\n",
            ca = dir.path().join("ca.pem").display()
        )
    };
    let am = start_alertmanager(&config(&am_proxy), dir.path()).await;
    let vigil = start_vigil(&config(&vigil_proxy), dir.path(), &[]).await;
    for (step, resolved) in [(1, false), (2, true)] {
        let now = chrono::Utc::now();
        post_alerts(&am.url, alerts(now, resolved)).await;
        post_alerts(&vigil.url, alerts(now, resolved)).await;
        wait_for(Duration::from_secs(20), || {
            (am_reqs.lock().len() >= step && vigil_reqs.lock().len() >= step).then_some(())
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "both deliver notification {step}: am {} vigil {}",
                am_reqs.lock().len(),
                vigil_reqs.lock().len()
            )
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a: Vec<Value> = am_reqs.lock().iter().map(view).collect();
    let v: Vec<Value> = vigil_reqs.lock().iter().map(view).collect();
    assert_eq!(a.len(), 2, "firing and resolved: {a:#?}");
    assert_eq!(a[0]["path"], "/1/messages.json");
    assert_eq!(a[0]["query"]["priority"], "2", "firing is an emergency");
    assert_eq!(a[1]["query"]["priority"], "0");
    assert_eq!(
        serde_json::to_string_pretty(&v).expect("json"),
        serde_json::to_string_pretty(&a).expect("json"),
        "Vigil's Pushover requests (left) differ from Alertmanager 0.25's (right)"
    );
}
