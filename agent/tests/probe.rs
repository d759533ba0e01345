//! HTTP(S) probes through the real agent binary against real local HTTP
//! and HTTPS servers: blackbox_exporter's series on `/metrics` with the
//! status, success rules, redirects, body regex and the certificate's
//! expiry exactly as `openssl x509 -enddate` reads it.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use common::{AgentProc, free_port, get_text, metric};

#[path = "../../tests/src/certs.rs"]
#[allow(dead_code)]
mod certs;

fn app() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "status: ok" }))
        .route("/degraded", get(|| async { "status: degraded" }))
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route(
            "/moved",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/hop")]).into_response() }),
        )
        .route(
            "/hop",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/healthz")]).into_response() }),
        )
}

/// A listener the test keeps from the moment its port is chosen.
fn local_listener() -> tokio::net::TcpListener {
    let listener = common::bind_local();
    listener.set_nonblocking(true).expect("non-blocking");
    tokio::net::TcpListener::from_std(listener).expect("tokio listener")
}

async fn serve_http() -> SocketAddr {
    let listener = local_listener();
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app()).await });
    addr
}

async fn serve_https(dir: &Path) -> SocketAddr {
    let tls = vigil_tls::server_config(&dir.join("server.pem"), &dir.join("server.key"), None)
        .expect("server TLS config");
    let tcp = local_listener();
    let addr = tcp.local_addr().expect("addr");
    let listener = vigil_tls::TlsListener::new(tcp, tls).expect("TLS listener");
    tokio::spawn(async move { axum::serve(listener, app()).await });
    addr
}

/// `notAfter` of a PEM certificate as openssl prints it, in Unix seconds.
fn openssl_not_after(pem: &Path) -> i64 {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-in"])
        .arg(pem)
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let date = text
        .trim()
        .strip_prefix("notAfter=")
        .expect("notAfter= line");
    // "Dec  8 17:50:00 2026 GMT"
    let squeezed = date.split_whitespace().collect::<Vec<_>>().join(" ");
    chrono::NaiveDateTime::parse_from_str(&squeezed, "%b %d %H:%M:%S %Y GMT")
        .unwrap_or_else(|e| panic!("{squeezed:?}: {e}"))
        .and_utc()
        .timestamp()
}

/// Polls the agent's `/metrics` until every probe target has reported.
async fn wait_for_probes(agent: &AgentProc, instances: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = get_text(&agent.url("/metrics")).await;
        if instances
            .iter()
            .all(|i| metric(&text, "probe_success", &[("instance", i)]).is_some())
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "probes never reported; /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn probes_report_blackbox_series_for_http_and_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs::make_ca(dir.path(), "probe");
    certs::make_server_cert(dir.path(), "probe");
    let http = serve_http().await;
    let https = serve_https(dir.path()).await;
    // A port nothing listens on: refused.
    let closed = format!("http://127.0.0.1:{}/healthz", free_port());

    let ok = format!("http://{http}/healthz");
    let down = format!("http://{http}/down");
    let moved = format!("http://{http}/moved");
    let degraded = format!("http://{http}/degraded");
    let tls_ok = format!("https://{https}/healthz");
    // Same server, no CA pinned: the system roots do not know it.
    let tls_untrusted = format!("https://localhost:{}/healthz", https.port());
    let ca = dir.path().join("probe-ca.pem");
    let config = format!(
        r#"
interval: 1s
remote_write: {{ url: "" }}
system: {{ enabled: false }}
llm: {{ enabled: false }}
probes:
  # Probe timeouts are capped at the interval: 5 s leaves a debug build
  # room for a TLS handshake on a loaded machine.
  - job: web
    targets: ["{ok}", "{down}", "{moved}", "{closed}"]
    interval: 5s
    timeout: 5s
  - job: web-body
    targets: ["{degraded}"]
    interval: 5s
    fail_if_body_not_matches_regexp: ["status: ok"]
  - job: web-tls
    targets: ["{tls_ok}"]
    interval: 5s
    fail_if_not_ssl: true
    tls_config:
      ca_file: {ca}
  - job: web-tls-untrusted
    targets: ["{tls_untrusted}"]
    interval: 5s
"#,
        ca = ca.display()
    );
    let agent = AgentProc::spawn(&config, dir.path(), &[]);
    agent.wait_healthy().await;
    let all = [
        &ok,
        &down,
        &moved,
        &closed,
        &degraded,
        &tls_ok,
        &tls_untrusted,
    ]
    .map(|s| s.to_string());
    let text = wait_for_probes(&agent, &all).await;
    let get = |name: &str, instance: &str| {
        metric(&text, name, &[("instance", instance)])
            .unwrap_or_else(|| panic!("{name}{{instance={instance:?}}} missing:\n{text}"))
    };

    assert_eq!(get("probe_success", &ok), 1.0);
    assert_eq!(get("probe_http_status_code", &ok), 200.0);
    assert_eq!(get("probe_http_ssl", &ok), 0.0);
    assert_eq!(get("probe_http_version", &ok), 1.1);
    assert_eq!(get("probe_http_redirects", &ok), 0.0);
    assert!(get("probe_duration_seconds", &ok) > 0.0);
    assert_eq!(
        metric(&text, "probe_success", &[("instance", &ok), ("job", "web")]),
        Some(1.0),
        "job label"
    );
    assert!(
        metric(
            &text,
            "probe_ssl_earliest_cert_expiry",
            &[("instance", &ok)]
        )
        .is_none(),
        "no certificate over plain HTTP"
    );

    assert_eq!(get("probe_success", &down), 0.0);
    assert_eq!(get("probe_http_status_code", &down), 503.0);

    assert_eq!(get("probe_success", &moved), 1.0);
    assert_eq!(get("probe_http_redirects", &moved), 2.0);
    assert_eq!(get("probe_http_status_code", &moved), 200.0);

    assert_eq!(get("probe_success", &closed), 0.0);
    assert_eq!(get("probe_http_status_code", &closed), 0.0);

    assert_eq!(get("probe_success", &degraded), 0.0);
    assert_eq!(get("probe_failed_due_to_regex", &degraded), 1.0);
    assert_eq!(get("probe_http_status_code", &degraded), 200.0);

    assert_eq!(get("probe_success", &tls_ok), 1.0);
    assert_eq!(get("probe_http_ssl", &tls_ok), 1.0);
    let expiry = get("probe_ssl_earliest_cert_expiry", &tls_ok);
    assert_eq!(
        expiry as i64,
        openssl_not_after(&dir.path().join("server.pem")),
        "certificate expiry as openssl reads it"
    );

    assert_eq!(get("probe_success", &tls_untrusted), 0.0);
    assert_eq!(get("probe_http_status_code", &tls_untrusted), 0.0);
}

#[test]
fn bad_probe_configs_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (snippet, want) in [
        ("targets: [\"ftp://x/\"]", "scheme must be http or https"),
        ("targets: []", "targets is empty"),
        (
            "targets: [\"http://x/\"]\n    fail_if_body_not_matches_regexp: [\"(\"]",
            "fail_if_body_not_matches_regexp",
        ),
        (
            "targets: [\"http://x/\"]\n    valid_status_codes: [99]",
            "not an HTTP status",
        ),
    ] {
        let cfg = dir.path().join("agent.yaml");
        std::fs::write(&cfg, format!("probes:\n  - {snippet}\n")).expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil-agent"))
            .arg("--config")
            .arg(&cfg)
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .output()
            .expect("run agent");
        assert!(!out.status.success(), "{snippet} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("probes[0]") && err.contains(want),
            "{snippet}: {err}"
        );
    }
}
