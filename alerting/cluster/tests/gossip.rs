//! Two real members gossiping over UDP on 127.0.0.1: membership, ordering,
//! replication of a state kind with re-publication, and a partition made
//! with the block-file hook. Polls observable state, never sleeps for a
//! fixed time as an assertion.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use vigil_cluster::{Cluster, ClusterOptions, Merge, Replicated};

#[path = "../../../tests/src/ports.rs"]
mod ports;

/// A register per key holding the largest number seen: idempotent and
/// convergent like the alerting kinds.
#[derive(Default)]
struct Numbers(Mutex<HashMap<String, u64>>);

struct Kind(Arc<Numbers>);

impl Replicated for Kind {
    fn kind(&self) -> &'static str {
        "number"
    }
    fn merge(&self, key: &str, value: &str) -> Merge {
        let Ok(v) = value.parse::<u64>() else {
            return Merge::Unchanged;
        };
        let mut m = self.0.0.lock();
        if m.get(key).is_some_and(|cur| *cur >= v) {
            return Merge::Unchanged;
        }
        m.insert(key.to_string(), v);
        Merge::Changed
    }
}

fn udp_port() -> u16 {
    loop {
        let p = ports::free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_replicate_order_and_fail_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb) = (udp_port(), udp_port());
    let shutdown = CancellationToken::new();
    let start = |name: &str, port: u16, peer: u16, numbers: Arc<Numbers>| {
        let mut o = ClusterOptions::new(([127, 0, 0, 1], port).into());
        o.name = Some(name.to_string());
        o.peers = vec![format!("127.0.0.1:{peer}")];
        o.gossip_interval = Duration::from_millis(50);
        o.peer_timeout = Duration::from_secs(3);
        o.block_file = Some(dir.path().join(name));
        let kinds: Vec<Arc<dyn Replicated>> = vec![Arc::new(Kind(numbers))];
        Cluster::start(o, kinds, shutdown.clone())
    };
    let (na, nb) = (Arc::new(Numbers::default()), Arc::new(Numbers::default()));
    let a = start("a", pa, pb, na.clone()).await.expect("a starts");
    let b = start("b", pb, pa, nb.clone()).await.expect("b starts");

    until("both see two members", || {
        a.members().len() == 2 && b.members().len() == 2
    })
    .await;
    until("both settled", || a.wait().ready && b.wait().ready).await;
    assert_eq!(a.status().status, "ready");
    assert_eq!(a.wait().position, 0);
    assert_eq!(b.wait().position, 1);
    assert_eq!(b.wait().delay, Duration::from_secs(3));
    assert_eq!(a.status().peers, b.status().peers);

    // A value published on a reaches b, and b publishes it again.
    na.0.lock().insert("x".into(), 1);
    a.publish("number", "x", "1".into());
    until("b merging x", || nb.0.lock().get("x") == Some(&1)).await;
    na.0.lock().insert("x".into(), 5);
    a.publish("number", "x", "5".into());
    until("b taking the newer x", || nb.0.lock().get("x") == Some(&5)).await;
    // An older value from b never wins on a.
    b.publish("number", "x", "3".into());
    b.publish("number", "y", "7".into());
    until("a merging y", || na.0.lock().get("y") == Some(&7)).await;
    assert_eq!(na.0.lock().get("x"), Some(&5));

    // Partition: each alone, both first in line.
    std::fs::write(dir.path().join("b"), b"").expect("block b");
    until("each alone", || {
        a.members().len() == 1 && b.members().len() == 1
    })
    .await;
    assert_eq!(a.wait().position, 0);
    assert_eq!(
        b.wait().position,
        0,
        "cut off: b sends at once (fails open)"
    );
    assert_eq!(b.wait().delay, Duration::ZERO);
    // Written on each side during the partition, merged after it heals.
    a.publish("number", "p", "10".into());
    na.0.lock().insert("p".into(), 10);
    b.publish("number", "q", "20".into());
    nb.0.lock().insert("q".into(), 20);
    std::fs::remove_file(dir.path().join("b")).expect("unblock b");
    until("healed and converged", || {
        a.members().len() == 2
            && nb.0.lock().get("p") == Some(&10)
            && na.0.lock().get("q") == Some(&20)
    })
    .await;
    assert_eq!(*na.0.lock(), *nb.0.lock(), "same state on both");
    shutdown.cancel();
}
