//! `deploy/install.sh` and the systemd units, checked the way an operator
//! would use them: install into a staging root (`DESTDIR`) with the real
//! binaries, compare files and modes with `tests/fixtures/deploy/`, run it
//! again and see nothing change, keep edited configuration, uninstall, purge;
//! and `systemd-analyze verify` / `security --offline` on the units
//! (Debian package `systemd`, which tests/run.sh installs).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vigil_e2e::{binary, unit_exec_start as exec_start, workspace_root};

/// The directory holding both real binaries, as `--bin-dir` takes it.
fn bin_dir() -> PathBuf {
    let vigil = binary("vigil").expect("vigil binary builds");
    let agent = binary("vigil-agent").expect("vigil-agent binary builds");
    let dir = vigil
        .parent()
        .expect("binary has a directory")
        .to_path_buf();
    assert_eq!(
        agent.parent(),
        Some(dir.as_path()),
        "both binaries in one target dir"
    );
    dir
}

fn install_sh(destdir: &Path, args: &[&str]) -> Output {
    let out = Command::new(workspace_root().join("deploy/install.sh"))
        .args(args)
        .env("DESTDIR", destdir)
        .output()
        .expect("deploy/install.sh runs (is it executable?)");
    assert!(
        out.status.success(),
        "install.sh {args:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file under `root` with what a re-run must not change: mode, size,
/// modification time and content.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, i64, i64, Vec<u8>)> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, (u32, i64, i64, Vec<u8>)>) {
        for entry in fs::read_dir(dir).expect("readable dir") {
            let path = entry.expect("dir entry").path();
            let meta = fs::symlink_metadata(&path).expect("metadata");
            let rel = path.strip_prefix(root).expect("under root").to_path_buf();
            if meta.is_dir() {
                out.insert(rel, (meta.mode(), 0, 0, Vec::new()));
                walk(&path, root, out);
            } else {
                let content = fs::read(&path).expect("readable file");
                out.insert(
                    rel,
                    (
                        meta.mode(),
                        meta.size() as i64,
                        meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
                        content,
                    ),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{} missing: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// `tests/fixtures/deploy/install-manifest.txt`: `MODE PATH` lines, the
/// files every install must produce (rule files and dashboards are added
/// from the repository, as they come and go).
fn manifest() -> Vec<(u32, String)> {
    let text =
        fs::read_to_string(workspace_root().join("tests/fixtures/deploy/install-manifest.txt"))
            .expect("manifest fixture");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (m, p) = l.split_once(' ').expect("MODE PATH");
            (
                u32::from_str_radix(m, 8).expect("octal mode"),
                p.trim().to_string(),
            )
        })
        .collect()
}

fn repo_files(dir: &str, suffix: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(workspace_root().join(dir)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

#[test]
fn install_into_destdir_is_complete_idempotent_and_reversible() {
    let bins = bin_dir();
    let stage = tempfile::tempdir().expect("tempdir");
    let dest = stage.path();
    let bin_arg = bins.to_string_lossy().into_owned();

    install_sh(dest, &["--bin-dir", &bin_arg]);

    // Files and modes.
    let mut expected = manifest();
    for rule in repo_files("rules", ".rules.yml") {
        expected.push((0o644, format!("etc/vigil/rules/{rule}")));
    }
    let anomaly_rules = repo_files("rules/anomaly", ".anomaly.yml");
    assert!(
        anomaly_rules.contains(&"default.anomaly.yml".to_string()),
        "{anomaly_rules:?}"
    );
    for rule in anomaly_rules {
        expected.push((0o644, format!("etc/vigil/rules/{rule}")));
    }
    for dash in repo_files("dashboards", ".json") {
        expected.push((0o644, format!("usr/share/vigil/grafana/dashboards/{dash}")));
    }
    for kind in ["datasources", "dashboards"] {
        for f in repo_files(&format!("dashboards/provisioning/{kind}"), ".yml") {
            expected.push((
                0o644,
                format!("usr/share/vigil/grafana/provisioning/{kind}/{f}"),
            ));
        }
    }
    for (want, rel) in &expected {
        let got = mode(&dest.join(rel));
        assert_eq!(got, *want, "{rel}: mode {got:o}, want {want:o}");
    }
    for name in ["vigil", "vigil-agent"] {
        assert_eq!(
            fs::read(dest.join("usr/bin").join(name)).expect("installed binary"),
            fs::read(bins.join(name)).expect("built binary"),
            "{name} is the built binary"
        );
    }
    for unit in ["vigil.service", "vigil-agent.service"] {
        assert_eq!(
            fs::read(dest.join("lib/systemd/system").join(unit)).expect("installed unit"),
            fs::read(workspace_root().join("deploy/systemd").join(unit)).expect("repo unit"),
        );
    }
    // The collector's config is the commented example, unchanged.
    assert_eq!(
        fs::read(dest.join("etc/vigil/vigil.yml")).expect("vigil.yml"),
        fs::read(workspace_root().join("deploy/vigil.example.yml")).expect("example"),
    );
    println!("installed {} files with the expected modes", expected.len());

    // A second run writes nothing and says nothing.
    let before = snapshot(dest);
    let again = install_sh(dest, &["--bin-dir", &bin_arg]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "",
        "second run is silent"
    );
    assert!(before == snapshot(dest), "second run changed files");

    // Edited configuration survives a re-install; a deleted one comes back.
    let cfg = dest.join("etc/vigil/vigil.yml");
    let mut edited = fs::read_to_string(&cfg).expect("vigil.yml");
    edited.push_str("# edited by the operator\n");
    fs::write(&cfg, &edited).expect("edit");
    fs::remove_file(dest.join("etc/vigil/agent.yml")).expect("remove agent.yml");
    let out = install_sh(dest, &["--bin-dir", &bin_arg]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("kept"),
        "edited config reported as kept: {stdout}"
    );
    assert_eq!(fs::read_to_string(&cfg).expect("vigil.yml"), edited);
    assert_eq!(mode(&dest.join("etc/vigil/agent.yml")), 0o640);

    // Uninstall keeps configuration and data.
    let data = dest.join("var/lib/vigil/vigil.db");
    fs::create_dir_all(data.parent().expect("parent")).expect("data dir");
    fs::write(&data, b"data").expect("data file");
    install_sh(dest, &["--uninstall"]);
    for gone in [
        "usr/bin/vigil",
        "usr/bin/vigil-agent",
        "lib/systemd/system/vigil.service",
        "lib/systemd/system/vigil-agent.service",
        "usr/share/doc/vigil",
        "usr/share/vigil",
    ] {
        assert!(!dest.join(gone).exists(), "{gone} removed by --uninstall");
    }
    assert_eq!(fs::read_to_string(&cfg).expect("config kept"), edited);
    assert!(data.exists(), "data kept by --uninstall");

    // Purge removes configuration and data too.
    install_sh(dest, &["--uninstall", "--purge"]);
    assert!(
        !dest.join("etc/vigil").exists(),
        "/etc/vigil removed by --purge"
    );
    assert!(
        !dest.join("var/lib/vigil").exists(),
        "/var/lib/vigil removed by --purge"
    );
}

#[test]
fn agent_only_install_leaves_the_collector_out() {
    let bins = bin_dir();
    let stage = tempfile::tempdir().expect("tempdir");
    let dest = stage.path();
    install_sh(
        dest,
        &["--bin-dir", &bins.to_string_lossy(), "--only", "agent"],
    );
    assert_eq!(mode(&dest.join("usr/bin/vigil-agent")), 0o755);
    assert_eq!(mode(&dest.join("etc/vigil/agent.yml")), 0o640);
    assert!(!dest.join("usr/bin/vigil").exists());
    assert!(!dest.join("lib/systemd/system/vigil.service").exists());
    assert!(!dest.join("etc/vigil/vigil.yml").exists());
}

#[test]
fn install_refuses_bad_arguments() {
    let stage = tempfile::tempdir().expect("tempdir");
    for args in [
        &["--only", "database"][..],
        &["--purge"][..],
        &["--bin-dir", "/nonexistent/vigil-bins"][..],
        &["--frobnicate"][..],
    ] {
        let out = Command::new(workspace_root().join("deploy/install.sh"))
            .args(args)
            .env("DESTDIR", stage.path())
            .output()
            .expect("install.sh runs");
        assert!(!out.status.success(), "install.sh {args:?} should fail");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error:"),
            "install.sh {args:?} explains: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        fs::read_dir(stage.path()).expect("stage").count(),
        0,
        "nothing written"
    );
}

/// The installed binaries start on the installed configuration with the
/// units' own command lines: a shipped example that the binary refuses
/// would otherwise only show up as a failed service after `apt install`.
#[test]
fn installed_units_command_lines_start_on_the_installed_configuration() {
    let bins = bin_dir();
    let stage = tempfile::tempdir().expect("tempdir");
    let dest = stage.path().join("root");
    let state = stage.path().join("state");
    install_sh(&dest, &["--bin-dir", &bins.to_string_lossy()]);
    for (unit, ready) in [
        ("vigil.service", "/-/ready"),
        ("vigil-agent.service", "/-/healthy"),
    ] {
        let argv = exec_start(&dest, unit, &state);
        let port = vigil_e2e::free_port();
        let mut cmd = Command::new(&argv[0]);
        // --listen overrides the file's address so parallel tests do not
        // collide; everything else is the unit's.
        cmd.args(&argv[1..])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn");
        if unit == "vigil-agent.service" {
            // No collector here: shipping would only log retries.
            cmd.args(["--remote-write", ""]);
        }
        let mut proc = vigil_e2e::Proc::spawn(unit, &mut cmd).expect("starts");
        let url = format!("http://127.0.0.1:{port}{ready}");
        if let Err(e) = vigil_e2e::wait_ready(&url, std::time::Duration::from_secs(30)) {
            let status = proc.child.try_wait().ok().flatten();
            panic!(
                "{unit} as installed ({}) did not become ready: {e}; exit status {status:?}",
                argv.join(" ")
            );
        }
        if unit == "vigil.service" {
            check_installed_rules_loaded(port);
        }
        let status = proc
            .terminate(std::time::Duration::from_secs(20))
            .expect("exits on SIGTERM");
        assert!(
            status.success(),
            "{unit} exits cleanly on SIGTERM: {status}"
        );
        println!(
            "{unit}: ready and stopped cleanly with {}",
            argv[1..].join(" ")
        );
    }
}

/// The collector started by the unit's command line runs every installed
/// rule file: the threshold groups of `rules/*.rules.yml` and the anomaly
/// groups of `rules/anomaly/*.anomaly.yml`, as `/api/v1/rules` lists them.
fn check_installed_rules_loaded(port: u16) {
    let url = format!("http://127.0.0.1:{port}/api/v1/rules");
    let body: serde_json::Value = reqwest::blocking::get(&url)
        .and_then(|r| r.json())
        .expect("/api/v1/rules answers");
    let groups = body["data"]["groups"].as_array().expect("groups");
    let files: std::collections::BTreeSet<String> = groups
        .iter()
        .filter_map(|g| g["file"].as_str())
        .filter_map(|f| Path::new(f).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    for rule in repo_files("rules", ".rules.yml")
        .into_iter()
        .chain(repo_files("rules/anomaly", ".anomaly.yml"))
    {
        assert!(files.contains(&rule), "{rule} not loaded: {files:?}");
    }
    let anomaly: Vec<&str> = groups
        .iter()
        .filter(|g| g["name"] == "vigil-anomalies")
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter(|r| r["type"] == "alerting")
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        anomaly.contains(&"CPUUsageAnomaly"),
        "default anomaly rules listed as alerting rules: {anomaly:?}"
    );
    println!(
        "vigil.service loads {} rule files, anomaly rules {anomaly:?}",
        files.len()
    );
}

/// `Type=notify` is a contract between unit and binary: systemd waits for
/// READY=1, and with `WatchdogSec=` kills a service that stops sending
/// WATCHDOG=1. Play systemd's part with a datagram socket in
/// `NOTIFY_SOCKET` and check each binary says what its unit expects.
#[test]
fn binaries_speak_sd_notify_as_their_units_expect() {
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};

    let bins = bin_dir();
    // STOPPING=1 is optional for systemd (it only shows "deactivating"
    // sooner); the collector's contract (DESIGN.md §9) promises it.
    for (unit, bin, ready, stopping_promised) in [
        ("vigil.service", "vigil", "/-/ready", true),
        ("vigil-agent.service", "vigil-agent", "/-/healthy", false),
    ] {
        let unit_text =
            fs::read_to_string(workspace_root().join("deploy/systemd").join(unit)).expect("unit");
        assert!(
            unit_text.lines().any(|l| l == "Type=notify"),
            "{unit} is Type=notify"
        );
        let watchdog = unit_text.lines().any(|l| l.starts_with("WatchdogSec="));

        let dir = tempfile::tempdir().expect("tempdir");
        let sock_path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let port = vigil_e2e::free_port();
        let mut cmd = Command::new(bins.join(bin));
        if bin == "vigil" {
            cmd.arg("serve");
        } else {
            cmd.args(["--remote-write", ""]);
        }
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("NOTIFY_SOCKET", &sock_path)
            // systemd sets WATCHDOG_USEC from WatchdogSec=; 2 s keeps the
            // test short (pings are due every second).
            .env("WATCHDOG_USEC", "2000000")
            .env("RUST_LOG", "warn");
        let mut proc = vigil_e2e::Proc::spawn(bin, &mut cmd).expect("starts");

        let mut seen: Vec<String> = Vec::new();
        let recv_until = |want: &str, within: Duration, seen: &mut Vec<String>| -> bool {
            let deadline = Instant::now() + within;
            let mut buf = [0u8; 4096];
            while Instant::now() < deadline {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let hit = msg.lines().any(|l| l == want);
                    seen.push(msg);
                    if hit {
                        return true;
                    }
                }
            }
            false
        };
        assert!(
            recv_until("READY=1", Duration::from_secs(60), &mut seen),
            "{bin} sent no READY=1 (got {seen:?})"
        );
        vigil_e2e::wait_ready(
            &format!("http://127.0.0.1:{port}{ready}"),
            Duration::from_secs(5),
        )
        .expect("serving once READY=1 was sent");
        if watchdog {
            for _ in 0..2 {
                assert!(
                    recv_until("WATCHDOG=1", Duration::from_secs(3), &mut seen),
                    "{unit} sets WatchdogSec= but {bin} sent no WATCHDOG=1 within 3 s at WATCHDOG_USEC=2s (got {seen:?}); systemd would kill it"
                );
            }
        }
        let _ = Command::new("kill")
            .args(["-TERM", &proc.child.id().to_string()])
            .status();
        let stopping = recv_until("STOPPING=1", Duration::from_secs(20), &mut seen);
        assert!(
            stopping || !stopping_promised,
            "{bin} sent no STOPPING=1 on SIGTERM (got {seen:?})"
        );
        let status = proc
            .terminate(Duration::from_secs(20))
            .expect("exits after SIGTERM");
        assert!(status.success(), "{bin} exits cleanly: {status}");
        println!(
            "{bin}: READY=1{}{}",
            if watchdog { " WATCHDOG=1" } else { "" },
            if stopping {
                " STOPPING=1"
            } else {
                " (no STOPPING=1)"
            }
        );
    }
}

/// Files a one-`*` glob (`dir/*.rules.yml`) matches.
fn glob_one_star(pattern: &Path) -> Vec<PathBuf> {
    let name = pattern
        .file_name()
        .expect("pattern has a file name")
        .to_string_lossy()
        .into_owned();
    let Some((prefix, suffix)) = name.split_once('*') else {
        return if pattern.is_file() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        };
    };
    let dir = pattern.parent().expect("pattern has a directory");
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.len() >= prefix.len() + suffix.len() && n.starts_with(prefix) && n.ends_with(suffix)
        })
        .collect()
}

