//! Shared pieces of the side-by-side benchmark binaries (`src/bin/bench-*.rs`):
//! the real Prometheus 2.42 with its remote_write receiver, pushing
//! pre-encoded remote_write bodies to a server, and reading the figures a
//! benchmark reports (peak RSS, self-metrics, bytes on disk, load average).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::{Proc, free_port, wait_ready};

/// Debian's Prometheus 2.42.
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

/// A running Prometheus with no scrape targets and the remote_write
/// receiver on, on a free port, storing under `<dir>/prom`.
pub struct Prometheus {
    pub proc: Proc,
    pub base: String,
    pub data: PathBuf,
}

impl Prometheus {
    pub fn start(dir: &Path) -> anyhow::Result<Prometheus> {
        if !Path::new(PROMETHEUS_BIN).exists() {
            bail!("{PROMETHEUS_BIN} is missing: apt-get install prometheus");
        }
        let port = free_port();
        let data = dir.join("prom");
        let cfg = dir.join("prometheus.yml");
        std::fs::write(
            &cfg,
            "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
        )?;
        let proc = Proc::spawn(
            "prometheus",
            Command::new(PROMETHEUS_BIN)
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg("--storage.tsdb.retention.time=15d")
                .arg("--web.enable-remote-write-receiver")
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&format!("{base}/-/ready"), Duration::from_secs(60))?;
        Ok(Prometheus { proc, base, data })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Prometheus's own `/metrics` text.
    pub fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::blocking::get(self.url("/metrics"))?.text()?)
    }
}

/// Debian's VictoriaMetrics 1.79 (single-node).
pub const VICTORIA_METRICS_BIN: &str = "/usr/bin/victoria-metrics";

/// A running single-node VictoriaMetrics on a free port, storing under
/// `<dir>/vm`; remote_write is accepted at `/api/v1/write`.
pub struct VictoriaMetrics {
    pub proc: Proc,
    pub base: String,
    pub data: PathBuf,
}

impl VictoriaMetrics {
    pub fn start(dir: &Path) -> anyhow::Result<VictoriaMetrics> {
        Self::start_with(dir, &[])
    }

    /// [`VictoriaMetrics::start`] with extra command-line flags (e.g.
    /// `-search.disableCache` for timing queries, not its result cache).
    pub fn start_with(dir: &Path, flags: &[&str]) -> anyhow::Result<VictoriaMetrics> {
        if !Path::new(VICTORIA_METRICS_BIN).exists() {
            bail!("{VICTORIA_METRICS_BIN} is missing: apt-get install victoria-metrics");
        }
        let port = free_port();
        let data = dir.join("vm");
        let proc = Proc::spawn(
            "victoria-metrics",
            Command::new(VICTORIA_METRICS_BIN)
                .arg(format!("-storageDataPath={}", data.display()))
                .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                .arg("-retentionPeriod=100y")
                .args(flags)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&format!("{base}/health"), Duration::from_secs(60))?;
        Ok(VictoriaMetrics { proc, base, data })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// VictoriaMetrics' own `/metrics` text.
    pub fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::blocking::get(self.url("/metrics"))?.text()?)
    }

    /// Makes buffered rows searchable (VictoriaMetrics answers a write
    /// before its rows reach a searchable part).
    pub fn force_flush(&self) -> anyhow::Result<()> {
        let r = reqwest::blocking::get(self.url("/internal/force_flush"))?;
        if !r.status().is_success() {
            bail!("force_flush answered {}", r.status());
        }
        Ok(())
    }

    /// Waits until VictoriaMetrics has stored `rows` rows
    /// (`vm_rows_added_to_storage_total`), flushing its buffers so they are
    /// searchable; answers how many it holds when `timeout` ran out first.
    pub fn wait_rows_stored(&self, rows: u64, timeout: Duration) -> anyhow::Result<f64> {
        let deadline = Instant::now() + timeout;
        self.force_flush()?;
        loop {
            let added =
                metric_value(&self.metrics()?, "vm_rows_added_to_storage_total").unwrap_or(0.0);
            if added >= rows as f64 || Instant::now() > deadline {
                // Rows counted after the first flush may still sit in a
                // buffer that is not searchable yet.
                self.force_flush()?;
                return Ok(added);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Bytes of its stored data: `data/` and `indexdb/`, not the
    /// rebuildable `cache/`.
    pub fn stored_bytes(&self) -> u64 {
        dir_size(&self.data.join("data"), &[]) + dir_size(&self.data.join("indexdb"), &[])
    }
}

/// A small deterministic generator for synthetic workloads.
pub fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// Posts every sender's bodies in order, the senders concurrently; returns
/// the wall time. Senders run independently, so this suits data recent
/// enough that no sender falls behind a receiver's out-of-bounds window.
pub fn push_concurrent(url: &str, per_sender: &Arc<Vec<Vec<Vec<u8>>>>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut handles = Vec::new();
    for sender in 0..per_sender.len() {
        let bodies = per_sender.clone();
        let url = url.to_string();
        handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let client = sender_client()?;
            for body in &bodies[sender] {
                post_ok(&client, &url, body)?;
            }
            Ok(())
        }));
    }
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    }
    Ok(started.elapsed())
}

