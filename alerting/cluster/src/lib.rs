//! Gossip membership and state replication for a cluster of Vigil
//! alerting instances, with Alertmanager's cluster semantics.
//!
//! Membership, failure detection and anti-entropy come from
//! [`chitchat`] (Quickwit's scuttlebutt gossip over UDP with a phi-accrual
//! failure detector); this crate adds what Alertmanager's cluster adds on
//! top of memberlist:
//!
//! * **Replicated state kinds.** Each kind of shared state (silences, the
//!   notification log, …) implements [`Replicated`]: a key, a JSON value
//!   and an idempotent, convergent `merge`. A member publishes every entry
//!   it holds (its own and those it accepted from peers) in its own
//!   keyspace as `<kind>/<key>`; a peer's entry that `merge` accepts is
//!   published again, so the state outlives the member that created it and
//!   reaches members that join later. Because merges only accept strictly
//!   "newer" values, re-publishing never loops.
//! * **Position.** Live members sorted by name; [`Cluster::wait`] gives
//!   this member's position and how long it waits before notifying
//!   (`position × peer_timeout`, Alertmanager's `WaitStage`).
//! * **Settling.** The cluster reports `settling` until the number of
//!   peers has been stable for three checks `10 × gossip_interval` apart
//!   (Alertmanager's `Peer.Settle`), then `ready`.
//!
//! A member that cannot reach its peers sees itself alone, takes position
//! 0 and notifies at once: a partition fails open (both sides send).
//!
//! ```no_run
//! # async fn demo() -> Result<(), vigil_cluster::Error> {
//! use std::sync::Arc;
//! use vigil_cluster::{Cluster, ClusterOptions, Merge, Replicated};
//! struct Notes;
//! impl Replicated for Notes {
//!     fn kind(&self) -> &'static str { "note" }
//!     fn merge(&self, _key: &str, _value: &str) -> Merge { Merge::Unchanged }
//! }
//! let opts = ClusterOptions::new("127.0.0.1:9804".parse().unwrap());
//! let kinds: Vec<Arc<dyn Replicated>> = vec![Arc::new(Notes)];
//! let cluster = Cluster::start(opts, kinds, tokio_util::sync::CancellationToken::new()).await?;
//! cluster.publish("note", "a", "{\"text\":\"hello\"}".to_string());
//! # Ok(()) }
//! ```

mod args;
mod transport;

pub use args::{ClusterArgs, DEFAULT_PORT};

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use parking_lot::RwLock;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Errors starting the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cluster: cannot start gossip on {addr}: {reason}")]
    Start { addr: SocketAddr, reason: String },
    #[error("cluster: {0}")]
    Invalid(String),
}

/// How a member joins and behaves; Alertmanager's `--cluster.*` flags.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// UDP address gossip listens on (`--cluster.listen-address`).
    pub listen: SocketAddr,
    /// Address peers reach this member at; needed when `listen` is
    /// `0.0.0.0` (default: the local address that routes to the first
    /// peer, else 127.0.0.1).
    pub advertise: Option<SocketAddr>,
    /// Initial peers, `host:port` (DNS names are re-resolved, so a
    /// Kubernetes headless service name finds every pod).
    pub peers: Vec<String>,
    /// This member's name; members are ordered by it. Default: a new ULID
    /// per start, as Alertmanager does.
    pub name: Option<String>,
    /// Members only talk to members with the same cluster id.
    pub cluster_id: String,
    /// How often a member gossips (`--cluster.gossip-interval`).
    pub gossip_interval: Duration,
    /// How often every peer's full state is merged again, on top of the
    /// per-change events (`--cluster.pushpull-interval`).
    pub pushpull_interval: Duration,
    /// How long a member waits per position before notifying
    /// (`--cluster.peer-timeout`).
    pub peer_timeout: Duration,
    /// Test hook: while this file exists, every gossip packet in or out is
    /// dropped, as if the network between this member and its peers were
    /// cut.
    pub block_file: Option<PathBuf>,
}

impl ClusterOptions {
    /// Alertmanager's defaults with the given listen address.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            advertise: None,
            peers: Vec::new(),
            name: None,
            cluster_id: "vigil".into(),
            gossip_interval: Duration::from_millis(200),
            pushpull_interval: Duration::from_secs(60),
            peer_timeout: Duration::from_secs(15),
            block_file: None,
        }
    }
}

/// What a merge did with a peer's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The value was newer and is now the local state (it gets published
    /// again from this member).
    Changed,
    /// Same or older than what this member holds, or invalid.
    Unchanged,
}

