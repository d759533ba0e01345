//! End-to-end tests through the `vigil-alertmanager` binary and real peers
//! (Alertmanager 0.25, amtool, aiosmtpd), all on 127.0.0.1 with free ports.

mod crash;
mod email;
mod extensions;
mod msteams_sms;
mod pagerduty;
mod parity;
mod pushover;
mod receivers;
mod receivers_parity;
mod silences;
mod timing;
mod verdicts;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use parking_lot::Mutex;
use serde_json::Value;

/// A free TCP port on 127.0.0.1 (bound then released).
#[path = "../../../tests/src/ports.rs"]
mod ports;
pub use ports::free_port;

/// Test certificates made with the openssl command line.
#[path = "../../../tests/src/certs.rs"]
#[allow(dead_code)]
mod certs;

/// A request seen by the capture server.
#[derive(Debug, Clone)]
pub struct Captured {
    pub path: String,
    pub body: Value,
    pub headers: HeaderMap,
    /// The status the server answered with.
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
}

type CaptureState = (Arc<Mutex<Vec<Captured>>>, Arc<AtomicU16>);

/// An HTTP server recording every POST; answers with a settable status.
pub struct Capture {
    pub url: String,
    reqs: Arc<Mutex<Vec<Captured>>>,
    status: Arc<AtomicU16>,
}

impl Capture {
    pub async fn start() -> Capture {
        let reqs: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let state = (Arc::clone(&reqs), Arc::clone(&status));
        let app = axum::Router::new()
            .fallback(
                |State((reqs, status)): State<CaptureState>,
                 uri: Uri,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let at = Instant::now();
                    let code = status.load(Ordering::SeqCst);
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    reqs.lock().push(Captured {
                        path: uri.path().to_string(),
                        body,
                        headers,
                        status: code,
                        at,
                    });
                    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
                },
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind capture server");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Capture {
            url: format!("http://{addr}"),
            reqs,
            status,
        }
    }

    pub fn set_status(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }

    /// Requests to `path` answered with 2xx.
    pub fn delivered(&self, path: &str) -> Vec<Captured> {
        self.reqs
            .lock()
            .iter()
            .filter(|r| r.path == path && r.status < 300)
            .cloned()
            .collect()
    }

    /// All requests to `path`, whatever the answer.
    pub fn all(&self, path: &str) -> Vec<Captured> {
        self.reqs
            .lock()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub url: String,
}

impl Proc {
    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

async fn wait_ready(url: &str, child: &mut Child) {
    let client = reqwest::Client::new();
    let ok = {
        let start = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{url}/-/ready")).send().await
                && r.status().is_success()
            {
                break true;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("process exited early: {status}");
            }
            if start.elapsed() > Duration::from_secs(20) {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(ok, "{url} did not become ready");
}

/// Starts `vigil-alertmanager` with a configuration and data directory.
pub async fn start_vigil(config: &str, dir: &Path, extra: &[&str]) -> Proc {
    let cfg = dir.join("vigil.yml");
    std::fs::write(&cfg, config).expect("write config");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil-alertmanager"))
        .arg("--config.file")
        .arg(&cfg)
        .arg("--web.listen-address")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--storage.path")
        .arg(dir.join("vigil-data"))
        .arg("--web.external-url")
        .arg("http://vigil.example")
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vigil-alertmanager");
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url, &mut child).await;
    Proc { child, url }
}

/// Starts the real Alertmanager 0.25, the oracle of the parity tests
/// (tests/run.sh installs it; a missing one fails the test).
pub async fn start_alertmanager(config: &str, dir: &Path) -> Proc {
    let bin = PathBuf::from("/usr/bin/prometheus-alertmanager");
    assert!(
        bin.exists(),
        "/usr/bin/prometheus-alertmanager is missing: apt-get install prometheus-alertmanager (tests/run.sh does)"
    );
    let cfg = dir.join("am.yml");
    std::fs::write(&cfg, config).expect("write config");
    let port = free_port();
    let mut child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg("--web.external-url=http://am.example")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn alertmanager");
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url, &mut child).await;
    Proc { child, url }
}

/// POSTs alerts to `/api/v2/alerts`.
pub async fn post_alerts(url: &str, alerts: Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v2/alerts"))
        .json(&alerts)
        .send()
        .await
        .expect("post alerts");
    assert!(r.status().is_success(), "post alerts: {}", r.status());
}