/// `cargo deb` itself is not needed in CI, but what it reads is checked:
/// every asset of `[package.metadata.deb]` exists, the unit and maintainer
/// scripts it picks up by name exist, and the scripts carry the
/// `#DEBHELPER#` token cargo-deb replaces with the systemd snippets.
#[test]
fn debian_package_metadata_points_at_real_files() {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata failed");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let mut checked = 0;
    for (package, unit) in [
        ("vigil", "vigil.service"),
        ("vigil-agent", "vigil-agent.service"),
    ] {
        let pkg = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .find(|p| p["name"] == package)
            .unwrap_or_else(|| panic!("package {package} in the workspace"));
        let deb = &pkg["metadata"]["deb"];
        assert!(deb.is_object(), "{package} has [package.metadata.deb]");
        let crate_dir = Path::new(pkg["manifest_path"].as_str().expect("manifest path"))
            .parent()
            .expect("crate dir")
            .to_path_buf();
        let assets = deb["assets"].as_array().expect("assets");
        let mut etc = 0;
        for a in assets {
            let (src, dest, mode) = (
                a[0].as_str().expect("source"),
                a[1].as_str().expect("dest"),
                a[2].as_str().expect("mode"),
            );
            assert!(
                u32::from_str_radix(mode, 8).is_ok(),
                "{package}: asset {src}: octal mode"
            );
            if let Some(bin) = src.strip_prefix("target/release/") {
                assert_eq!(bin, package, "{package} packages its own binary");
                continue;
            }
            let matches = glob_one_star(&crate_dir.join(src));
            assert!(
                !matches.is_empty(),
                "{package}: asset {src} matches no file"
            );
            if dest.starts_with("etc/") {
                etc += 1;
                assert!(
                    mode == "640" || mode == "644",
                    "{package}: {dest} mode {mode}"
                );
            }
            checked += matches.len();
        }
        if package == "vigil-agent" {
            // The agent's configuration is written for the host by the
            // postinst, with the generator the package ships.
            let generator = assets.iter().any(|a| {
                a[0].as_str() == Some("../deploy/agent-config.sh")
                    && a[1].as_str() == Some("usr/share/vigil/agent-config.sh")
            });
            assert!(generator, "{package} ships deploy/agent-config.sh");
            let postinst =
                fs::read_to_string(crate_dir.join("../deploy/debian/vigil-agent.postinst"))
                    .expect("postinst");
            assert!(
                postinst.contains("/usr/share/vigil/agent-config.sh"),
                "{package}: postinst writes /etc/vigil/agent.yml"
            );
        } else {
            assert!(etc > 0, "{package} ships its configuration under /etc");
        }
        if package == "vigil" {
            check_packaged_rules_are_loaded_by_the_unit(&crate_dir, assets, unit);
        }

        let units = &deb["systemd-units"];
        let unit_dir = crate_dir.join(units["unit-scripts"].as_str().expect("unit-scripts"));
        assert!(
            unit_dir.join(unit).is_file(),
            "{package}: {unit} found by cargo-deb's naming rule"
        );
        let scripts = crate_dir.join(
            deb["maintainer-scripts"]
                .as_str()
                .expect("maintainer-scripts"),
        );
        for script in ["postinst", "postrm"] {
            let path = scripts.join(format!("{package}.{script}"));
            let text =
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // cargo-deb replaces every occurrence, comments included, so exactly
            // one, on its own line, after the account is created.
            assert_eq!(
                text.matches("#DEBHELPER#").count(),
                1,
                "{}: one #DEBHELPER# token",
                path.display()
            );
            assert!(
                text.lines().any(|l| l == "#DEBHELPER#"),
                "{}: #DEBHELPER# on its own line",
                path.display()
            );
            assert!(mode(&path) & 0o111 != 0, "{} is executable", path.display());
            let sh = Command::new("sh")
                .arg("-n")
                .arg(&path)
                .status()
                .expect("sh -n");
            assert!(sh.success(), "{} parses as sh", path.display());
        }
    }
    println!("{checked} packaged files exist");
}

