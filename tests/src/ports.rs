//! Free TCP ports for tests that start servers on 127.0.0.1.
//!
//! Asking the kernel for port 0 and releasing it hands back a port from the
//! ephemeral range, which the kernel also hands to outgoing connections: a
//! client connecting anywhere in the meantime can take it and the server
//! then fails with "address in use". Picking below the ephemeral range
//! (Linux default 32768–60999) avoids that race; spreading by process id
//! keeps parallel test binaries apart.
//!
//! Shared by several test crates through `#[path]`, so it depends on std only.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

const LOW: u32 = 20_000;
const SPAN: u32 = 12_000;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A TCP port on 127.0.0.1 that was free a moment ago and lies outside the
/// kernel's ephemeral range. For a server in the test process itself use
/// [`bind_local`]: between releasing this port and binding it again another
/// test process can take it.
pub fn free_port() -> u16 {
    bind_local().local_addr().map(|a| a.port()).unwrap_or(0)
}

/// A listener on 127.0.0.1, bound outside the ephemeral range and kept: no
/// other process can take its port between choosing and binding.
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
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener;
        }
    }
    // Everything below the ephemeral range is taken: fall back to the kernel.
    TcpListener::bind("127.0.0.1:0").expect("bind any port on 127.0.0.1")
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
}
