//! Helpers shared by the agent's integration tests: a real remote_write
//! receiver that can be switched to failing or taken down, the agent binary
//! as a child process, and small HTTP helpers.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_wire::remote_write::decode_write_request;

/// A sample as received: series (sorted labels) → (timestamp, value) list.
pub type Received = BTreeMap<Vec<(String, String)>, Vec<(i64, f64)>>;

/// A remote_write receiver on 127.0.0.1 that decodes with
/// `vigil_wire::remote_write::decode_write_request` and records samples.
pub struct Receiver {
    pub addr: SocketAddr,
    pub samples: Arc<Mutex<Received>>,
    /// HTTP status to answer with (204 = healthy).
    pub status: Arc<AtomicU16>,
    stop: Option<(CancellationToken, JoinHandle<()>)>,
}

async fn write(
    State((samples, status)): State<(Arc<Mutex<Received>>, Arc<AtomicU16>)>,
    body: Bytes,
) -> StatusCode {
    let code = status.load(Ordering::SeqCst);
    if code != 204 {
        return StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    }
    let Ok(req) = decode_write_request(&body, 64 << 20) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut s = samples.lock();
    for ts in req.timeseries {
        let mut key: Vec<(String, String)> =
            ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
        key.sort();
        let e = s.entry(key).or_default();
        e.extend(ts.samples.into_iter().map(|x| (x.timestamp, x.value)));
    }
    StatusCode::NO_CONTENT
}

impl Receiver {
    /// Starts on a free port.
    pub async fn start() -> Self {
        let mut r = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            samples: Arc::new(Mutex::new(BTreeMap::new())),
            status: Arc::new(AtomicU16::new(204)),
            stop: None,
        };
        r.up().await;
        r
    }

    /// (Re)starts serving on the same address.
    pub async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind receiver");
        self.addr = listener.local_addr().expect("receiver address");
        let app = axum::Router::new()
            .route("/api/v1/write", post(write))
            .with_state((self.samples.clone(), self.status.clone()));
        let token = CancellationToken::new();
        let t = token.clone();
        let h = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { t.cancelled().await })
                .await;
        });
        self.stop = Some((token, h));
    }

    /// Stops listening (connections refused).
    pub async fn down(&mut self) {
        if let Some((t, h)) = self.stop.take() {
            t.cancel();
            let _ = h.await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Timestamps received for the first series whose labels include all of
    /// `want`.
    pub fn timestamps(&self, want: &[(&str, &str)]) -> Vec<i64> {
        let s = self.samples.lock();
        s.iter()
            .find(|(k, _)| {
                want.iter()
                    .all(|(n, v)| k.iter().any(|(a, b)| a == n && b == v))
            })
            .map(|(_, v)| v.iter().map(|(t, _)| *t).collect())
            .unwrap_or_default()
    }
}

/// A free TCP port on 127.0.0.1 (bound and released).
#[path = "../../../tests/src/ports.rs"]
mod ports;
// Not every test binary that includes this module binds a listener itself.
#[allow(unused_imports)]
pub use ports::{bind_local, free_port};

/// The agent binary running as a child process.
pub struct AgentProc {
    pub child: Child,
    pub port: u16,
}

impl AgentProc {
    pub fn spawn(config_yaml: &str, dir: &Path, extra: &[&str]) -> Self {
        let port = free_port();
        let cfg = dir.join(format!("agent-{port}.yaml"));
        std::fs::write(&cfg, config_yaml).expect("write config");
        let log = std::fs::File::create(dir.join(format!("agent-{port}.log"))).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
            .arg("--config")
            .arg(&cfg)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn vigil-agent");
        Self { child, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits for `/-/healthy`.
    pub async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::get(self.url("/-/healthy")).await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("agent never became healthy");
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    assert!(status.success(), "agent exited with {status}");
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = self.child.kill();
                    panic!("agent did not exit within 20 s of SIGTERM");
                }
            }
        }
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// GET a text body.
pub async fn get_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

/// The value of the first sample named `name` whose labels include `want`.
pub fn metric(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let exp =
        vigil_wire::exposition::parse(text, &Default::default()).expect("agent /metrics parses");
    exp.samples
        .iter()
        .find(|s| {
            s.labels.metric_name() == Some(name)
                && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| s.value)
}

/// The sum of every sample named `name` whose labels include `want`.
pub fn sum(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    let exp =
        vigil_wire::exposition::parse(text, &Default::default()).expect("agent /metrics parses");
    exp.samples
        .iter()
        .filter(|s| {
            s.labels.metric_name() == Some(name)
                && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}
