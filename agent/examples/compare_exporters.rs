//! Benchmark (not a test): the agent collecting system + PostgreSQL + Redis
//! every interval and shipping by remote_write, side by side with
//! node_exporter + postgres_exporter + redis_exporter scraped on the same
//! interval (exporters only work when scraped, so this harness scrapes them
//! as Prometheus would).
//!
//! Reports peak and steady RSS (`VmHWM`, `VmRSS`), CPU time per collection
//! cycle (utime + stime from `/proc/<pid>/stat`) and the size of one scrape.
//!
//! ```text
//! cargo build --release -p vigil-agent --examples
//! target/release/examples/compare_exporters [--cycles 8] [--interval 15] [--agent target/release/vigil-agent]
//! ```

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;

const DSN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable";
const REDIS: &str = "redis://127.0.0.1:6379";

struct Proc {
    name: &'static str,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[path = "../../tests/src/ports.rs"]
mod ports;
use ports::free_port;

/// (utime + stime in seconds, VmRSS kB, VmHWM kB) of a process.
fn usage(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (cpu, kb("VmRSS:"), kb("VmHWM:"))
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let cycles: u32 = arg(&args, "--cycles").map_or(Ok(8), |v| v.parse())?;
    let interval = Duration::from_secs(arg(&args, "--interval").map_or(Ok(15), |v| v.parse())?);
    let agent_bin = arg(&args, "--agent").unwrap_or_else(|| "target/release/vigil-agent".into());

    // A remote_write sink so the agent's shipping cost is included.
    let shipped = Arc::new(AtomicU64::new(0));
    let sink_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink = sink_listener.local_addr()?;
    let counter = shipped.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/api/v1/write",
            post(move |body: Bytes| {
                let c = counter.clone();
                async move {
                    c.fetch_add(body.len() as u64, Ordering::Relaxed);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let _ = axum::serve(sink_listener, app).await;
    });

    let dir = tempfile::tempdir()?;
    let (ap, np, pp, rp) = (free_port(), free_port(), free_port(), free_port());
    let cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "interval: {}s\nllm:\n  enabled: false\n",
            interval.as_secs()
        ),
    )?;
    let quiet = || (Stdio::null(), Stdio::null());
    let spawn = |name: &'static str, cmd: &mut Command| -> anyhow::Result<Proc> {
        let (o, e) = quiet();
        Ok(Proc {
            name,
            child: cmd.stdout(o).stderr(e).spawn()?,
        })
    };
    let agent = spawn(
        "vigil-agent",
        Command::new(&agent_bin)
            .arg("--config")
            .arg(&cfg)
            .args(["--listen", &format!("127.0.0.1:{ap}")])
            .args(["--remote-write", &format!("http://{sink}/api/v1/write")])
            .args(["--postgres", DSN, "--redis", REDIS])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "warn"),
    )?;
    let exporters = [
        spawn(
            "node_exporter",
            Command::new("/usr/bin/prometheus-node-exporter")
                .arg(format!("--web.listen-address=127.0.0.1:{np}")),
        )?,
        spawn(
            "postgres_exporter",
            Command::new("/usr/bin/prometheus-postgres-exporter")
                .arg(format!("--web.listen-address=127.0.0.1:{pp}"))
                .env("DATA_SOURCE_NAME", DSN),
        )?,
        spawn(
            "redis_exporter",
            Command::new("/usr/bin/prometheus-redis-exporter")
                .arg(format!("--redis.addr={REDIS}"))
                .arg(format!("--web.listen-address=127.0.0.1:{rp}")),
        )?,
    ];
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = reqwest::Client::new();
    let scrape = |port: u16| {
        let c = client.clone();
        async move {
            match c
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
            {
                Ok(r) => r.bytes().await.map(|b| b.len()).unwrap_or(0),
                Err(_) => 0,
            }
        }
    };
    // Warm-up cycle (first scrapes allocate caches), then measure.
    for p in [np, pp, rp] {
        scrape(p).await;
    }
    tokio::time::sleep(interval).await;
    let a0 = usage(agent.child.id());
    let e0: Vec<_> = exporters.iter().map(|e| usage(e.child.id())).collect();
    let shipped0 = shipped.load(Ordering::Relaxed);
    let mut exporter_bytes = 0usize;
    let mut steady_agent = 0u64;
    let mut steady_exp = 0u64;
    let start = Instant::now();
    for i in 0..cycles {
        let t = Instant::now();
        let sizes = [scrape(np).await, scrape(pp).await, scrape(rp).await];
        exporter_bytes = sizes.iter().sum();
        let elapsed = t.elapsed();
        tokio::time::sleep(interval.saturating_sub(elapsed)).await;
        steady_agent = usage(agent.child.id()).1;
        steady_exp = exporters.iter().map(|e| usage(e.child.id()).1).sum();
        eprintln!("cycle {}/{cycles} done", i + 1);
    }
    let secs = start.elapsed().as_secs_f64();
    let agent_scrape = scrape(ap).await;
    let a1 = usage(agent.child.id());
    let e1: Vec<_> = exporters.iter().map(|e| usage(e.child.id())).collect();
    let shipped_per_cycle = (shipped.load(Ordering::Relaxed) - shipped0) as f64 / f64::from(cycles);
    let agent_cycles = secs / interval.as_secs_f64();

    println!("| | vigil-agent | 3 exporters together |");
    println!("|---|---|---|");
    println!(
        "| peak RSS (VmHWM) | {:.1} MiB | {:.1} MiB |",
        a1.2 as f64 / 1024.0,
        e1.iter().map(|u| u.2).sum::<u64>() as f64 / 1024.0
    );
    println!(
        "| steady RSS (VmRSS) | {:.1} MiB | {:.1} MiB |",
        steady_agent as f64 / 1024.0,
        steady_exp as f64 / 1024.0
    );
    let exp_cpu: f64 = e1.iter().zip(&e0).map(|(b, a)| b.0 - a.0).sum();
    println!(
        "| CPU per {}s cycle | {:.1} ms | {:.1} ms |",
        interval.as_secs(),
        (a1.0 - a0.0) * 1000.0 / agent_cycles,
        exp_cpu * 1000.0 / f64::from(cycles)
    );
    println!(
        "| one scrape of /metrics | {:.1} KiB | {:.1} KiB |",
        agent_scrape as f64 / 1024.0,
        exporter_bytes as f64 / 1024.0
    );
    println!(
        "| remote_write per cycle (snappy) | {:.1} KiB | — |",
        shipped_per_cycle / 1024.0
    );
    for (e, (b, a)) in exporters.iter().zip(e1.iter().zip(&e0)) {
        println!(
            "| — {} | | RSS {:.1} MiB (peak {:.1}), CPU {:.1} ms/cycle |",
            e.name,
            b.1 as f64 / 1024.0,
            b.2 as f64 / 1024.0,
            (b.0 - a.0) * 1000.0 / f64::from(cycles)
        );
    }
    println!(
        "\n{cycles} cycles of {}s, measured over {secs:.0}s; agent: {}",
        interval.as_secs(),
        agent.name
    );
    Ok(())
}