/// One kind of replicated state. `merge` must be idempotent (merging the
/// same value twice changes nothing the second time) and convergent
/// (members that merged the same values in any order hold the same state):
/// typically "the newest version of each key wins, ties broken by
/// content".
pub trait Replicated: Send + Sync + 'static {
    /// Short name used as the key prefix, e.g. `silence`.
    fn kind(&self) -> &'static str;
    /// Applies a value a peer publishes (persisting it when accepted).
    fn merge(&self, key: &str, value: &str) -> Merge;
}

/// A member as `/api/v2/status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub name: String,
    pub address: String,
}

/// The cluster part of Alertmanager's `/api/v2/status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: String,
    /// `ready` or `settling`.
    pub status: &'static str,
    pub peers: Vec<Peer>,
}

/// Where this member stands when it is about to notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Index among the live members sorted by name.
    pub position: usize,
    /// `position × peer_timeout`.
    pub delay: Duration,
    /// False while the cluster settles: notifications wait for it.
    pub ready: bool,
}

/// Largest value gossiped; well under a UDP datagram (65,507 bytes).
pub const MAX_VALUE_BYTES: usize = 32 * 1024;

enum Op {
    Set(String, String),
    Delete(String),
}

/// A running cluster member; shared as `Arc<Cluster>`.
pub struct Cluster {
    name: String,
    advertise: SocketAddr,
    opts: ClusterOptions,
    ops: mpsc::UnboundedSender<Op>,
    members: RwLock<Vec<Peer>>,
    ready: AtomicBool,
    handle: tokio::sync::Mutex<Option<ChitchatHandle>>,
    kinds: HashMap<&'static str, Arc<dyn Replicated>>,
    oversized: std::sync::atomic::AtomicU64,
}

