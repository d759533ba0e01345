//! Soak run: a release `vigil serve` (default rule pack plus a rule that
//! fires and resolves on a schedule, an Alertmanager configuration
//! delivering to a webhook served here) and a `vigil-agent` (system
//! metrics, PostgreSQL and Redis when they answer on 127.0.0.1, the
//! collector's own `/metrics`, and a synthetic `/metrics` served here with
//! `--series` steady counters) run for `--duration` at a steady workload,
//! with a direct remote_write pusher of known sample counts and a light
//! query load beside them.
//!
//! Every 10 s it samples the resident set (`VmRSS`) and open file
//! descriptors (`/proc/PID/fd`) of both processes. At the end it checks
//! that no sample and no alert was lost — every pushed sample queryable
//! (`count_over_time` per series equals what was pushed), every scrape the
//! synthetic endpoint served stored for each of its series, every firing
//! and resolution of the scheduled alert delivered to the webhook — and
//! reports RSS and fds after warm-up, in the middle and at the end with the
//! slope per hour, as a markdown table on stdout (and in `--out FILE`).
//! Exits non-zero when a check fails.
//!
//! Run (documented, not in CI):
//! `cargo run --release -p vigil-e2e --bin soak -- [--duration 1h] [--out FILE]`
//! Other flags: `--series N` (synthetic counters, 1000), `--push-series N`
//! (remote-written series, 500), `--push-every D` (10s), `--scrape-every D`
//! (5s), `--flip-every D` (alert flips, 2m), `--dir DIR` (keep data and
//! logs there instead of a temporary directory).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use vigil_e2e::bench::load_average;
use vigil_e2e::{Proc, binary, free_port, now_ms, post_remote_write, wait_ready, workspace_root};
use vigil_wire::remote_write as rw;

/// How often RSS and fds are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How often the query load runs.
const QUERY_EVERY: Duration = Duration::from_secs(15);
const ALERT: &str = "SoakFlip";

struct Args {
    duration: Duration,
    out: Option<PathBuf>,
    series: usize,
    push_series: usize,
    push_every: Duration,
    scrape_every: Duration,
    flip_every: Duration,
    dir: Option<PathBuf>,
}

/// `1h`, `5m`, `90s`, `1h30m`, `500ms`.
fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        bail!("empty duration");
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .with_context(|| format!("duration {s:?}: missing unit"))?;
        let n: u64 = rest[..digits]
            .parse()
            .with_context(|| format!("duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => bail!("duration {s:?}: unknown unit {unit:?}"),
        };
    }
    Ok(total)
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        duration: Duration::from_secs(3600),
        out: None,
        series: 1000,
        push_series: 500,
        push_every: Duration::from_secs(10),
        scrape_every: Duration::from_secs(5),
        flip_every: Duration::from_secs(120),
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--duration" => a.duration = parse_duration(&value()?)?,
            "--out" => a.out = Some(value()?.into()),
            "--series" => a.series = value()?.parse()?,
            "--push-series" => a.push_series = value()?.parse()?,
            "--push-every" => a.push_every = parse_duration(&value()?)?,
            "--scrape-every" => a.scrape_every = parse_duration(&value()?)?,
            "--flip-every" => a.flip_every = parse_duration(&value()?)?,
            "--dir" => a.dir = Some(value()?.into()),
            "-h" | "--help" => {
                println!(
                    "soak [--duration 1h] [--out FILE] [--series 1000] [--push-series 500] \
                     [--push-every 10s] [--scrape-every 5s] [--flip-every 2m] [--dir DIR]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if a.series == 0 || a.push_series == 0 {
        bail!("--series and --push-series must be at least 1");
    }
    Ok(a)
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 server (std only) for the synthetic target and the
// webhook receiver: keep-alive, Content-Length bodies, one thread per
// connection — enough for the two local clients it serves.

type Handler = Arc<dyn Fn(&str, &str, &[u8]) -> (u16, Vec<u8>) + Send + Sync>;

fn serve_http(listener: TcpListener, handler: Handler) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(stream) = conn else { continue };
            let h = handler.clone();
            std::thread::spawn(move || {
                let _ = handle_connection(stream, &h);
            });
        }
    });
}