/// Every rule file the package puts in /etc/vigil/rules is matched by one
/// of the unit's `--rule-file` globs, and the default anomaly rules are
/// among them.
fn check_packaged_rules_are_loaded_by_the_unit(
    crate_dir: &Path,
    assets: &[serde_json::Value],
    unit: &str,
) {
    let text =
        fs::read_to_string(workspace_root().join("deploy/systemd").join(unit)).expect("repo unit");
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let words: Vec<&str> = exec.split_whitespace().collect();
    let globs: Vec<&str> = words
        .windows(2)
        .filter(|w| w[0] == "--rule-file")
        .filter_map(|w| w[1].strip_prefix("/etc/vigil/rules/"))
        .collect();
    let mut shipped = Vec::new();
    for a in assets {
        if a[1].as_str() != Some("etc/vigil/rules/") {
            continue;
        }
        for path in glob_one_star(&crate_dir.join(a[0].as_str().expect("source"))) {
            shipped.push(
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    for name in &shipped {
        let loaded = globs.iter().any(|g| match g.split_once('*') {
            Some((pre, suf)) => {
                name.len() >= pre.len() + suf.len() && name.starts_with(pre) && name.ends_with(suf)
            }
            None => name == g,
        });
        assert!(
            loaded,
            "{name} is packaged but {unit} ({globs:?}) does not load it"
        );
    }
    assert!(
        shipped.iter().any(|n| n == "default.anomaly.yml"),
        "the default anomaly rules are packaged: {shipped:?}"
    );
}

/// Copies a directory tree with `cp -a` (keeps symlinks, which unit
/// directories are full of).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .expect("cp runs");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// A throwaway root for `systemd-analyze --root`: the host's own unit files
/// (for `sysinit.target`, `network-online.target`…), our units, and the real
/// binaries where `ExecStart=` expects them.
fn analyze_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let units = root.path().join("lib/systemd/system");
    let host_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists())
        .expect("host has systemd unit files (package systemd)");
    copy_tree(host_units, &units);
    for unit in ["vigil.service", "vigil-agent.service"] {
        fs::copy(
            workspace_root().join("deploy/systemd").join(unit),
            units.join(unit),
        )
        .expect("copy unit");
    }
    let bins = bin_dir();
    fs::create_dir_all(root.path().join("usr/bin")).expect("usr/bin");
    for name in ["vigil", "vigil-agent"] {
        fs::copy(bins.join(name), root.path().join("usr/bin").join(name)).expect("copy binary");
    }
    fs::create_dir_all(root.path().join("bin")).expect("bin");
    let kill = ["/bin/kill", "/usr/bin/kill"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("kill(1) exists");
    fs::copy(kill, root.path().join("bin/kill")).expect("copy kill");
    root
}

/// Fails the test loudly when systemd's tools are missing: tests/run.sh
/// installs them (Debian package `systemd`), so a missing tool is a broken
/// test machine, not a reason to pass.
fn require_systemd_analyze() {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "systemd-analyze is not installed: apt-get install systemd (tests/run.sh does)"
    );
}

#[test]
fn units_pass_systemd_analyze_verify() {
    require_systemd_analyze();
    let root = analyze_root();
    let units: Vec<PathBuf> = ["vigil.service", "vigil-agent.service"]
        .iter()
        .map(|u| root.path().join("lib/systemd/system").join(u))
        .collect();
    let out = Command::new("systemd-analyze")
        .arg("--man=no")
        .arg(format!("--root={}", root.path().display()))
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // verify exits 0 on unknown keys and only warns, so any output fails.
    assert!(
        out.status.success() && stderr.trim().is_empty() && stdout.trim().is_empty(),
        "systemd-analyze verify: {}\n{stdout}{stderr}",
        out.status
    );
}

#[test]
fn units_exposure_stays_low() {
    require_systemd_analyze();
    let root = analyze_root();
    // The scores deploy/README.md reports; a change that weakens a unit
    // must update the README (and justify it there).
    for (unit, documented) in [("vigil.service", 1.1), ("vigil-agent.service", 1.3)] {
        let out = Command::new("systemd-analyze")
            .arg(format!("--root={}", root.path().display()))
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(root.path().join("lib/systemd/system").join(unit))
            .output()
            .expect("systemd-analyze runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| {
                panic!(
                    "no exposure line for {unit}: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let score: f64 = line
            .split(':')
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unparsable exposure line {line:?}"));
        println!("{unit}: exposure {score}");
        assert!(
            score <= documented + 1e-9,
            "{unit} exposure {score} is worse than the {documented} documented in deploy/README.md"
        );
    }
}
