//! Scraping platform endpoints: a real HTTP target serving the text format
//! and a target that is down; `up`, `scrape_duration_seconds` and the
//! target's own series (with `job`/`instance`) appear on the agent's
//! `/metrics`.

mod common;

use std::time::{Duration, Instant};

use axum::routing::get;
use common::{free_port, get_text, metric};
use tokio_util::sync::CancellationToken;
use vigil_agent::config::Config;

const TARGET_BODY: &str = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\"} 42\nhttp_requests_total{code=\"500\"} 3\n# HELP http_request_duration_seconds Latency.\n# TYPE http_request_duration_seconds histogram\nhttp_request_duration_seconds_bucket{le=\"0.5\"} 40\nhttp_request_duration_seconds_bucket{le=\"+Inf\"} 45\nhttp_request_duration_seconds_sum 9.5\nhttp_request_duration_seconds_count 45\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_scraped_with_up_and_duration() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind target");
    let target = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let app = axum::Router::new().route("/metrics", get(|| async { TARGET_BODY }));
        let _ = axum::serve(listener, app).await;
    });
    let down = format!("127.0.0.1:{}", free_port());
    let port = free_port();
    let yaml = format!(
        "listen: 127.0.0.1:{port}\ninterval: 1s\nremote_write:\n  url: ''\nsystem:\n  enabled: false\nscrape:\n  - job: api\n    targets: ['{target}', '{down}']\n    timeout: 500ms\n"
    );
    let cfg = Config::from_yaml(&yaml).expect("config");
    let stop = CancellationToken::new();
    let s = stop.clone();
    let h = tokio::spawn(async move { vigil_agent::run(cfg, s).await.expect("agent runs") });

    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        if let Ok(r) = reqwest::get(&url).await {
            let t = r.text().await.unwrap_or_default();
            if metric(&t, "up", &[("instance", &down)]).is_some()
                && metric(&t, "up", &[("instance", &target)]).is_some()
            {
                break t;
            }
        }
        assert!(Instant::now() < deadline, "scrape results never appeared");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        metric(&text, "up", &[("job", "api"), ("instance", &target)]),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "up", &[("job", "api"), ("instance", &down)]),
        Some(0.0)
    );
    assert!(
        metric(&text, "scrape_duration_seconds", &[("instance", &target)])
            .is_some_and(|v| v > 0.0 && v < 1.0)
    );
    assert_eq!(
        metric(
            &text,
            "http_requests_total",
            &[("job", "api"), ("code", "500")]
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &text,
            "http_request_duration_seconds_bucket",
            &[("instance", &target), ("le", "+Inf")]
        ),
        Some(45.0)
    );
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"));
    // Self-metrics name the scrape collectors.
    let again = get_text(&url).await;
    assert!(
        metric(
            &again,
            "vigil_agent_collections_total",
            &[("collector", &format!("scrape/api/{target}"))]
        )
        .is_some()
    );
    stop.cancel();
    h.await.expect("agent stops");
}

/// A target that, like a collector with `auth.read_token_file`, answers
/// only requests carrying its bearer token: the agent sends the token from
/// `bearer_token_file` (re-read on every scrape); without it the target is
/// down for the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_file_authenticates_the_scrape() {
    let target_port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", target_port))
        .await
        .expect("bind target");
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/metrics",
            get(|headers: axum::http::HeaderMap| async move {
                let ok = headers
                    .get(axum::http::header::AUTHORIZATION)
                    .is_some_and(|v| v == "Bearer read-secret");
                if ok {
                    (axum::http::StatusCode::OK, TARGET_BODY)
                } else {
                    (axum::http::StatusCode::UNAUTHORIZED, "")
                }
            }),
        );
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("read.token");
    std::fs::write(&token, "wrong\n").expect("write token");
    let target = format!("127.0.0.1:{target_port}");
    let port = free_port();
    let yaml = format!(
        "listen: 127.0.0.1:{port}\ninterval: 1s\nremote_write:\n  url: ''\nsystem:\n  enabled: false\nllm:\n  enabled: false\nscrape:\n  - job: vigil\n    targets: ['{target}']\n    timeout: 500ms\n    bearer_token_file: {}\n",
        token.display()
    );
    let cfg = Config::from_yaml(&yaml).expect("config");
    let stop = CancellationToken::new();
    let s = stop.clone();
    let h = tokio::spawn(async move { vigil_agent::run(cfg, s).await.expect("agent runs") });

    let url = format!("http://127.0.0.1:{port}/metrics");
    let up = |text: &str| metric(text, "up", &[("job", "vigil"), ("instance", &target)]);
    let wait_for_up = |want: f64| {
        let url = url.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let t = get_text(&url).await;
                if up(&t) == Some(want) {
                    return t;
                }
                assert!(Instant::now() < deadline, "up never became {want}:\n{t}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    // The wrong token is refused: the target counts as down.
    wait_for_up(0.0).await;
    // The rotated token is picked up without a restart.
    std::fs::write(&token, "read-secret\n").expect("rotate token");
    let text = wait_for_up(1.0).await;
    assert_eq!(
        metric(
            &text,
            "http_requests_total",
            &[("job", "vigil"), ("code", "200")]
        ),
        Some(42.0)
    );
    stop.cancel();
    h.await.expect("agent stops");
}
