//! Free TCP ports for tests that start servers on 127.0.0.1.
//!
//! Asking the kernel for port 0 and releasing it hands back a port from the
//! ephemeral range, which the kernel also hands to outgoing connections: a
//! client connecting anywhere in the meantime can take it and the server
//! then fails with "address in use". Picking below the ephemeral range
//! (Linux default 32768–60999) avoids that race.
//!
//! Test processes run in parallel (cargo runs test binaries one after the
//! other, but a CI run can share the machine with another suite), and a
//! port handed to a child process is free until the child binds it. So a
//! port is also reserved across processes: a file named after it is
//! created exclusively in a shared directory, and no test process picks a
//! reserved port again for one to two [`RESERVATION`] periods.
//!
//! Shared by several test crates through `#[path]`, so it depends on std only.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const LOW: u32 = 20_000;
const SPAN: u32 = 12_000;

/// How long a port stays reserved for the process that picked it: longer
/// than any one test binary takes to start its servers.
const RESERVATION: Duration = Duration::from_secs(600);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A TCP port on 127.0.0.1 that was free a moment ago, lies outside the
/// kernel's ephemeral range and is reserved against other test processes.
/// For a server in the test process itself use [`bind_local`]: it keeps the
/// listener, so nothing can take the port in between.
pub fn free_port() -> u16 {
    bind_local().local_addr().map(|a| a.port()).unwrap_or(0)
}

/// A listener on 127.0.0.1, bound outside the ephemeral range on a port
/// reserved against other test processes, and kept.
pub fn bind_local() -> TcpListener {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos);
    for _ in 0..SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + seed.wrapping_add(step.wrapping_mul(7_919)) % SPAN;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if !reserve(port) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener;
        }
    }
    // Everything below the ephemeral range is taken: fall back to the kernel.
    TcpListener::bind("127.0.0.1:0").expect("bind any port on 127.0.0.1")
}

fn reservations() -> PathBuf {
    std::env::temp_dir().join("vigil-test-ports")
}

/// Claims `port` for this process unless another test process claimed it
/// in this or the previous [`RESERVATION`] period. A claim is a file
/// `PORT.PERIOD` created exclusively, so of two processes claiming at once
/// only one wins, and no claim is ever deleted while it counts. Where the
/// directory cannot be written the claim succeeds: the bind check remains.
fn reserve(port: u16) -> bool {
    let dir = reservations();
    if std::fs::create_dir_all(&dir).is_err() {
        return true;
    }
    let period = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / RESERVATION.as_secs())
        .unwrap_or(0);
    if dir
        .join(format!("{port}.{}", period.saturating_sub(1)))
        .exists()
    {
        return false;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(format!("{port}.{period}")))
    {
        Ok(_) => {
            forget_old_claims(&dir, port, period);
            true
        }
        Err(e) => e.kind() != ErrorKind::AlreadyExists,
    }
}

/// Removes this port's claims from before the previous period, which no
/// longer count, so the directory stays small.
fn forget_old_claims(dir: &std::path::Path, port: u16, period: u64) {
    for old in period.saturating_sub(8)..period.saturating_sub(1) {
        let _ = std::fs::remove_file(dir.join(format!("{port}.{old}")));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_outside_the_ephemeral_range_and_distinct() {
        let a = super::free_port();
        let b = super::free_port();
        assert!((20_000..32_000).contains(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn a_picked_port_is_reserved_against_other_processes() {
        let port = super::free_port();
        // Another process asking for this port now is refused.
        assert!(!super::reserve(port));
    }
}
