//! The agent over TLS through the real binaries: its listener serves
//! `/metrics` over HTTPS (right CA succeeds, another fails), and its
//! remote_write client with a pinned CA ships to a collector serving HTTPS,
//! while an agent pinning another CA ships nothing, counts the failures and
//! keeps its samples buffered.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vigil_e2e::{Proc, binary, free_port, wait_ready};

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write file");
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs (apt-get install openssl)");
    assert!(status.success(), "openssl {args:?} failed");
}

fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}-ca"),
            "-keyout",
            &format!("{name}-ca.key"),
            "-out",
            &format!("{name}-ca.pem"),
        ],
    );
}

/// `server.pem`/`server.key` for 127.0.0.1, signed by `<ca>-ca`.
fn make_server_cert(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    write(
        &dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}-ca.pem"),
            "-CAkey",
            &format!("{ca}-ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
    );
}

fn client_trusting(d: &Path, ca: &str) -> reqwest::blocking::Client {
    let pem = std::fs::read(d.join(format!("{ca}-ca.pem"))).expect("ca");
    reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("pem")])
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Starts an agent whose remote_write pins `ca`; `listener_tls` serves its
/// own listener over HTTPS.
fn start_agent(d: &Path, name: &str, collector: u16, ca: &str, listener_tls: bool) -> (Proc, u16) {
    let port = free_port();
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
             min_backoff: 100ms\n  max_backoff: 500ms\n  tls_config:\n    ca_file: {}\n",
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
    let _vigil = Proc::spawn(
        "vigil",
        Command::new(binary("vigil").expect("binary"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .args([
                "--listen",
                &format!("127.0.0.1:{collector_port}"),
                "--data-dir",
            ])
            .arg(d.join("data")),
    )
    .expect("collector starts");
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

    let (_pinned, pinned_port) = start_agent(d, "pinned", collector_port, "good", true);
    let (_wrong, wrong_port) = start_agent(d, "wrong", collector_port, "other", false);

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

    // The agent pinning another CA has failed sends counted and its samples
    // buffered, and nothing of it reached the collector.
    wait_ready(
        &format!("http://127.0.0.1:{wrong_port}/-/healthy"),
        Duration::from_secs(30),
    )
    .expect("wrong-CA agent up");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = reqwest::blocking::get(format!("http://127.0.0.1:{wrong_port}/metrics"))
            .and_then(|r| r.text())
            .unwrap_or_default();
        let failures = sample(&text, "vigil_agent_remote_write_failures_total").unwrap_or(0.0);
        let buffered = sample(&text, "vigil_agent_buffer_bytes").unwrap_or(0.0);
        if failures >= 2.0 && buffered > 0.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no counted failures or no buffered data:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        sample(&text, "vigil_agent_samples_sent_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "vigil_agent_samples_rejected_total"),
        Some(0.0),
        "a handshake failure is retried, never dropped:\n{text}"
    );
    assert_eq!(series("wrong"), 0);
}
