//! The `--cluster.*` command-line flags, shared by `vigil serve` and
//! `vigil-alertmanager`: Vigil's short spellings and Alertmanager's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::ClusterOptions;

/// Gossip port when peers are given without a listen address.
pub const DEFAULT_PORT: u16 = 9804;

/// Cluster flags (all optional: without a listen address or peers the
/// instance runs alone).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// UDP address to gossip on, e.g. 0.0.0.0:9804; joins a cluster. An
    /// empty value disables clustering.
    #[arg(long = "cluster-listen", visible_alias = "cluster.listen-address")]
    pub cluster_listen: Option<String>,
    /// A peer's gossip address (host:port; DNS names are re-resolved);
    /// repeatable.
    #[arg(long = "cluster-peer", visible_alias = "cluster.peer")]
    pub cluster_peers: Vec<String>,
    /// Address to advertise to peers (default: the listen address, or the
    /// local address that routes to the first peer when listening on
    /// 0.0.0.0).
    #[arg(long = "cluster.advertise-address")]
    pub cluster_advertise: Option<SocketAddr>,
    /// Time to wait per position in the cluster before notifying.
    #[arg(long = "cluster.peer-timeout", default_value = "15s", value_parser = humantime::parse_duration)]
    pub cluster_peer_timeout: Duration,
    /// Interval between gossip messages.
    #[arg(long = "cluster.gossip-interval", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub cluster_gossip_interval: Duration,
    /// Interval between full merges of every peer's state.
    #[arg(long = "cluster.pushpull-interval", default_value = "1m", value_parser = humantime::parse_duration)]
    pub cluster_pushpull_interval: Duration,
    /// This member's name (members are ordered by it; default a new ULID
    /// at each start, as Alertmanager).
    #[arg(long = "cluster.name")]
    pub cluster_name: Option<String>,
    /// Test hook: while this file exists, gossip packets are dropped.
    #[arg(long = "cluster.test-block-file", hide = true)]
    pub cluster_block_file: Option<PathBuf>,
}

impl ClusterArgs {
    /// The options these flags ask for; `None` when clustering is off.
    pub fn options(&self) -> Result<Option<ClusterOptions>, String> {
        let listen: SocketAddr = match self.cluster_listen.as_deref() {
            Some("") => return Ok(None),
            Some(l) => l
                .parse()
                .map_err(|e| format!("--cluster-listen {l:?}: {e}"))?,
            None if self.cluster_peers.is_empty() => return Ok(None),
            None => (std::net::Ipv4Addr::UNSPECIFIED, DEFAULT_PORT).into(),
        };
        if self.cluster_gossip_interval.is_zero() || self.cluster_pushpull_interval.is_zero() {
            return Err(
                "--cluster.gossip-interval and --cluster.pushpull-interval must be positive".into(),
            );
        }
        let mut o = ClusterOptions::new(listen);
        o.peers = self
            .cluster_peers
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect();
        o.advertise = self.cluster_advertise;
        o.peer_timeout = self.cluster_peer_timeout;
        o.gossip_interval = self.cluster_gossip_interval;
        o.pushpull_interval = self.cluster_pushpull_interval;
        o.name = self.cluster_name.clone();
        o.block_file = self.cluster_block_file.clone();
        Ok(Some(o))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cluster: ClusterArgs,
    }

    fn parse(args: &[&str]) -> Result<Option<ClusterOptions>, String> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.cluster.options()
    }

    #[test]
    fn both_spellings_and_defaults() {
        assert!(parse(&[]).expect("ok").is_none(), "off by default");
        let o = parse(&[
            "--cluster-listen",
            "127.0.0.1:9904",
            "--cluster-peer",
            "127.0.0.1:9905",
            "--cluster.peer=127.0.0.1:9906",
            "--cluster.peer-timeout=2s",
        ])
        .expect("ok")
        .expect("on");
        assert_eq!(o.listen, "127.0.0.1:9904".parse().expect("addr"));
        assert_eq!(o.peers, vec!["127.0.0.1:9905", "127.0.0.1:9906"]);
        assert_eq!(o.peer_timeout, Duration::from_secs(2));
        assert_eq!(o.gossip_interval, Duration::from_millis(200));
        let o = parse(&["--cluster.listen-address=0.0.0.0:9094"])
            .expect("ok")
            .expect("on");
        assert_eq!(o.listen.port(), 9094);
        let o = parse(&["--cluster.peer", "vigil-0.vigil:9804"])
            .expect("ok")
            .expect("on");
        assert_eq!(o.listen.port(), DEFAULT_PORT);
        assert!(
            parse(&["--cluster.listen-address=", "--cluster.peer=a:1"])
                .expect("ok")
                .is_none()
        );
        assert!(parse(&["--cluster-listen", "nonsense"]).is_err());
    }
}
