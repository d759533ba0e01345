//! The Kubernetes manifests in `deploy/kubernetes/`: every resource passes
//! the Kubernetes OpenAPI schemas in strict mode (`kubernetes-validate`,
//! from PyPI, installed by tests/run.sh), the kustomization lists every
//! manifest, and the configurations inside the ConfigMaps are accepted by
//! the real binaries: `vigil check config` for the collector's vigil.yml
//! and Alertmanager file (and `amtool check-config` for the latter), and a
//! `vigil-agent` started on the agent's file answers `/-/healthy`. The
//! agent ships to every pod of the collector StatefulSet by its per-pod DNS
//! name, not to the load-balanced Service.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::{binary, free_port, workspace_root};

fn manifests_dir() -> PathBuf {
    workspace_root().join("deploy/kubernetes")
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .expect("deploy/kubernetes")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .collect();
    files.sort();
    files
}

fn validate(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .args(files)
        .output()
        .expect("kubernetes-validate must be installed (pip install kubernetes-validate; tests/run.sh does)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every document of every manifest, as JSON values.
fn documents() -> Vec<Value> {
    manifests()
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).expect("read manifest");
            serde_saphyr::from_multiple::<Value>(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        })
        .collect()
}

fn config_map(docs: &[Value], name: &str, key: &str) -> String {
    docs.iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == name)
        .and_then(|d| d["data"][key].as_str())
        .unwrap_or_else(|| panic!("ConfigMap {name} has no {key}"))
        .to_string()
}

#[test]
fn manifests_pass_the_kubernetes_schemas_strictly() {
    let files = manifests();
    assert!(files.len() >= 4, "{files:?}");
    let (ok, text) = validate(&files);
    assert!(ok, "{text}");
    for kind in [
        "statefulset/vigil-collector",
        "daemonset/vigil-agent",
        "service/vigil-collector",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{kind}: {text}"
        );
    }
    // The validator is strict: an unknown field is refused.
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(manifests_dir().join("collector.yaml")).expect("read");
    std::fs::write(
        &broken,
        text.replace("  replicas: 2\n", "  replicas: 2\n  replica: 2\n"),
    )
    .expect("write");
    let (ok, out) = validate(&[broken]);
    assert!(!ok, "an unknown field passed: {out}");
    assert!(out.contains("'replica' was unexpected"), "{out}");
}

#[test]
fn kustomization_lists_every_manifest() {
    let text = std::fs::read_to_string(manifests_dir().join("kustomization.yaml"))
        .expect("kustomization.yaml");
    for f in manifests() {
        let name = f.file_name().expect("name").to_string_lossy().to_string();
        assert!(
            text.contains(&format!("- {name}")),
            "{name} missing from kustomization.yaml"
        );
    }
}

/// Rewrites the in-cluster paths of a ConfigMap's file to ones that exist
/// here, so the real binaries can load it.
fn localise(text: &str, replacements: &[(&str, &Path)]) -> String {
    replacements.iter().fold(text.to_string(), |t, (from, to)| {
        t.replace(from, &to.to_string_lossy())
    })
}