impl Cluster {
    /// Binds the gossip socket, joins the peers and starts publishing,
    /// merging and membership tracking; stops on `shutdown`.
    pub async fn start(
        opts: ClusterOptions,
        kinds: Vec<Arc<dyn Replicated>>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Cluster>, Error> {
        let mut by_kind: HashMap<&'static str, Arc<dyn Replicated>> = HashMap::new();
        for k in kinds {
            let name = k.kind();
            if name.is_empty() || name.contains('/') || by_kind.insert(name, k).is_some() {
                return Err(Error::Invalid(format!(
                    "state kind {name:?} is empty, contains '/' or is registered twice"
                )));
            }
        }
        let advertise = advertise_address(&opts).await;
        let name = opts.name.clone().unwrap_or_else(ulid);
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let id = ChitchatId::new(name.clone(), generation, advertise);
        let config = ChitchatConfig {
            chitchat_id: id.clone(),
            cluster_id: opts.cluster_id.clone(),
            gossip_interval: opts.gossip_interval,
            listen_addr: opts.listen,
            seed_nodes: opts.peers.clone(),
            failure_detector_config: FailureDetectorConfig {
                dead_node_grace_period: Duration::from_secs(3600),
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let transport = transport::Blockable::new(opts.block_file.clone());
        let handle = chitchat::spawn_chitchat(config, Vec::new(), &transport)
            .await
            .map_err(|e| Error::Start {
                addr: opts.listen,
                reason: format!("{e:#}"),
            })?;
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel::<(String, String)>();
        let chitchat = handle.chitchat();
        let listener = {
            let guard = chitchat.lock().await;
            let self_id = id.clone();
            guard.subscribe_event("", move |ev| {
                if *ev.node != self_id {
                    // Unbounded: events arrive at gossip pace and are
                    // merged at once; the periodic full merge repairs
                    // anything lost if the receiver has stopped.
                    let _ = events_tx.send((ev.key.to_string(), ev.value.to_string()));
                }
            })
        };
        let peer_count_hint = opts.peers.len();
        let me = Arc::new(Cluster {
            name: name.clone(),
            advertise,
            opts,
            ops: ops_tx,
            members: RwLock::new(vec![Peer {
                name: name.clone(),
                address: advertise.to_string(),
            }]),
            // A member without peers has nothing to settle with.
            ready: AtomicBool::new(peer_count_hint == 0),
            handle: tokio::sync::Mutex::new(Some(handle)),
            kinds: by_kind,
            oversized: Default::default(),
        });
        info!(name = %name, listen = %me.opts.listen, advertise = %advertise, peers = ?me.opts.peers, "cluster member started");
        tokio::spawn(Arc::clone(&me).publish_loop(ops_rx, shutdown.clone()));
        tokio::spawn(Arc::clone(&me).merge_loop(events_rx, shutdown.clone()));
        tokio::spawn(Arc::clone(&me).membership_loop(shutdown.clone()));
        {
            let me = Arc::clone(&me);
            tokio::spawn(async move {
                shutdown.cancelled().await;
                drop(listener);
                if let Some(h) = me.handle.lock().await.take()
                    && let Err(e) = h.shutdown().await
                {
                    debug!(error = %e, "gossip shutdown");
                }
            });
        }
        Ok(me)
    }

    /// This member's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address peers gossip with this member at.
    pub fn advertise_address(&self) -> SocketAddr {
        self.advertise
    }

    /// Publishes (or replaces) an entry of a kind from this member. An
    /// entry larger than [`MAX_VALUE_BYTES`] is not gossiped (logged and
    /// counted): one value that does not fit a datagram would stall every
    /// later change of this member, since deltas go out in version order.
    pub fn publish(&self, kind: &str, key: &str, value: String) {
        if value.len() > MAX_VALUE_BYTES {
            self.oversized.fetch_add(1, Ordering::Relaxed);
            warn!(
                kind,
                key,
                bytes = value.len(),
                "entry too large to gossip; peers will not see it"
            );
            return;
        }
        let _ = self.ops.send(Op::Set(format!("{kind}/{key}"), value));
    }

    /// Entries not gossiped because they were too large.
    pub fn oversized(&self) -> u64 {
        self.oversized.load(Ordering::Relaxed)
    }

    /// Stops publishing an entry (after local garbage collection).
    pub fn unpublish(&self, kind: &str, key: &str) {
        let _ = self.ops.send(Op::Delete(format!("{kind}/{key}")));
    }

    /// Live members, this one included, sorted by name.
    pub fn members(&self) -> Vec<Peer> {
        self.members.read().clone()
    }

    /// Position, delay before notifying, and readiness.
    pub fn wait(&self) -> Wait {
        let members = self.members.read();
        let position = position_of(&members, &self.name);
        Wait {
            position,
            delay: self.opts.peer_timeout * position as u32,
            ready: self.ready.load(Ordering::Relaxed),
        }
    }

    /// The cluster object of `/api/v2/status`.
    pub fn status(&self) -> Status {
        Status {
            name: self.name.clone(),
            status: if self.ready.load(Ordering::Relaxed) {
                "ready"
            } else {
                "settling"
            },
            peers: self.members(),
        }
    }

    /// The options the member runs with.
    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    async fn publish_loop(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Op>,
        shutdown: CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                op = rx.recv() => match op { Some(op) => op, None => return },
            };
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let guard = self.handle.lock().await;
            let Some(handle) = guard.as_ref() else {
                return;
            };
            let chitchat = handle.chitchat();
            drop(guard);
            let mut cc = chitchat.lock().await;
            let state = cc.self_node_state();
            for op in batch {
                match op {
                    Op::Set(k, v) => {
                        // Setting an unchanged value would still bump the
                        // version and re-gossip it.
                        if state.get(&k) != Some(v.as_str()) {
                            state.set(k, v);
                        }
                    }
                    Op::Delete(k) => {
                        if state.contains_key(&k) {
                            state.delete(&k);
                        }
                    }
                }
            }
        }
    }

    /// Merges one `kind/key` value; re-publishes it when accepted.
    fn merge_one(&self, full_key: &str, value: &str) -> Merge {
        let Some((kind, key)) = full_key.split_once('/') else {
            return Merge::Unchanged;
        };
        let Some(k) = self.kinds.get(kind) else {
            debug!(kind, "ignoring a state kind this member does not know");
            return Merge::Unchanged;
        };
        let m = k.merge(key, value);
        if m == Merge::Changed {
            let _ = self
                .ops
                .send(Op::Set(full_key.to_string(), value.to_string()));
        }
        m
    }

    async fn merge_loop(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<(String, String)>,
        shutdown: CancellationToken,
    ) {
        loop {
            let (k, v) = tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = rx.recv() => match ev { Some(ev) => ev, None => return },
            };
            self.merge_one(&k, &v);
        }
    }

    /// Every peer's full state, read under the gossip lock and merged
    /// outside it.
    async fn merge_all(&self) -> usize {
        let snapshot: Vec<(String, String)> = {
            let guard = self.handle.lock().await;
            let Some(handle) = guard.as_ref() else {
                return 0;
            };
            let chitchat = handle.chitchat();
            drop(guard);
            let cc = chitchat.lock().await;
            let me = cc.self_chitchat_id().clone();
            let live: Vec<ChitchatId> = cc.live_nodes().filter(|n| **n != me).cloned().collect();
            live.iter()
                .filter_map(|n| cc.node_state(n))
                .flat_map(|s| s.key_values().map(|(k, v)| (k.to_string(), v.to_string())))
                .collect()
        };
        snapshot
            .iter()
            .filter(|(k, v)| self.merge_one(k, v) == Merge::Changed)
            .count()
    }

