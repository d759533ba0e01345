//! `deploy/quickstart.sh` as a new user meets it: the first run starts the
//! collector and the agent and says so; a second run while the first is up
//! fails fast, non-zero, saying what is in the way, and never claims that
//! Vigil is running; a run whose collector cannot open its data directory
//! says that the collector failed. The real script runs with the prebuilt
//! debug binaries (`VIGIL_BIN_DIR`) on test ports and directories.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use vigil_e2e::{binary, free_port, workspace_root};

struct Setup {
    bin_dir: PathBuf,
    port: u16,
    agent_port: u16,
    data: PathBuf,
    agent_data: PathBuf,
}

fn quickstart(s: &Setup) -> Command {
    let mut cmd = Command::new(workspace_root().join("deploy/quickstart.sh"));
    cmd.env("VIGIL_BIN_DIR", &s.bin_dir)
        .env("VIGIL_PORT", s.port.to_string())
        .env("VIGIL_AGENT_PORT", s.agent_port.to_string())
        .env("VIGIL_DATA_DIR", &s.data)
        .env("VIGIL_AGENT_DATA_DIR", &s.agent_data)
        .stdin(Stdio::null())
        // Its own process group, so that the script and everything it
        // started can be stopped together.
        .process_group(0);
    cmd
}

/// A quick start running in the background; stopped (script, collector
/// and agent) when dropped.
struct Running {
    child: Child,
}

impl Running {
    fn signal_group(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.signal_group("-KILL");
        let _ = self.child.wait();
    }
}

/// Runs to completion, or fails the test if it has not ended by `limit`.
fn run_to_end(mut cmd: Command, log: &Path, limit: Duration) -> (ExitStatus, String) {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    let mut child = cmd
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("quickstart runs");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "quickstart still running after {limit:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, std::fs::read_to_string(log).expect("log"))
}

#[test]
fn a_second_quick_start_fails_fast_and_says_why() {
    let vigil = binary("vigil").expect("vigil builds");
    binary("vigil-agent").expect("vigil-agent builds");
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup {
        bin_dir: vigil.parent().expect("bin dir").to_path_buf(),
        port: free_port(),
        agent_port: free_port(),
        data: dir.path().join("data"),
        agent_data: dir.path().join("data-agent"),
    };

    // First run: up, and it says so.
    let first_log = dir.path().join("first.log");
    let out = std::fs::File::create(&first_log).expect("log");
    let child = quickstart(&setup)
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("quickstart starts");
    let mut first = Running { child };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&first_log).unwrap_or_default();
        if text.contains("Vigil is running") {
            break;
        }
        if let Ok(Some(st)) = first.child.try_wait() {
            panic!("the first quick start ended ({st}):\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "the first quick start never came up:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for url in [
        format!("http://127.0.0.1:{}/-/ready", setup.port),
        format!("http://127.0.0.1:{}/-/healthy", setup.agent_port),
    ] {
        let r = reqwest::blocking::get(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(r.status().is_success(), "{url}: {}", r.status());
    }

    // Second run, same ports and directories: refused before starting
    // anything, naming the port.
    let (second, text) = run_to_end(
        quickstart(&setup),
        &dir.path().join("second.log"),
        Duration::from_secs(30),
    );
    assert!(!second.success(), "second run succeeded:\n{text}");
    assert!(
        text.contains(&format!(
            "port {} on 127.0.0.1 is already in use",
            setup.port
        )),
        "the second run says what is in the way:\n{text}"
    );
    assert!(!text.contains("Vigil is running"), "{text}");

    // Free ports but the first run's data directory: the collector cannot
    // open it, and the script says the collector failed.
    let locked = Setup {
        bin_dir: setup.bin_dir.clone(),
        port: free_port(),
        agent_port: free_port(),
        data: setup.data.clone(),
        agent_data: dir.path().join("data-agent-2"),
    };
    let (third, text) = run_to_end(
        quickstart(&locked),
        &dir.path().join("third.log"),
        Duration::from_secs(60),
    );
    assert!(!third.success(), "third run succeeded:\n{text}");
    assert!(
        text.contains("the collector failed to start"),
        "the third run names the process that failed:\n{text}"
    );
    assert!(!text.contains("Vigil is running"), "{text}");

    // The first run is untouched by both and still serves.
    let url = format!("http://127.0.0.1:{}/-/ready", setup.port);
    assert!(
        reqwest::blocking::get(&url).is_ok_and(|r| r.status().is_success()),
        "the first collector still answers"
    );
    assert!(
        first.child.try_wait().expect("wait").is_none(),
        "the first quick start still runs"
    );
    // Ctrl-C's signal to the script stops both processes.
    first.signal_group("-INT");
    let deadline = Instant::now() + Duration::from_secs(20);
    while first.child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the quick start ignored SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", setup.port)).is_err(),
        "the collector stopped with the script"
    );
}
