//! The agent over TLS through the real binaries: its listener serves
//! `/metrics` over HTTPS (right CA succeeds, another fails), and its
//! remote_write client with a pinned CA ships to a collector serving HTTPS,
//! while an agent pinning another CA — or the right CA but expecting a
//! `server_name` the certificate does not carry — ships nothing, counts the
//! failures and keeps its samples buffered.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vigil_e2e::certs::{make_ca, make_server_cert};
use vigil_e2e::{Proc, binary, free_port, spawn_vigil_serve, wait_ready};

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write file");
}

fn client_trusting(d: &Path, ca: &str) -> reqwest::blocking::Client {
    let pem = std::fs::read(d.join(format!("{ca}-ca.pem"))).expect("ca");
    reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("pem")])
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Starts an agent whose remote_write pins `ca` (and expects `server_name`
/// when given); `listener_tls` serves its own listener over HTTPS.
fn start_agent(
    d: &Path,
    name: &str,
    collector: u16,
    ca: &str,
    server_name: Option<&str>,
    listener_tls: bool,
) -> (Proc, u16) {
    let port = free_port();
    let server_name = server_name
        .map(|n| format!("    server_name: {n}\n"))
        .unwrap_or_default();
    let tls = if listener_tls {
        format!(
            "tls:\n  cert_file: {}\n  key_file: {}\n",
            d.join("server.pem").display(),
            d.join("server.key").display()
        )
    } else {
        String::new()
    };
    let cfg = d.join(format!("{name}.yml"));
    write(
        &cfg,
        &format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\ninterval: 1s\n\
             external_labels: {{agent: {name}}}\nsystem: {{enabled: false}}\n{tls}\
             remote_write:\n  url: https://127.0.0.1:{collector}/api/v1/write\n  \
             min_backoff: 100ms\n  max_backoff: 500ms\n  tls_config:\n    ca_file: {}\n{server_name}",
            d.join(name).display(),
            d.join(format!("{ca}-ca.pem")).display(),
        ),
    );
    let proc = Proc::spawn(
        "vigil-agent",
        Command::new(binary("vigil-agent").expect("binary"))
            .arg("--config")
            .arg(&cfg)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ),
    )
    .expect("agent starts");
    (proc, port)
}

/// The value of the sample `name` (whatever its labels) in an exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            return None;
        }
        rest.rsplit(' ').next()?.trim().parse().ok()
    })
}

#[test]
fn agent_tls_listener_and_pinned_remote_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    make_ca(d, "good");
    make_ca(d, "other");
    make_server_cert(d, "good");
    let collector_port = free_port();
    let cfg = d.join("vigil.yml");
    write(
        &cfg,
        &format!(
            "tls:\n  cert_file: {}\n  key_file: {}\n",
            d.join("server.pem").display(),
            d.join("server.key").display()
        ),
    );
    let _vigil =
        spawn_vigil_serve(&cfg, collector_port, &d.join("data")).expect("collector starts");
    let good = client_trusting(d, "good");
    let collector = format!("https://127.0.0.1:{collector_port}");
    let series = |agent: &str| -> usize {
        good.get(format!(
            "{collector}/api/v1/series?match[]=vigil_agent_samples_collected_total{{agent=\"{agent}\"}}"
        ))
        .send()
        .ok()
        .and_then(|r| r.json::<serde_json::Value>().ok())
        .and_then(|v| v["data"].as_array().map(Vec::len))
        .unwrap_or(0)
    };

    // The certificate names 127.0.0.1 and localhost: `server_name:
    // localhost` is accepted, another name is not.
    let (_pinned, pinned_port) =
        start_agent(d, "pinned", collector_port, "good", Some("localhost"), true);
    let (_wrong, wrong_port) = start_agent(d, "wrong", collector_port, "other", None, false);
    let (_misnamed, misnamed_port) = start_agent(
        d,
        "misnamed",
        collector_port,
        "good",
        Some("elsewhere.internal"),
        false,
    );

    // The agent's own listener speaks TLS with its certificate.
    let metrics_url = format!("https://127.0.0.1:{pinned_port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(30);
    while good.get(&metrics_url).send().is_err() {
        assert!(Instant::now() < deadline, "agent HTTPS listener not up");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        client_trusting(d, "other")
            .get(&metrics_url)
            .send()
            .is_err(),
        "a client trusting another CA must fail the agent's handshake"
    );
    assert!(
        reqwest::blocking::get(format!("http://127.0.0.1:{pinned_port}/metrics")).is_err(),
        "plain HTTP gets no answer on the TLS listener"
    );

    // The pinned agent ships to the collector over HTTPS.
    let deadline = Instant::now() + Duration::from_secs(60);
    while series("pinned") == 0 {
        assert!(
            Instant::now() < deadline,
            "no samples from the agent pinning the right CA"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // The agent pinning another CA, and the one expecting another name, have
    // failed sends counted and their samples buffered, and nothing of them
    // reached the collector.
    for (agent, port) in [("wrong", wrong_port), ("misnamed", misnamed_port)] {
        wait_ready(
            &format!("http://127.0.0.1:{port}/-/healthy"),
            Duration::from_secs(30),
        )
        .expect("agent up");
        let deadline = Instant::now() + Duration::from_secs(60);
        let text = loop {
            let text = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
                .and_then(|r| r.text())
                .unwrap_or_default();
            let failures = sample(&text, "vigil_agent_remote_write_failures_total").unwrap_or(0.0);
            let buffered = sample(&text, "vigil_agent_buffer_bytes").unwrap_or(0.0);
            if failures >= 2.0 && buffered > 0.0 {
                break text;
            }
            assert!(
                Instant::now() < deadline,
                "{agent}: no counted failures or no buffered data:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(300));
        };
        assert_eq!(
            sample(&text, "vigil_agent_samples_sent_total"),
            Some(0.0),
            "{agent}: {text}"
        );
        assert_eq!(
            sample(&text, "vigil_agent_samples_rejected_total"),
            Some(0.0),
            "{agent}: a handshake failure is retried, never dropped:\n{text}"
        );
        assert_eq!(series(agent), 0, "{agent}");
    }
}
