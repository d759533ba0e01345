//! Shared pieces of the UI tests: the collector with its rules and data,
//! chromedriver and the browser session, screenshots, and polling helpers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use vigil_e2e::{Collector, Proc, free_port, now_ms, series_request, wait_ready, workspace_root};
use vigil_wire::remote_write as rw;

pub(crate) const ADMIN: &str = "admin-secret-ui";
pub(crate) const READ: &str = "read-secret-ui";
pub(crate) const SCRIPT_LABEL: &str = "<script>alert(1)</script>";
pub(crate) const RULE_EXPR: &str = "ui_test_value > 5";

pub(crate) fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write file");
}

/// A collector with read and admin tokens, one alerting rule evaluated every
/// second, and data: a series whose label holds markup (it fires the rule)
/// and five waves for the chart.
pub(crate) fn start_collector(dir: &Path) -> Collector {
    write(&dir.join("read.token"), READ);
    write(&dir.join("admin.token"), ADMIN);
    write(
        &dir.join("ui.rules.yml"),
        &format!(
            "groups:\n  - name: ui\n    interval: 1s\n    rules:\n      - alert: UiTestHigh\n        expr: {RULE_EXPR}\n        labels:\n          severity: page\n        annotations:\n          summary: \"value is {{{{ $value }}}}\"\n"
        ),
    );
    // An anomaly rule on the waves, scoring once it has seen 20 points
    // (the detector warms up on the stored history).
    write(
        &dir.join("ui.anomaly.yml"),
        "groups:\n  - name: ui-anomalies\n    interval: 1s\n    rules:\n      - anomaly: UiWaveAnomaly\n        expr: ui_wave\n        training_window: 1h\n        for: 0s\n        model:\n          n_estimators: 20\n          min_points: 20\n          window: 200\n          retrain_every: 50\n",
    );
    let cfg = dir.join("vigil.yml");
    write(
        &cfg,
        &format!(
            "auth:\n  read_token_file: {}\n  admin_token_file: {}\nrules:\n  files: ['{}', '{}']\n  evaluation_interval: 1s\n",
            dir.join("read.token").display(),
            dir.join("admin.token").display(),
            dir.join("ui.rules.yml").display(),
            dir.join("ui.anomaly.yml").display(),
        ),
    );
    let data = dir.join("data");
    let c = Collector::start(&data, &["--config", cfg.to_str().expect("utf-8 path")])
        .expect("collector starts");
    let now = now_ms();
    let samples: Vec<(i64, f64)> = (0..120).map(|i| (now - (119 - i) * 15_000, 10.0)).collect();
    let (status, body) = c
        .remote_write(&series_request(
            &[
                ("__name__", "ui_test_value"),
                ("job", "ui"),
                ("instance", "a"),
                ("note", SCRIPT_LABEL),
            ],
            &samples,
        ))
        .expect("remote_write");
    assert!(status < 300, "remote_write: {status} {body}");
    let mut req = rw::WriteRequest::default();
    for s in 0..5 {
        let one = series_request(
            &[("__name__", "ui_wave"), ("wave", &s.to_string())],
            &(0..240)
                .map(|i| {
                    let t = now - (239 - i) * 15_000;
                    (t, 10.0 + (s as f64 + 1.0) * (i as f64 / 20.0).sin())
                })
                .collect::<Vec<_>>(),
        );
        req.timeseries.extend(one.timeseries);
    }
    let (status, body) = c.remote_write(&req).expect("remote_write");
    assert!(status < 300, "remote_write: {status} {body}");
    c
}

/// Starts chromedriver on a free port. A missing browser is a failure, not
/// a skip: the UI is unproven without it.
pub(crate) fn start_chromedriver() -> (Proc, u16) {
    let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    assert!(
        Path::new(&driver).exists(),
        "{driver} is missing: install Debian's chromium and chromium-driver (tests/run.sh does)"
    );
    assert!(
        Path::new(&chromium()).exists(),
        "{} is missing: install Debian's chromium (tests/run.sh does)",
        chromium()
    );
    let port = free_port();
    let proc = Proc::spawn(
        "chromedriver",
        std::process::Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null()),
    )
    .expect("chromedriver starts");
    wait_ready(
        &format!("http://127.0.0.1:{port}/status"),
        Duration::from_secs(30),
    )
    .expect("chromedriver answers");
    (proc, port)
}

pub(crate) fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

pub(crate) fn screenshot_dir() -> PathBuf {
    let d = workspace_root().join("tests/screenshots");
    std::fs::create_dir_all(&d).expect("screenshot directory");
    d
}

pub(crate) async fn browser(port: u16) -> Client {
    browser_with(port, &[]).await
}

pub(crate) async fn browser_with(port: u16, extra: &[&str]) -> Client {
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--force-color-profile=srgb",
        "--hide-scrollbars",
    ];
    args.extend_from_slice(extra);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": chromium(), "args": args }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with headless Chromium")
}

pub(crate) async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("write screenshot");
}

/// Polls until an element matching `css` has text containing `needle`;
/// returns that text.
pub(crate) async fn wait_text(c: &Client, css: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        seen.clear();
        if let Ok(els) = c.find_all(Locator::Css(css)).await {
            for e in els {
                if let Ok(t) = e.text().await {
                    if t.contains(needle) {
                        return t;
                    }
                    seen.push(t);
                }
            }
        }
        if Instant::now() > deadline {
            let url = c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            panic!("no {css} containing {needle:?} at {url} within 30s; saw {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Polls until the first expression box's completion list offers `want`.
pub(crate) async fn wait_option(c: &Client, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value = c
            .execute(
                "const box = document.querySelector('input.expr'); \
                 return Array.from(box.list ? box.list.options : []).map(o => o.value);",
                vec![],
            )
            .await
            .expect("execute");
        if v.as_array().into_iter().flatten().any(|o| o == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "completion never offered {want:?}; offered {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until the browser's URL contains `needle` (a form submitted).
pub(crate) async fn wait_path(c: &Client, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let path = path_of(c).await;
        if path.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "URL never held {needle:?}: {path}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn path_of(c: &Client) -> String {
    let u = c.current_url().await.expect("current url");
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

/// Counts the chart canvas's pixels close to the first series colour
/// (#1f77b4): a drawn line leaves hundreds; axes and grid leave none.
pub(crate) const SERIES_PIXELS_JS: &str = r#"
const cv = document.querySelector('.chart canvas');
if (!cv) return -1;
const ctx = cv.getContext('2d');
const d = ctx.getImageData(0, 0, cv.width, cv.height).data;
let n = 0;
for (let i = 0; i < d.length; i += 4) {
  if (d[i+3] > 200 && Math.abs(d[i]-31) < 40 && Math.abs(d[i+1]-119) < 40 && Math.abs(d[i+2]-180) < 40) n++;
}
return n;
"#;

/// Moves the mouse to the middle of the plot; returns the legend's values.
pub(crate) const HOVER_JS: &str = r#"
const over = document.querySelector('.chart .u-over');
const r = over.getBoundingClientRect();
over.dispatchEvent(new MouseEvent('mouseenter', {clientX: r.left + r.width / 2, clientY: r.top + r.height / 2, bubbles: true}));
over.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + r.width / 2, clientY: r.top + r.height / 2, bubbles: true}));
return Array.from(document.querySelectorAll('.chart .u-legend .u-series')).slice(1)
  .map(s => s.querySelector('.u-value').textContent);
"#;