/// Posts the rounds one after the other, each round's bodies spread over
/// `senders` concurrent senders; returns the wall time. Keeping rounds in
/// time order matters for long histories: Prometheus's head refuses samples
/// older than an hour before its newest one ("out of bounds").
pub fn push_rounds(url: &str, rounds: &[Vec<Vec<u8>>], senders: usize) -> anyhow::Result<Duration> {
    let senders = senders.max(1);
    let started = Instant::now();
    for round in rounds {
        std::thread::scope(|s| -> anyhow::Result<()> {
            let handles: Vec<_> = (0..senders)
                .map(|k| {
                    s.spawn(move || -> anyhow::Result<()> {
                        let client = sender_client()?;
                        for body in round.iter().skip(k).step_by(senders) {
                            post_ok(&client, url, body)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
            }
            Ok(())
        })?;
    }
    Ok(started.elapsed())
}

/// One sender's HTTP client, kept for all of its requests: Prometheus's
/// remote_write shards keep their connections open, and a client (its
/// runtime thread and a new connection) per request cost the benchmark
/// more CPU than the receivers it measures.
fn sender_client() -> anyhow::Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?)
}

fn post_ok(client: &reqwest::blocking::Client, url: &str, body: &[u8]) -> anyhow::Result<()> {
    let r = client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body.to_vec())
        .send()?;
    let status = r.status().as_u16();
    if !(200..300).contains(&status) {
        bail!("{url} answered {status}: {}", r.text().unwrap_or_default());
    }
    Ok(())
}

/// The peak resident set of a process (VmHWM), 0 if unknown.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used so far, from
/// `/proc/PID/stat`: on a shared machine, work per sample is a steadier
/// figure than wall-clock rates, which follow the other load.
pub fn cpu_seconds(pid: u32) -> f64 {
    // /proc reports times in USER_HZ, which Linux fixes at 100 on every
    // architecture Debian ships (the kernel converts from its own HZ).
    let ticks = 100.0;
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which may hold spaces: state is
            // field 3, utime 14 and stime 15.
            let rest = s.get(s.rfind(')')? + 2..)?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .unwrap_or(f64::NAN)
}

/// Bytes of every file under `path`, skipping entries named in `skip`.
pub fn dir_size(path: &Path, skip: &[&str]) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if skip.contains(&name.as_str()) {
                continue;
            }
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path(), skip),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The value of an unlabelled metric in a text exposition.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The 1, 5 and 15 minute load averages as `/proc/loadavg` shows them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_reads_unlabelled_lines_only() {
        let text = "# HELP x y\nfoo_total{a=\"1\"} 3\nfoo_total 7.5\nfoo_total_bar 9\n";
        assert_eq!(metric_value(text, "foo_total"), Some(7.5));
        assert_eq!(metric_value(text, "missing"), None);
    }
}
