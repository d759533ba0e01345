//! Authentication and TLS through the real binary: requests without a token
//! or with a wrong one get 401 and touch nothing; TLS handshakes succeed with
//! the right CA and fail with another.

use std::path::Path;
use std::time::Duration;

use vigil_e2e::certs::{make_ca, make_server_cert};
use vigil_e2e::{free_port, now_ms, series_request, spawn_vigil_serve, wait_ready};
use vigil_wire::remote_write as rw;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write file");
}

#[test]
fn tokens_guard_ingest_read_and_admin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(&d.join("agent-1.token"), "ingest-secret-1\n");
    write(&d.join("read.token"), "read-secret");
    write(&d.join("admin.token"), "admin-secret");
    let cfg = d.join("vigil.yml");
    write(
        &cfg,
        &format!(
            "auth:\n  ingest_token_files: [{}]\n  read_token_file: {}\n  admin_token_file: {}\n",
            d.join("agent-1.token").display(),
            d.join("read.token").display(),
            d.join("admin.token").display()
        ),
    );
    let port = free_port();
    let _vigil = spawn_vigil_serve(&cfg, port, &d.join("data")).expect("starts");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/-/ready"), Duration::from_secs(60)).expect("ready without a token");
    let client = reqwest::blocking::Client::new();
    let body = rw::encode_write_request(&series_request(
        &[("__name__", "guarded")],
        &[(now_ms(), 1.0)],
    ));
    let write = |token: Option<&str>| {
        let mut r = client
            .post(format!("{base}/api/v1/write"))
            .header("Content-Encoding", "snappy")
            .body(body.clone());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().expect("send").status().as_u16()
    };
    assert_eq!(write(None), 401);
    assert_eq!(write(Some("wrong")), 401);
    assert_eq!(write(Some("read-secret")), 401);
    let query = |token: Option<&str>| {
        let mut r = client.get(format!("{base}/api/v1/series?match[]=guarded"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().expect("send")
    };
    assert_eq!(query(None).status().as_u16(), 401);
    assert_eq!(query(Some("ingest-secret-1")).status().as_u16(), 401);
    // Nothing was stored by the refused writes.
    let v: serde_json::Value = query(Some("read-secret")).json().expect("json");
    assert_eq!(v["data"], serde_json::json!([]));
    assert_eq!(write(Some("ingest-secret-1")), 204);
    let v: serde_json::Value = query(Some("admin-secret")).json().expect("json");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(1));
    let reload = |token: &str| {
        client
            .post(format!("{base}/-/reload"))
            .bearer_auth(token)
            .send()
            .expect("send")
            .status()
            .as_u16()
    };
    assert_eq!(reload("read-secret"), 401);
}

#[test]
fn tls_handshake_needs_the_right_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    make_ca(d, "good");
    make_ca(d, "other");
    make_server_cert(d, "good");
    let cfg = d.join("vigil.yml");
    write(
        &cfg,
        &format!(
            "tls:\n  cert_file: {}\n  key_file: {}\n",
            d.join("server.pem").display(),
            d.join("server.key").display()
        ),
    );
    let port = free_port();
    let _vigil = spawn_vigil_serve(&cfg, port, &d.join("data")).expect("starts");
    let client_with = |ca: &str| {
        let pem = std::fs::read(d.join(format!("{ca}-ca.pem"))).expect("ca");
        reqwest::blocking::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("pem")])
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client")
    };
    let good = client_with("good");
    let url = format!("https://127.0.0.1:{port}/-/healthy");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match good.get(&url).send() {
            Ok(r) => {
                assert_eq!(r.status().as_u16(), 200);
                break;
            }
            Err(e) if std::time::Instant::now() > deadline => {
                panic!("TLS with the right CA failed: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    assert!(
        client_with("other").get(&url).send().is_err(),
        "a client trusting another CA must fail the handshake"
    );
    // Plain HTTP on the TLS port gets no answer.
    assert!(reqwest::blocking::get(format!("http://127.0.0.1:{port}/-/healthy")).is_err());
}
