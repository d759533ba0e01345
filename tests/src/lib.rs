//! Shared helpers for Vigil's end-to-end tests: locating the real binaries,
//! running them on free loopback ports, and speaking the wire formats.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The path of a workspace binary built with the same profile as this test,
/// building it first if it is missing.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/<profile>/deps/<test> or target/<profile>/<bench binary>
    // → target/<profile>/<name>
    let parent = exe.parent().context("executable has no directory")?;
    let profile_dir = if parent.file_name().is_some_and(|n| n == "deps") {
        parent
            .parent()
            .context("test executable has no target directory")?
    } else {
        parent
    };
    let path = profile_dir.join(name);
    if !path.exists() {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "--bin", name])
            .current_dir(workspace_root());
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --bin {name} failed");
        }
    }
    Ok(path)
}

/// Shared pieces of the side-by-side benchmark binaries.
pub mod bench;
/// Throw-away CAs and certificates made with openssl, for TLS tests.
pub mod certs;
/// A free TCP port on 127.0.0.1.
pub mod ports;
/// A stub HTTP server with a changeable answer (scrape targets, HTTP SD).
pub mod stub;
/// An HTTP receiver keeping the webhook payloads posted to it.
pub mod webhook;

pub use ports::{bind_local, free_port};
pub use webhook::webhook_receiver;

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<Proc> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            child,
            name: name.to_string(),
        })
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a graceful exit.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        // `unsafe` is forbidden in the workspace, so signal through kill(1).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.kill9();
                bail!("{} did not exit within {timeout:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `vigil serve --config CONFIG --listen 127.0.0.1:PORT --data-dir DATA`.
pub fn spawn_vigil_serve(config: &Path, port: u16, data_dir: &Path) -> anyhow::Result<Proc> {
    Proc::spawn(
        "vigil",
        Command::new(binary("vigil")?)
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir),
    )
}

/// Polls `url` until it answers 200 or the timeout passes.
pub fn wait_ready(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(url).send()
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} not ready within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `vigil serve` on a free port with its own data directory.
pub struct Collector {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl Collector {
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<Collector> {
        let port = free_port();
        Self::start_on(data_dir, port, extra_args)
    }

    pub fn start_on(data_dir: &Path, port: u16, extra_args: &[&str]) -> anyhow::Result<Collector> {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut cmd = Command::new(binary("vigil")?);
        cmd.arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        let proc = Proc::spawn("vigil", &mut cmd)?;
        let c = Collector {
            proc,
            addr,
            data_dir: data_dir.to_path_buf(),
        };
        wait_ready(&c.url("/-/ready"), Duration::from_secs(60))?;
        Ok(c)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET a Prometheus API path and return the parsed JSON envelope.
    pub fn get_json(&self, path_and_query: &str) -> anyhow::Result<serde_json::Value> {
        let r = reqwest::blocking::get(self.url(path_and_query))?;
        Ok(r.json()?)
    }

    /// Pushes a remote_write request; returns the HTTP status and body.
    pub fn remote_write(
        &self,
        req: &vigil_wire::remote_write::WriteRequest,
    ) -> anyhow::Result<(u16, String)> {
        post_remote_write(
            &self.url("/api/v1/write"),
            vigil_wire::remote_write::encode_write_request(req),
        )
    }
}

/// Posts an already-encoded remote_write body.
pub fn post_remote_write(url: &str, body: Vec<u8>) -> anyhow::Result<(u16, String)> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let r = client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()?;
    let status = r.status().as_u16();
    Ok((status, r.text().unwrap_or_default()))
}

/// Builds a one-series remote_write request.
pub fn series_request(
    labels: &[(&str, &str)],
    samples: &[(i64, f64)],
) -> vigil_wire::remote_write::WriteRequest {
    use vigil_wire::remote_write as rw;
    rw::WriteRequest {
        timeseries: vec![rw::TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| rw::Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|(t, v)| rw::Sample {
                    timestamp: *t,
                    value: *v,
                })
                .collect(),
            exemplars: vec![],
        }],
        metadata: vec![],
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The `ExecStart=` of a systemd unit installed under `dest`
/// (`dest/lib/systemd/system/<unit>`), split into words, with the absolute
/// paths it names moved under `dest` (and `/var/lib/...` under `state`), so
/// the command can run as the unit would, without systemd.
pub fn unit_exec_start(dest: &Path, unit: &str, state: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dest.join("lib/systemd/system").join(unit))
        .unwrap_or_else(|e| panic!("installed unit {unit}: {e}"));
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("{unit} has ExecStart="));
    line.split_whitespace()
        .map(|w| {
            if let Some(rest) = w.strip_prefix("/var/lib/") {
                state.join(rest).to_string_lossy().into_owned()
            } else if let Some(rest) = w.strip_prefix('/') {
                dest.join(rest).to_string_lossy().into_owned()
            } else {
                w.to_string()
            }
        })
        .collect()
}