    async fn membership_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.opts.gossip_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let settle_every = 10u32;
        let mut ticks = 0u32;
        let mut settle_last: Option<usize> = None;
        let mut settle_ok = 0;
        let pushpull_ticks = (self.opts.pushpull_interval.as_millis()
            / self.opts.gossip_interval.as_millis().max(1))
        .max(1) as u64;
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            n += 1;
            let Some(members) = self.live_members().await else {
                return;
            };
            let changed = *self.members.read() != members;
            if changed {
                info!(members = ?members.iter().map(|p| format!("{}@{}", p.name, p.address)).collect::<Vec<_>>(), "cluster membership changed");
                *self.members.write() = members.clone();
            }
            // A new member brings state: merge everything it has now
            // rather than wait for the push-pull interval.
            if changed || n.is_multiple_of(pushpull_ticks) {
                let merged = self.merge_all().await;
                if merged > 0 {
                    debug!(merged, "merged peer state");
                }
            }
            if !self.ready.load(Ordering::Relaxed) {
                ticks += 1;
                if ticks.is_multiple_of(settle_every) {
                    let count = members.len();
                    if settle_last == Some(count) {
                        settle_ok += 1;
                    } else {
                        settle_ok = 0;
                    }
                    settle_last = Some(count);
                    let timed_out =
                        self.opts.gossip_interval * ticks >= self.opts.pushpull_interval;
                    if settle_ok >= 2 || timed_out {
                        if timed_out && settle_ok < 2 {
                            warn!(
                                "cluster did not settle before the push-pull interval; going ready"
                            );
                        }
                        info!(peers = count, "cluster settled");
                        self.ready.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    async fn live_members(&self) -> Option<Vec<Peer>> {
        let guard = self.handle.lock().await;
        let handle = guard.as_ref()?;
        let chitchat = handle.chitchat();
        drop(guard);
        let cc = chitchat.lock().await;
        let mut members: Vec<Peer> = cc
            .live_nodes()
            .map(|n| Peer {
                name: n.node_id.to_string(),
                address: n.gossip_advertise_addr.to_string(),
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.address.cmp(&b.address)));
        members.dedup();
        Some(members)
    }
}

/// Index of `name` among members sorted by name (0 when absent: a member
/// always counts itself).
pub fn position_of(members: &[Peer], name: &str) -> usize {
    let mut names: Vec<&str> = members.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names.iter().position(|n| *n == name).unwrap_or(0)
}

/// The address to advertise: the explicit one; the listen address when it
/// names an interface; else the local address routing to the first peer
/// (a connected UDP socket sends nothing); else 127.0.0.1.
async fn advertise_address(opts: &ClusterOptions) -> SocketAddr {
    if let Some(a) = opts.advertise {
        return a;
    }
    if !opts.listen.ip().is_unspecified() {
        return opts.listen;
    }
    for peer in &opts.peers {
        let Ok(mut addrs) = tokio::net::lookup_host(peer.as_str()).await else {
            continue;
        };
        let Some(target) = addrs.next() else { continue };
        let bind: SocketAddr = if target.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        if let Ok(sock) = tokio::net::UdpSocket::bind(bind).await
            && sock.connect(target).await.is_ok()
            && let Ok(local) = sock.local_addr()
        {
            return SocketAddr::new(local.ip(), opts.listen.port());
        }
    }
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), opts.listen.port())
}

/// A ULID (48-bit millisecond time, 80 random bits, Crockford base32): the
/// form of Alertmanager's peer names.
pub fn ulid() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        & ((1u128 << 48) - 1);
    let random: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
    let v = (ms << 80) | random;
    (0..26)
        .rev()
        .map(|i| ALPHABET[((v >> (i * 5)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str) -> Peer {
        Peer {
            name: name.into(),
            address: format!("{name}:1"),
        }
    }

    #[test]
    fn position_is_the_rank_by_name() {
        let members = vec![peer("c"), peer("a"), peer("b")];
        assert_eq!(position_of(&members, "a"), 0);
        assert_eq!(position_of(&members, "b"), 1);
        assert_eq!(position_of(&members, "c"), 2);
        // Alone (partitioned): first, so it notifies at once.
        assert_eq!(position_of(&[peer("c")], "c"), 0);
    }

    #[test]
    fn ulids_are_26_characters_and_sort_by_time() {
        let a = ulid();
        std::thread::sleep(Duration::from_millis(2));
        let b = ulid();
        assert_eq!(a.len(), 26);
        assert!(a[..10] < b[..10], "{a} {b}");
        assert_ne!(a, b);
    }
}
