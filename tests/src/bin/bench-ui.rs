//! Web UI benchmark: page weight and time to a drawn chart, Vigil's `/graph`
//! beside the UI of Debian's Prometheus 2.42 (`/classic/graph`, the UI that
//! package ships), on the same data: 100 series × 1,000 points pushed over
//! remote_write to both, the same Prometheus URL parameters on both.
//!
//! Page weight: every script and stylesheet the graph page links, fetched
//! and measured raw and gzip-compressed (`gzip -9`), so servers that do not
//! compress are not flattered or punished. Render time: headless Chromium
//! over WebDriver loads the graph URL and, inside the page, waits for the
//! chart to be drawn (Vigil: the chart reports it; Prometheus: Rickshaw's
//! SVG holds a path per series); the figure is `performance.now()` then,
//! i.e. from navigation start to chart drawn, data fetch included. The
//! first load is reported apart (cold cache), then the median of the rest.
//!
//! Run: `cargo run --release -p vigil-e2e --bin bench-ui -- [--runs N] [--out FILE]`
//! (default 9 runs). Needs /usr/bin/prometheus, /usr/bin/chromium and
//! /usr/bin/chromedriver. The collector timed is `vigil` next to this
//! binary, built only if missing.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use vigil_e2e::bench::Prometheus;
use vigil_e2e::{Collector, Proc, free_port, now_ms, post_remote_write, wait_ready};
use vigil_wire::remote_write as rw;