#[test]
fn configmaps_are_accepted_by_the_binaries() {
    let docs = documents();
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).expect("mkdir");
    for t in ["agents", "read", "admin"] {
        std::fs::write(tokens.join(t), "0123456789abcdef0123456789abcdef\n").expect("token");
    }
    let vigil = binary("vigil").expect("vigil binary");

    let alerting = dir.path().join("alerting.yml");
    std::fs::write(
        &alerting,
        config_map(&docs, "vigil-collector", "alerting.yml"),
    )
    .expect("write alerting.yml");
    let out = Command::new(&vigil)
        .args(["check", "config"])
        .arg(&alerting)
        .output()
        .expect("vigil check config");
    assert!(
        out.status.success(),
        "vigil refuses alerting.yml: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("amtool")
        .args(["check-config"])
        .arg(&alerting)
        .output()
        .expect("amtool must be installed (prometheus-alertmanager)");
    assert!(
        out.status.success(),
        "amtool refuses alerting.yml: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    let rules = workspace_root().join("rules");
    let collector_cfg = dir.path().join("vigil.yml");
    std::fs::write(
        &collector_cfg,
        localise(
            &config_map(&docs, "vigil-collector", "vigil.yml"),
            &[
                ("/etc/vigil/tokens", &tokens),
                ("/etc/vigil/alerting.yml", &alerting),
                ("/usr/share/vigil/rules", &rules),
                ("/etc/vigil/rules", &rules),
                ("/var/lib/vigil", &dir.path().join("data")),
            ],
        ),
    )
    .expect("write vigil.yml");
    let out = Command::new(&vigil)
        .args(["check", "config"])
        .arg(&collector_cfg)
        .output()
        .expect("vigil check config");
    assert!(
        out.status.success(),
        "vigil refuses vigil.yml: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let agent_cfg = dir.path().join("agent.yml");
    std::fs::write(
        &agent_cfg,
        localise(
            &config_map(&docs, "vigil-agent", "agent.yml"),
            &[
                ("/etc/vigil-agent/tokens", &tokens),
                ("/host/proc", Path::new("/proc")),
                ("/host/sys", Path::new("/sys")),
            ],
        ),
    )
    .expect("write agent.yml");
    let port = free_port();
    let mut agent = Command::new(binary("vigil-agent").expect("vigil-agent binary"))
        .arg("--config")
        .arg(&agent_cfg)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("agent-data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vigil-agent");
    let deadline = Instant::now() + Duration::from_secs(30);
    let healthy = loop {
        if let Ok(Some(status)) = agent.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = agent.stderr.take() {
                use std::io::Read as _;
                let _ = e.read_to_string(&mut err);
            }
            panic!("vigil-agent exited on the DaemonSet's config ({status}): {err}");
        }
        if reqwest::blocking::get(format!("http://127.0.0.1:{port}/-/healthy"))
            .is_ok_and(|r| r.status().is_success())
        {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        healthy,
        "vigil-agent never became healthy on the DaemonSet's config"
    );
}

/// Each sample must reach both collectors of the HA pair: the agent's
/// `remote_writes` are exactly the StatefulSet's pods, by the stable DNS
/// names the headless Service gives them, one named destination (and
/// buffer) each.
#[test]
fn the_agent_ships_to_every_collector_pod() {
    let docs = documents();
    let sts = docs
        .iter()
        .find(|d| d["kind"] == "StatefulSet" && d["metadata"]["name"] == "vigil-collector")
        .expect("the collector StatefulSet");
    let name = sts["metadata"]["name"].as_str().expect("name");
    let ns = sts["metadata"]["namespace"].as_str().expect("namespace");
    let service = sts["spec"]["serviceName"].as_str().expect("serviceName");
    let replicas = sts["spec"]["replicas"].as_u64().expect("replicas");
    let headless = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == service)
        .expect("the StatefulSet's governing Service");
    assert_eq!(headless["spec"]["clusterIP"], "None", "{headless}");
    assert!(
        headless["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["port"] == 9800),
        "{headless}"
    );
    let agent: Value = serde_saphyr::from_str(&config_map(&docs, "vigil-agent", "agent.yml"))
        .expect("agent.yml parses");
    assert!(
        agent.get("remote_write").is_none(),
        "a single remote_write reaches one pod only"
    );
    let dests = agent["remote_writes"].as_array().expect("remote_writes");
    let urls: Vec<&str> = dests.iter().filter_map(|d| d["url"].as_str()).collect();
    let want: Vec<String> = (0..replicas)
        .map(|i| format!("http://{name}-{i}.{service}.{ns}.svc:9800/api/v1/write"))
        .collect();
    assert_eq!(urls, want);
    for d in dests {
        assert_eq!(
            d["bearer_token_file"], "/etc/vigil-agent/tokens/agents",
            "{d}"
        );
    }
}