fn handle_connection(stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut len = 0usize;
        let mut close = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        let (status, resp) = handler(&method, &path, &body);
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            _ => "Service Unavailable",
        };
        write!(
            out,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
            resp.len()
        )?;
        out.write_all(&resp)?;
        out.flush()?;
        if close {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------
// The synthetic target: `series` counters that each grow by a fixed step
// per scrape, and the gauge the scheduled alert watches.

struct Target {
    series: usize,
    /// Responses served while serving (each stores one sample per series).
    served: AtomicU64,
    flip: AtomicBool,
    stopped: AtomicBool,
}

impl Target {
    fn body(&self) -> Option<Vec<u8>> {
        if self.stopped.load(Ordering::SeqCst) {
            return None;
        }
        let n = self.served.fetch_add(1, Ordering::SeqCst) + 1;
        let mut s = String::with_capacity(self.series * 48 + 256);
        s.push_str("# HELP soak_requests_total Synthetic steady counters.\n");
        s.push_str("# TYPE soak_requests_total counter\n");
        for i in 0..self.series {
            let step = (i % 7 + 1) as u64;
            s.push_str(&format!(
                "soak_requests_total{{series=\"{i}\"}} {}\n",
                n * step
            ));
        }
        s.push_str("# HELP soak_flip Flipped by the soak run to fire and resolve SoakFlip.\n");
        s.push_str("# TYPE soak_flip gauge\n");
        s.push_str(&format!(
            "soak_flip {}\n",
            u8::from(self.flip.load(Ordering::SeqCst))
        ));
        Some(s.into_bytes())
    }
}

// ---------------------------------------------------------------------------
// The webhook receiver: Alertmanager v4 JSON.

#[derive(Default)]
struct Deliveries {
    notifications: u64,
    /// `startsAt` of every SoakFlip episode seen firing / resolved.
    firing: BTreeSet<String>,
    resolved: BTreeSet<String>,
    /// Other alerts delivered (the default rule pack on this host).
    others: BTreeSet<String>,
}

impl Deliveries {
    fn record(&mut self, body: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        self.notifications += 1;
        for a in v["alerts"].as_array().into_iter().flatten() {
            let name = a["labels"]["alertname"].as_str().unwrap_or_default();
            let starts = a["startsAt"].as_str().unwrap_or_default().to_string();
            if name != ALERT {
                self.others.insert(name.to_string());
                continue;
            }
            match a["status"].as_str() {
                Some("firing") => {
                    self.firing.insert(starts);
                }
                Some("resolved") => {
                    self.resolved.insert(starts);
                }
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Resource samples.

#[derive(Clone, Copy)]
struct Usage {
    at: Duration,
    rss_kib: u64,
    fds: u64,
}

fn usage(pid: u32, at: Duration) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Usage { at, rss_kib, fds })
}

/// Least-squares slope of `y` over time, per hour.
fn slope_per_hour(samples: &[Usage], y: impl Fn(&Usage) -> f64) -> f64 {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return 0.0;
    }
    let xs: Vec<f64> = samples
        .iter()
        .map(|s| s.at.as_secs_f64() / 3600.0)
        .collect();
    let ys: Vec<f64> = samples.iter().map(&y).collect();
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let cov: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if var == 0.0 { 0.0 } else { cov / var }
}

struct Summary {
    start: Usage,
    middle: Usage,
    end: Usage,
    rss_slope_mib_h: f64,
    /// Over the second half only: growth that is still going on at the end,
    /// as opposed to caches and heads filling once after the start.
    rss_slope_late_mib_h: f64,
    rss_max_kib: u64,
    fd_slope_h: f64,
}

fn summarize(all: &[Usage], warmup: Duration) -> Option<Summary> {
    let after: Vec<Usage> = all.iter().copied().filter(|u| u.at >= warmup).collect();
    let start = *after.first()?;
    let end = *after.last()?;
    let mid_at = (start.at + end.at) / 2;
    let middle = *after
        .iter()
        .min_by_key(|u| u.at.abs_diff(mid_at))
        .unwrap_or(&start);
    // `after` is in time order, so the second half is a suffix of it.
    let late = &after[after.partition_point(|u| u.at < mid_at)..];
    let rss_mib = |u: &Usage| u.rss_kib as f64 / 1024.0;
    Some(Summary {
        start,
        middle,
        end,
        rss_slope_mib_h: slope_per_hour(&after, rss_mib),
        rss_slope_late_mib_h: slope_per_hour(late, rss_mib),
        rss_max_kib: after
            .iter()
            .map(|u| u.rss_kib)
            .max()
            .unwrap_or(start.rss_kib),
        fd_slope_h: slope_per_hour(&after, |u| u.fds as f64),
    })
}

// ---------------------------------------------------------------------------

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn reachable(addr: &str) -> bool {
    addr.parse()
        .ok()
        .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).ok())
        .is_some()
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<Stdio> {
    Ok(std::fs::File::create(dir.join(name))?.into())
}

/// `GET /api/v1/query`, the `data.result` array.
fn instant_query(
    client: &reqwest::blocking::Client,
    base: &str,
    q: &str,
    time_s: f64,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let v: serde_json::Value = client
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", q), ("time", &format!("{time_s:.3}"))])
        .send()?
        .json()?;
    if v["status"] != "success" {
        bail!("query {q}: {v}");
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// `{label value → sample value}` of an instant-vector result.
fn by_label(result: &[serde_json::Value], label: &str) -> BTreeMap<String, f64> {
    result
        .iter()
        .filter_map(|r| {
            let k = r["metric"][label].as_str()?.to_string();
            let v = r["value"][1].as_str()?.parse().ok()?;
            Some((k, v))
        })
        .collect()
}

fn agent_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let tmp = tempfile::tempdir()?;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let root = workspace_root();
    let started_wall = now_ms();
    let load_before = load_average();

    // Synthetic target and webhook receiver, on this process.
    let target = Arc::new(Target {
        series: args.series,
        served: AtomicU64::new(0),
        flip: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
    });
    let target_port = free_port();
    {
        let t = target.clone();
        serve_http(
            TcpListener::bind(("127.0.0.1", target_port)).context("binding the target")?,
            Arc::new(move |_, path, _| match (path, t.body()) {
                ("/metrics", Some(b)) => (200, b),
                ("/metrics", None) => (503, Vec::new()),
                _ => (404, Vec::new()),
            }),
        );
    }
    let deliveries = Arc::new(Mutex::new(Deliveries::default()));
    let hook_port = free_port();
    {
        let d = deliveries.clone();
        serve_http(
            TcpListener::bind(("127.0.0.1", hook_port)).context("binding the webhook")?,
            Arc::new(move |method, _, body| {
                if method == "POST"
                    && let Ok(mut d) = d.lock()
                {
                    d.record(body);
                }
                (200, Vec::new())
            }),
        );
    }

    // The collector.
    let cport = free_port();
    let base = format!("http://127.0.0.1:{cport}");
    write_file(
        &dir.join("soak.rules.yml"),
        &format!(
            "groups:\n  - name: soak\n    interval: 5s\n    rules:\n      - alert: {ALERT}\n        \
             expr: soak_flip == 1\n        labels: {{severity: info}}\n        \
             annotations: {{summary: flipped by the soak run}}\n"
        ),
    )?;
    write_file(
        &dir.join("alerting.yml"),
        &format!(
            "route:\n  receiver: soak\n  group_by: [alertname]\n  group_wait: 1s\n  \
             group_interval: 5s\n  repeat_interval: 4h\nreceivers:\n  - name: soak\n    \
             webhook_configs:\n      - url: http://127.0.0.1:{hook_port}/hook\n        \
             send_resolved: true\n"
        ),
    )?;
    write_file(
        &dir.join("vigil.yml"),
        &format!(
            "listen: 127.0.0.1:{cport}\ndata_dir: {}\nrules:\n  files:\n    - '{}'\n    - '{}'\n  \
             evaluation_interval: 15s\nalerting_config: {}\n",
            dir.join("vigil-data").display(),
            root.join("rules/*.rules.yml").display(),
            dir.join("soak.rules.yml").display(),
            dir.join("alerting.yml").display(),
        ),
    )?;
    let mut vigil = Proc::spawn(
        "vigil",
        Command::new(binary("vigil")?)
            .arg("serve")
            .arg("--config")
            .arg(dir.join("vigil.yml"))
            .env("RUST_LOG", "warn")
            .stdout(log_file(&dir, "vigil.log")?)
            .stderr(log_file(&dir, "vigil.log.err")?),
    )?;
    wait_ready(&format!("{base}/-/ready"), Duration::from_secs(120))?;

    // The agent.
    let aport = free_port();
    let mut databases = Vec::new();
    let mut agent_cfg = format!(
        "listen: 127.0.0.1:{aport}\ndata_dir: {}\ninterval: 15s\nremote_write:\n  url: {base}/api/v1/write\n",
        dir.join("agent-data").display()
    );
    if reachable("127.0.0.1:5432") {
        databases.push("PostgreSQL");
        agent_cfg.push_str(
            "postgres:\n  - dsn: host=127.0.0.1 port=5432 user=postgres dbname=postgres sslmode=disable\n",
        );
    }
    if reachable("127.0.0.1:6379") {
        databases.push("Redis");
        agent_cfg.push_str("redis:\n  - url: redis://127.0.0.1:6379\n");
    }
    agent_cfg.push_str(&format!(
        "scrape:\n  - job: soak\n    targets: ['127.0.0.1:{target_port}']\n    interval: {}ms\n    \
         timeout: {}ms\n  - job: vigil\n    targets: ['127.0.0.1:{cport}']\n",
        args.scrape_every.as_millis(),
        (args.scrape_every.as_millis() * 4 / 5).max(100),
    ));
    write_file(&dir.join("agent.yml"), &agent_cfg)?;
    let mut agent = Proc::spawn(
        "vigil-agent",
        Command::new(binary("vigil-agent")?)
            .arg("--config")
            .arg(dir.join("agent.yml"))
            .env("RUST_LOG", "warn")
            .stdout(log_file(&dir, "agent.log")?)
            .stderr(log_file(&dir, "agent.log.err")?),
    )?;
    let agent_url = format!("http://127.0.0.1:{aport}");
    wait_ready(&format!("{agent_url}/-/healthy"), Duration::from_secs(60))?;
    let (vigil_pid, agent_pid) = (vigil.child.id(), agent.child.id());
    eprintln!(
        "soak: {} in {}; collector {base} (pid {vigil_pid}), agent {agent_url} (pid {agent_pid})",
        humanize(args.duration),
        dir.display()
    );

    let stop = Arc::new(AtomicBool::new(false));

    // The direct remote_write pusher: one sample per series per round,
    // counted once acknowledged (a failed round is re-sent unchanged, which
    // the collector accepts idempotently).
    let pushed_rounds = Arc::new(AtomicU64::new(0));
    let push_errors = Arc::new(AtomicU64::new(0));
    let pusher = {
        let (stop, rounds, errors) = (stop.clone(), pushed_rounds.clone(), push_errors.clone());
        let url = format!("{base}/api/v1/write");
        let (n, every) = (args.push_series, args.push_every);
        std::thread::spawn(move || {
            let mut next = Instant::now();
            let mut round = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let ts = now_ms();
                round += 1;
                let req = rw::WriteRequest {
                    timeseries: (0..n)
                        .map(|i| rw::TimeSeries {
                            labels: vec![
                                rw::Label {
                                    name: "__name__".into(),
                                    value: "soak_pushed".into(),
                                },
                                rw::Label {
                                    name: "series".into(),
                                    value: i.to_string(),
                                },
                            ],
                            samples: vec![rw::Sample {
                                timestamp: ts,
                                value: round as f64,
                            }],
                            exemplars: vec![],
                        })
                        .collect(),
                    metadata: vec![],
                };
                let body = rw::encode_write_request(&req);
                loop {
                    match post_remote_write(&url, body.clone()) {
                        Ok((s, _)) if (200..300).contains(&s) => {
                            rounds.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        Ok((s, msg)) if (400..500).contains(&s) && s != 429 => {
                            errors.fetch_add(1, Ordering::SeqCst);
                            eprintln!("soak: push refused: {s} {msg}");
                            break;
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                }
                next += every;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
        })
    };

    // The query load: what a dashboard refresh asks every 15 s.
    let queries_run = Arc::new(AtomicU64::new(0));
    let query_errors = Arc::new(AtomicU64::new(0));
    let querier = {
        let (stop, run, errors) = (stop.clone(), queries_run.clone(), query_errors.clone());
        let base = base.clone();
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build();
            let Ok(client) = client else { return };
            let qs = [
                "sum(rate(soak_requests_total[1m]))",
                "sum by (job) (up)",
                "topk(5, rate(node_cpu_seconds_total[5m]))",
                "count(soak_pushed)",
            ];
            while !stop.load(Ordering::SeqCst) {
                let end = now_ms() as f64 / 1000.0;
                for q in qs {
                    let ok = client
                        .get(format!("{base}/api/v1/query_range"))
                        .query(&[
                            ("query", q),
                            ("start", &format!("{:.3}", end - 900.0)),
                            ("end", &format!("{end:.3}")),
                            ("step", "15"),
                        ])
                        .send()
                        .map(|r| r.status().is_success())
                        .unwrap_or(false);
                    run.fetch_add(1, Ordering::SeqCst);
                    if !ok {
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let until = Instant::now() + QUERY_EVERY;
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        })
    };

    // Main loop: flip the alert's gauge on schedule and sample resources.
    let t0 = Instant::now();
    let warmup = (args.duration / 5).min(Duration::from_secs(600));
    let mut samples: BTreeMap<&str, Vec<Usage>> = BTreeMap::new();
    let mut firings_flipped = 0u64;
    let mut next_flip = t0 + args.flip_every;
    let mut next_sample = t0;
    let mut next_progress = t0 + Duration::from_secs(60);
    while t0.elapsed() < args.duration {
        let now = Instant::now();
        if now >= next_flip {
            let was = target.flip.fetch_xor(true, Ordering::SeqCst);
            if !was {
                firings_flipped += 1;
            }
            next_flip += args.flip_every;
        }
        if now >= next_sample {
            for (name, pid) in [("vigil", vigil_pid), ("vigil-agent", agent_pid)] {
                match usage(pid, t0.elapsed()) {
                    Some(u) => samples.entry(name).or_default().push(u),
                    None => bail!("{name} (pid {pid}) is gone; see {}", dir.display()),
                }
            }
            next_sample += SAMPLE_EVERY;
        }
        if now >= next_progress {
            let last = |n: &str| samples.get(n).and_then(|v| v.last().copied());
            if let (Some(v), Some(a)) = (last("vigil"), last("vigil-agent")) {
                eprintln!(
                    "soak: {:>5}s vigil {:.1} MiB {} fds, agent {:.1} MiB {} fds, pushed rounds {}, scrapes {}",
                    t0.elapsed().as_secs(),
                    v.rss_kib as f64 / 1024.0,
                    v.fds,
                    a.rss_kib as f64 / 1024.0,
                    a.fds,
                    pushed_rounds.load(Ordering::SeqCst),
                    target.served.load(Ordering::SeqCst)
                );
            }
            next_progress += Duration::from_secs(60);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // The last sample of the steady phase: before the wind-down and the
    // checks' large queries, which are not part of the workload.
    for (name, pid) in [("vigil", vigil_pid), ("vigil-agent", agent_pid)] {
        if let Some(u) = usage(pid, t0.elapsed()) {
            samples.entry(name).or_default().push(u);
        }
    }
    let ran_for = t0.elapsed();

    // Wind down: stop the load, resolve the alert, stop the target, let the
    // agent's buffer drain, then count.
    stop.store(true, Ordering::SeqCst);
    let _ = pusher.join();
    let _ = querier.join();
    target.flip.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let done = deliveries
            .lock()
            .map(|d| {
                d.firing.len() as u64 >= firings_flipped
                    && d.resolved.len() as u64 >= firings_flipped
            })
            .unwrap_or(false);
        if done || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    target.stopped.store(true, Ordering::SeqCst);
    let served = target.served.load(Ordering::SeqCst);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    // Drained when every collected sample was sent, rejected or dropped.
    let deadline = Instant::now() + Duration::from_secs(120);
    let agent_text = loop {
        std::thread::sleep(args.scrape_every + Duration::from_secs(1));
        let text = client
            .get(format!("{agent_url}/metrics"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        if agent_metric(&text, "vigil_agent_buffer_samples") == 0.0 || Instant::now() > deadline {
            break text;
        }
    };
    let rejected = agent_metric(&agent_text, "vigil_agent_samples_rejected_total");
    let dropped = agent_metric(&agent_text, "vigil_agent_buffer_dropped_samples_total")
        + agent_metric(&agent_text, "vigil_agent_buffer_write_failures_total");

    let at = now_ms() as f64 / 1000.0;
    let range = ((now_ms() - started_wall) / 1000 + 120).max(60);
    let pushed = by_label(
        &instant_query(
            &client,
            &base,
            &format!("count_over_time(soak_pushed[{range}s])"),
            at,
        )?,
        "series",
    );
    let rounds = pushed_rounds.load(Ordering::SeqCst);
    let pushed_ok =
        pushed.len() == args.push_series && pushed.values().all(|c| *c as u64 == rounds);
    let pushed_stored: f64 = pushed.values().sum();
    let scraped = by_label(
        &instant_query(
            &client,
            &base,
            &format!("count_over_time(soak_requests_total{{job=\"soak\"}}[{range}s])"),
            at,
        )?,
        "series",
    );
    let scraped_ok = scraped.len() == args.series && scraped.values().all(|c| *c as u64 == served);
    let scraped_min = scraped.values().copied().fold(f64::INFINITY, f64::min);
    let scraped_max = scraped.values().copied().fold(0.0, f64::max);
    let d = deliveries
        .lock()
        .map_err(|_| anyhow::anyhow!("webhook state poisoned"))?;
    let (fired, resolved) = (d.firing.len() as u64, d.resolved.len() as u64);
    let alerts_ok = fired == firings_flipped && resolved == firings_flipped;
    let others: Vec<&str> = d.others.iter().map(String::as_str).collect();

    let _ = agent.terminate(Duration::from_secs(30));
    let _ = vigil.terminate(Duration::from_secs(60));

    let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
    let mut out = String::new();
    out.push_str(&format!(
        "Soak: {} (warm-up {} excluded), {}; load average before {load_before}, after {}.\n\n",
        humanize(ran_for),
        humanize(warmup),
        date_utc(started_wall),
        load_average()
    ));
    out.push_str(&format!(
        "Workload: agent with system metrics{}, the collector's /metrics, and {} synthetic counters scraped every {}; \
         {} series remote-written every {}; default rule pack + {ALERT} flipped every {}; {} dashboard queries every {}s.\n\n",
        if databases.is_empty() {
            String::new()
        } else {
            format!(", {}", databases.join(" and "))
        },
        args.series,
        humanize(args.scrape_every),
        args.push_series,
        humanize(args.push_every),
        humanize(args.flip_every),
        4,
        QUERY_EVERY.as_secs()
    ));
    out.push_str("| process | RSS after warm-up (MiB) | RSS middle | RSS end | RSS max | RSS slope (MiB/h) | RSS slope, 2nd half (MiB/h) | open fds after warm-up | fds middle | fds end | fd slope (/h) |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (name, label) in [
        ("vigil", "vigil (collector)"),
        ("vigil-agent", "vigil-agent"),
    ] {
        if let Some(s) = samples.get(name).and_then(|v| summarize(v, warmup)) {
            out.push_str(&format!(
                "| {label} | {} | {} | {} | {} | {:+.2} | {:+.2} | {} | {} | {} | {:+.1} |\n",
                mib(s.start.rss_kib),
                mib(s.middle.rss_kib),
                mib(s.end.rss_kib),
                mib(s.rss_max_kib),
                s.rss_slope_mib_h,
                s.rss_slope_late_mib_h,
                s.start.fds,
                s.middle.fds,
                s.end.fds,
                s.fd_slope_h
            ));
        }
    }
    let yes = |b: bool| if b { "yes" } else { "**NO**" };
    out.push_str("\n| check | expected | observed | ok |\n|---|---|---|---|\n");
    out.push_str(&format!(
        "| remote-written samples queryable (count_over_time per series) | {} series × {rounds} = {} | {} series, {} samples | {} |\n",
        args.push_series,
        args.push_series as u64 * rounds,
        pushed.len(),
        pushed_stored,
        yes(pushed_ok)
    ));
    out.push_str(&format!(
        "| agent-scraped samples stored (per series = scrapes served) | {} series × {served} | {} series, {}–{} per series | {} |\n",
        args.series,
        scraped.len(),
        if scraped.is_empty() { 0.0 } else { scraped_min },
        scraped_max,
        yes(scraped_ok)
    ));
    out.push_str(&format!(
        "| {ALERT} firing episodes delivered to the webhook | {firings_flipped} | {fired} | {} |\n",
        yes(fired == firings_flipped)
    ));
    out.push_str(&format!(
        "| {ALERT} resolutions delivered to the webhook | {firings_flipped} | {resolved} | {} |\n",
        yes(resolved == firings_flipped)
    ));
    out.push_str(&format!(
        "| agent samples rejected / dropped | 0 / 0 | {rejected} / {dropped} | {} |\n",
        yes(rejected == 0.0 && dropped == 0.0)
    ));
    out.push_str(&format!(
        "| failed pushes (retried) / failed dashboard queries | 0 / 0 | {} / {} of {} | {} |\n",
        push_errors.load(Ordering::SeqCst),
        query_errors.load(Ordering::SeqCst),
        queries_run.load(Ordering::SeqCst),
        yes(query_errors.load(Ordering::SeqCst) == 0)
    ));
    out.push_str(&format!(
        "\nWebhook notifications: {}; other alerts of the default pack delivered: {}.\n",
        d.notifications,
        if others.is_empty() {
            "none".to_string()
        } else {
            others.join(", ")
        }
    ));
    print!("{out}");
    if let Some(path) = &args.out {
        write_file(path, &out)?;
    }
    let ok = pushed_ok
        && scraped_ok
        && alerts_ok
        && rejected == 0.0
        && dropped == 0.0
        && query_errors.load(Ordering::SeqCst) == 0;
    if !ok {
        bail!(
            "soak checks failed; logs in {} (use --dir to keep them)",
            dir.display()
        );
    }
    Ok(())
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s}s"),
        (h, 0, _) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

/// `YYYY-MM-DD` of a Unix time in ms (civil-from-days, UTC).
fn date_utc(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_the_flags_say() {
        assert_eq!(parse_duration("1h").ok(), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("5m").ok(), Some(Duration::from_secs(300)));
        assert_eq!(
            parse_duration("1h30m").ok(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn slope_of_a_line_is_its_rate_per_hour() {
        let pts: Vec<Usage> = (0..10)
            .map(|i| Usage {
                at: Duration::from_secs(360 * i),
                rss_kib: 1000 + 100 * i,
                fds: 20,
            })
            .collect();
        // 100 KiB per 6 min = 1000 KiB per hour.
        let s = slope_per_hour(&pts, |u| u.rss_kib as f64);
        assert!((s - 1000.0).abs() < 1e-6, "{s}");
        assert_eq!(slope_per_hour(&pts, |u| u.fds as f64), 0.0);
    }

    #[test]
    fn a_plateau_after_filling_shows_in_the_second_half_slope_only() {
        // Rises 1 MiB per minute for 20 minutes, then flat for 40.
        let pts: Vec<Usage> = (0..=60u64)
            .map(|m| Usage {
                at: Duration::from_secs(60 * m),
                rss_kib: 40 * 1024 + 1024 * m.min(20),
                fds: 20,
            })
            .collect();
        let s = summarize(&pts, Duration::from_secs(0)).expect("samples");
        assert!(s.rss_slope_mib_h > 10.0, "{}", s.rss_slope_mib_h);
        assert_eq!(s.rss_slope_late_mib_h, 0.0);
        assert_eq!(s.rss_max_kib, 60 * 1024);
        assert_eq!(s.end.rss_kib, 60 * 1024);
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(date_utc(0), "1970-01-01");
        assert_eq!(date_utc(1_795_000_000_000), "2026-11-18");
    }

    #[test]
    fn webhook_payloads_are_counted_per_episode() {
        let mut d = Deliveries::default();
        let firing = br#"{"status":"firing","alerts":[{"status":"firing","labels":{"alertname":"SoakFlip"},"startsAt":"2026-01-01T00:00:00Z"}]}"#;
        d.record(firing);
        d.record(firing);
        d.record(br#"{"status":"resolved","alerts":[{"status":"resolved","labels":{"alertname":"SoakFlip"},"startsAt":"2026-01-01T00:00:00Z"},{"status":"firing","labels":{"alertname":"HostDown"},"startsAt":"x"}]}"#);
        assert_eq!(d.notifications, 3);
        assert_eq!(d.firing.len(), 1);
        assert_eq!(d.resolved.len(), 1);
        assert!(d.others.contains("HostDown"));
    }
}