const SERIES: usize = 100;
const POINTS: i64 = 1000;
const STEP_MS: i64 = 15_000;
const PER_ROUND: i64 = 50;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Pushes the same samples to both, in time order (Prometheus refuses
/// samples older than its head allows once later ones arrived).
fn load(vigil: &Collector, prom: &Prometheus, end: i64) -> anyhow::Result<()> {
    let start = end - (POINTS - 1) * STEP_MS;
    let mut t0 = 0;
    while t0 < POINTS {
        let t1 = (t0 + PER_ROUND).min(POINTS);
        let req = rw::WriteRequest {
            timeseries: (0..SERIES)
                .map(|s| rw::TimeSeries {
                    labels: vec![
                        rw::Label {
                            name: "__name__".into(),
                            value: "bench_ui".into(),
                        },
                        rw::Label {
                            name: "series".into(),
                            value: format!("{s:03}"),
                        },
                    ],
                    samples: (t0..t1)
                        .map(|i| rw::Sample {
                            timestamp: start + i * STEP_MS,
                            value: (s as f64) + 5.0 * ((i as f64) / 40.0 + s as f64).sin(),
                        })
                        .collect(),
                    exemplars: vec![],
                })
                .collect(),
            metadata: vec![],
        };
        let body = rw::encode_write_request(&req);
        for url in [vigil.url("/api/v1/write"), prom.url("/api/v1/write")] {
            let (status, text) = post_remote_write(&url, body.clone())?;
            if status >= 300 {
                bail!("{url}: {status} {text}");
            }
        }
        t0 = t1;
    }
    Ok(())
}

/// Series and points both return for the benchmarked query.
fn check(base: &str, end: i64) -> anyhow::Result<(usize, usize)> {
    let start = end - (POINTS - 1) * STEP_MS;
    let v: Value = reqwest::blocking::Client::new()
        .get(format!("{base}/api/v1/query_range"))
        .query(&[
            ("query", "bench_ui"),
            ("start", &(start as f64 / 1000.0).to_string()),
            ("end", &(end as f64 / 1000.0).to_string()),
            ("step", "15"),
        ])
        .send()?
        .json()?;
    let result = v["data"]["result"].as_array().context("no result")?;
    let points = result
        .iter()
        .map(|s| s["values"].as_array().map_or(0, Vec::len))
        .sum();
    Ok((result.len(), points))
}

fn gzip_len(bytes: &[u8]) -> anyhow::Result<usize> {
    let mut child = Command::new("gzip")
        .arg("-9c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running gzip")?;
    child.stdin.take().context("gzip stdin")?.write_all(bytes)?;
    Ok(child.wait_with_output()?.stdout.len())
}

#[derive(Default, Debug)]
struct Weight {
    html: (usize, usize),
    js: (usize, usize),
    css: (usize, usize),
    files: usize,
}

/// Fetches the page and every script and stylesheet it links.
fn weight(base: &str, page: &str) -> anyhow::Result<Weight> {
    let client = reqwest::blocking::Client::new();
    let html = client.get(format!("{base}{page}")).send()?.bytes()?;
    let text = String::from_utf8_lossy(&html).to_string();
    let mut w = Weight {
        html: (html.len(), gzip_len(&html)?),
        ..Weight::default()
    };
    let mut refs = Vec::new();
    for (marker, is_js) in [
        ("<script src=\"", true),
        ("rel=\"stylesheet\" href=\"", false),
    ] {
        for piece in text.split(marker).skip(1) {
            if let Some(url) = piece.split('"').next() {
                refs.push((url.to_string(), is_js));
            }
        }
    }
    // Prometheus writes `type="text/css" rel="stylesheet" href=`; both forms
    // are caught above. Absolute paths only.
    for (url, is_js) in refs {
        let body = client.get(format!("{base}{url}")).send()?.bytes()?;
        let sizes = (body.len(), gzip_len(&body)?);
        let slot = if is_js { &mut w.js } else { &mut w.css };
        slot.0 += sizes.0;
        slot.1 += sizes.1;
        w.files += 1;
    }
    Ok(w)
}

/// Waits inside the page for the chart; returns ms since navigation start.
const WAIT_JS: &str = r#"
const [kind, want, done] = arguments;
function ready() {
  if (kind === 'vigil') {
    const c = document.querySelector('.chart');
    return c && c.dataset.drawn === '1' ? Number(c.dataset.drawnAt) : null;
  }
  const paths = document.querySelectorAll('#graph_container svg path');
  return paths.length >= want ? performance.now() : null;
}
(function poll() {
  const t = ready();
  if (t !== null) { done(t); return; }
  requestAnimationFrame(poll);
})();
"#;

/// Time to the drawn chart, and for Vigil the part spent drawing (uPlot).
async fn render_ms(c: &Client, url: &str, kind: &str) -> anyhow::Result<(f64, Option<f64>)> {
    c.goto(url).await?;
    let v = c
        .execute_async(WAIT_JS, vec![json!(kind), json!(SERIES)])
        .await?;
    let total = v.as_f64().context("no time from the page")?;
    let draw = c
        .execute(
            "const c = document.querySelector('.chart'); return c ? Number(c.dataset.drawMs) : null;",
            vec![],
        )
        .await?
        .as_f64();
    Ok((total, draw))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let runs: usize = arg("--runs").map_or(Ok(9), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let vigil = Collector::start(&dir.path().join("vigil"), &[])?;
    let prom = Prometheus::start(dir.path())?;
    let end = now_ms() / STEP_MS * STEP_MS;
    load(&vigil, &prom, end)?;
    let v_check = check(&vigil.url(""), end)?;
    let p_check = check(&prom.base, end)?;
    if v_check != p_check || v_check.0 != SERIES {
        bail!("the two disagree on the data: vigil {v_check:?}, prometheus {p_check:?}");
    }
    let range = format!("{}s", (POINTS - 1) * STEP_MS / 1000);
    let params = format!("g0.expr=bench_ui&g0.tab=0&g0.range_input={range}&g0.step_input=15");
    let pages = [
        ("Vigil", "vigil", vigil.url(""), format!("/graph?{params}")),
        (
            "Prometheus 2.42 (Debian)",
            "prometheus",
            prom.base.clone(),
            format!("/classic/graph?{params}"),
        ),
    ];

    let driver_port = free_port();
    let _driver = Proc::spawn(
        "chromedriver",
        Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null()),
    )?;
    wait_ready(
        &format!("http://127.0.0.1:{driver_port}/status"),
        Duration::from_secs(30),
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for (name, kind, base, page) in &pages {
        let w = weight(base, page)?;
        let url = format!("{base}{page}");
        let times = rt.block_on(async {
            let mut caps = serde_json::Map::new();
            caps.insert(
                "goog:chromeOptions".into(),
                json!({"binary": "/usr/bin/chromium",
                       "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                "--disable-dev-shm-usage", "--window-size=1280,1000"]}),
            );
            let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{driver_port}"))
                .await
                .context("WebDriver session")?;
            let mut times = Vec::new();
            for _ in 0..runs.max(2) {
                times.push(render_ms(&c, &url, kind).await?);
            }
            let _ = c.close().await;
            anyhow::Ok(times)
        })?;
        eprintln!("{name}: {w:?} times {times:?}");
        let totals: Vec<f64> = times.iter().map(|t| t.0).collect();
        let draws: Vec<f64> = times[1..].iter().filter_map(|t| t.1).collect();
        let draw = (!draws.is_empty()).then(|| median(draws));
        rows.push((
            name.to_string(),
            w,
            totals[0],
            median(totals[1..].to_vec()),
            draw,
        ));
    }
    let mut out = format!(
        "Graph page, {SERIES} series × {POINTS} points (range {range}, step 15s), headless Chromium {}; {runs} loads each\n\n\
         | UI | JS+CSS files | JS raw / gzip | CSS raw / gzip | HTML gzip | total gzip | first load to chart drawn | median of later loads | of which drawing |\n|---|---|---|---|---|---|---|---|---|\n",
        String::from_utf8_lossy(
            &Command::new("/usr/bin/chromium")
                .arg("--version")
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        )
        .trim()
    );
    for (name, w, first, med, draw) in &rows {
        let draw = draw.map_or("not reported".to_string(), |d| format!("{d:.0} ms"));
        out.push_str(&format!(
            "| {name} | {} | {:.1} / {:.1} KiB | {:.1} / {:.1} KiB | {:.1} KiB | {:.1} KiB | {first:.0} ms | {med:.0} ms | {draw} |\n",
            w.files,
            w.js.0 as f64 / 1024.0,
            w.js.1 as f64 / 1024.0,
            w.css.0 as f64 / 1024.0,
            w.css.1 as f64 / 1024.0,
            w.html.1 as f64 / 1024.0,
            (w.js.1 + w.css.1 + w.html.1) as f64 / 1024.0,
        ));
    }
    print!("{out}");
    if let Some(path) = arg("--out") {
        std::fs::write(path, &out)?;
    }
    Ok(())
}
