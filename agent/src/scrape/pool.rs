//! One scrape pool per `scrape:` job, as Prometheus's `scrapePool`: it runs
//! the job's discovery providers (the static targets, each
//! `file_sd_configs` and `http_sd_configs` entry), and whenever one of them
//! sends new target groups it rebuilds the job's targets (relabeled by
//! [`super::target::populate`]) and syncs the scrape loops: a target that
//! disappeared has its loop stopped and its last samples withdrawn from
//! `/metrics`, a new one gets a loop, an unchanged one (same labels, URL,
//! interval and timeout) keeps its loop: no restart, no duplicate.
//!
//! [`Targets`] keeps every pool's view for `GET /api/v1/targets` (active
//! targets with their health, dropped ones with their discovered labels) and
//! for the discovery self-metrics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use vigil_wire::Labels;
use vigil_wire::relabel::Relabel;
use vigil_wire::remote_write::MetricType;

use super::target::{JobDefaults, Outcome, Target, format_duration, populate};
use super::{Health, ScrapeCollector};
use crate::config::ScrapeConfig;
use crate::discovery::{SdStats, TargetGroup, Update, file, http};
use crate::family::Family;
use crate::pipeline::Pipeline;

/// An active target and its last scrape.
#[derive(Debug, Clone)]
pub struct ActiveTarget {
    pub target: Arc<Target>,
    pub health: Arc<Mutex<Health>>,
}

/// What one pool shows.
#[derive(Debug, Clone, Default)]
pub struct PoolView {
    pub job: String,
    pub active: Vec<ActiveTarget>,
    /// Discovered labels of the targets `relabel_configs` dropped.
    pub dropped: Vec<Labels>,
    /// Targets discovered before relabeling.
    pub discovered: usize,
}

/// Every pool's targets and the discovery counters of one agent run.
#[derive(Debug, Default)]
pub struct Targets {
    pools: Mutex<BTreeMap<usize, PoolView>>,
    pub sd: Arc<SdStats>,
}

/// RFC 3339 with milliseconds, UTC; Go's zero time when never.
fn rfc3339(t: Option<std::time::SystemTime>) -> String {
    match t {
        Some(t) => chrono::DateTime::<chrono::Utc>::from(t)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

fn label_map(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|l| (l.name.clone(), Value::String(l.value.clone())))
            .collect(),
    )
}

impl Targets {
    fn set(&self, index: usize, view: PoolView) {
        self.pools.lock().insert(index, view);
    }

    fn remove(&self, index: usize) {
        self.pools.lock().remove(&index);
    }

    /// The `data` of Prometheus's `GET /api/v1/targets`: `state` is
    /// `active`, `dropped` or `any` (default), `pool` limits to one job.
    pub fn api(&self, state: Option<&str>, pool: Option<&str>) -> Value {
        let pools = self.pools.lock().clone();
        let pools = pools
            .values()
            .filter(|p| pool.is_none_or(|want| want == p.job));
        let (show_active, show_dropped) = match state.map(str::to_ascii_lowercase).as_deref() {
            Some("active") => (true, false),
            Some("dropped") => (false, true),
            _ => (true, true),
        };
        let mut active = Vec::new();
        let mut dropped = Vec::new();
        let mut dropped_counts = serde_json::Map::new();
        for p in pools {
            dropped_counts.insert(p.job.clone(), json!(p.dropped.len()));
            if show_active {
                for a in &p.active {
                    let h = a.health.lock().clone();
                    let health = match h.up {
                        None => "unknown",
                        Some(true) => "up",
                        Some(false) => "down",
                    };
                    active.push(json!({
                        "discoveredLabels": label_map(&a.target.discovered),
                        "labels": label_map(&a.target.labels),
                        "scrapePool": p.job,
                        "scrapeUrl": a.target.url,
                        "globalUrl": a.target.url,
                        "lastError": h.last_error,
                        "lastScrape": rfc3339(h.last_scrape),
                        "lastScrapeDuration": h.last_duration.as_secs_f64(),
                        "health": health,
                        "scrapeInterval": format_duration(a.target.interval),
                        "scrapeTimeout": format_duration(a.target.timeout),
                    }));
                }
            }
            if show_dropped {
                for d in &p.dropped {
                    dropped.push(json!({
                        "discoveredLabels": label_map(d),
                        "scrapePool": p.job,
                    }));
                }
            }
        }
        json!({
            "activeTargets": active,
            "droppedTargets": dropped,
            "droppedTargetCounts": dropped_counts,
        })
    }

    /// The discovery and target self-metrics, with Prometheus's names.
    pub fn families(&self) -> Vec<Family> {
        let pools = self.pools.lock().clone();
        let mut discovered = Family::gauge(
            "prometheus_sd_discovered_targets",
            "Current number of discovered targets.",
        );
        let mut active = Family::gauge(
            "prometheus_target_scrape_pool_targets",
            "Current number of targets in this scrape pool.",
        );
        let mut dropped = Family::gauge(
            "vigil_agent_scrape_pool_dropped_targets",
            "Targets of this scrape pool dropped by relabel_configs.",
        );
        for p in pools.values() {
            discovered.push(
                &[("config", p.job.as_str()), ("name", "scrape")],
                p.discovered as f64,
            );
            active.push(&[("scrape_job", p.job.as_str())], p.active.len() as f64);
            dropped.push(&[("scrape_job", p.job.as_str())], p.dropped.len() as f64);
        }
        let mut mtimes = Family::gauge(
            "prometheus_sd_file_mtime_seconds",
            "Timestamp (mtime) of files read by FileSD. Timestamp is set at read time.",
        );
        for (f, t) in self.sd.file_mtimes.lock().iter() {
            mtimes.push(&[("filename", f.as_str())], *t);
        }
        vec![
            discovered,
            active,
            dropped,
            mtimes,
            Family::single(
                "prometheus_sd_file_read_errors_total",
                "The number of File-SD read errors.",
                MetricType::Counter,
                self.sd.file_read_errors.load(Ordering::Relaxed) as f64,
            ),
            Family::single(
                "prometheus_sd_http_failures_total",
                "Number of HTTP service discovery refresh failures.",
                MetricType::Counter,
                self.sd.http_failures.load(Ordering::Relaxed) as f64,
            ),
        ]
    }
}

/// A running scrape loop.
struct Running {
    name: String,
    stop: CancellationToken,
    task: JoinHandle<()>,
    active: ActiveTarget,
}

/// The scrape pool of one job.
pub struct ScrapePool {
    index: usize,
    cfg: ScrapeConfig,
    defaults: JobDefaults,
    client: reqwest::Client,
    relabel: Vec<Relabel>,
    metric_relabel: Arc<Vec<Relabel>>,
    pipeline: Arc<Pipeline>,
}

fn key(t: &Target) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&t.labels, &t.url, t.interval, t.timeout).hash(&mut h);
    h.finish()
}

impl ScrapePool {
    /// `index` is the job's place in `scrape:`; `interval` its interval.
    /// The configuration must be valid (relabel rules compile).
    pub fn new(
        index: usize,
        cfg: ScrapeConfig,
        interval: Duration,
        pipeline: Arc<Pipeline>,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("vigil-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        let relabel = Relabel::compile_all("relabel_configs", &cfg.relabel_configs)?;
        let metric_relabel =
            Relabel::compile_all("metric_relabel_configs", &cfg.metric_relabel_configs)?;
        Ok(Self {
            index,
            defaults: JobDefaults::new(&cfg, interval),
            cfg,
            client,
            relabel,
            metric_relabel: Arc::new(metric_relabel),
            pipeline,
        })
    }

    /// The static groups: `targets` and `static_configs`.
    fn static_groups(&self) -> Vec<TargetGroup> {
        let mut groups = Vec::new();
        if !self.cfg.targets.is_empty() {
            groups.push(TargetGroup {
                targets: self.cfg.targets.clone(),
                labels: BTreeMap::new(),
            });
        }
        for s in &self.cfg.static_configs {
            groups.push(TargetGroup {
                targets: s.targets.clone(),
                labels: s.labels.clone(),
            });
        }
        groups
    }

    /// Runs the pool until `shutdown`: its providers, and its scrape loops.
    pub async fn run(self, shutdown: CancellationToken) {
        let stop = shutdown.child_token();
        let sd = self.pipeline.targets.sd.clone();
        let (tx, mut rx) = mpsc::channel::<Update>(16);
        let mut providers = JoinSet::new();
        let mut n = 1;
        for f in &self.cfg.file_sd_configs {
            providers.spawn(file::run(
                f.clone(),
                n,
                tx.clone(),
                sd.clone(),
                stop.clone(),
            ));
            n += 1;
        }
        for h in &self.cfg.http_sd_configs {
            let timeout = h
                .refresh_interval
                .0
                .clamp(Duration::from_secs(1), Duration::from_secs(30));
            match http::client(timeout) {
                Ok(c) => {
                    providers.spawn(http::run(
                        h.clone(),
                        n,
                        tx.clone(),
                        sd.clone(),
                        c,
                        stop.clone(),
                    ));
                }
                Err(e) => {
                    tracing::error!(job = %self.cfg.job, url = %h.url, error = %e, "http_sd_configs: cannot build the HTTP client")
                }
            }
            n += 1;
        }
        drop(tx);
        let mut groups: Vec<Vec<TargetGroup>> = vec![Vec::new(); n];
        groups[0] = self.static_groups();
        let mut running: HashMap<u64, Running> = HashMap::new();
        self.sync(&groups, &mut running, &stop).await;
        loop {
            let update = tokio::select! {
                _ = shutdown.cancelled() => break,
                u = rx.recv() => u,
            };
            let Some((i, g)) = update else {
                // Every provider ended (none configured): only static targets.
                shutdown.cancelled().await;
                break;
            };
            groups[i] = g;
            // Take whatever else is already waiting: one sync for a burst.
            while let Ok((i, g)) = rx.try_recv() {
                groups[i] = g;
            }
            self.sync(&groups, &mut running, &stop).await;
        }
        stop.cancel();
        while providers.join_next().await.is_some() {}
        for (_, r) in running.drain() {
            self.stop_loop(r).await;
        }
        self.pipeline.targets.remove(self.index);
    }

    /// Stops a loop, waits for it, and withdraws its samples and
    /// collection counters.
    async fn stop_loop(&self, r: Running) {
        r.stop.cancel();
        if let Err(e) = r.task.await {
            tracing::error!(collector = %r.name, error = %e, "scrape task failed");
        }
        self.pipeline.forget(&r.name);
    }

    /// Rebuilds the targets from every provider's groups and starts and
    /// stops loops to match.
    async fn sync(
        &self,
        groups: &[Vec<TargetGroup>],
        running: &mut HashMap<u64, Running>,
        stop: &CancellationToken,
    ) {
        let mut wanted: Vec<(u64, Target)> = Vec::new();
        let mut seen = HashSet::new();
        let mut dropped = Vec::new();
        let mut discovered = 0;
        for g in groups.iter().flatten() {
            for address in &g.targets {
                discovered += 1;
                match populate(&self.defaults, address, &g.labels, &self.relabel) {
                    Outcome::Active(t) => {
                        let k = key(&t);
                        // Identical targets are scraped once.
                        if seen.insert(k) {
                            wanted.push((k, t));
                        }
                    }
                    Outcome::Dropped(l) => dropped.push(l),
                    Outcome::Failed(e) => {
                        tracing::warn!(job = %self.cfg.job, target = %address, error = %e, "creating target failed");
                    }
                }
            }
        }
        let gone: Vec<u64> = running
            .keys()
            .filter(|k| !seen.contains(*k))
            .copied()
            .collect();
        for k in gone {
            if let Some(r) = running.remove(&k) {
                tracing::info!(job = %self.cfg.job, url = %r.active.target.url, "target gone: scrape loop stopped");
                self.stop_loop(r).await;
            }
        }
        let mut names: HashSet<String> = running.values().map(|r| r.name.clone()).collect();
        for (k, t) in wanted {
            if running.contains_key(&k) {
                continue;
            }
            let instance = t.labels.get("instance").unwrap_or("").to_string();
            let mut name = format!("scrape/{}/{instance}", self.cfg.job);
            if names.contains(&name) {
                name = format!("{name}#{k:016x}");
            }
            names.insert(name.clone());
            let target = Arc::new(t);
            let health = Arc::new(Mutex::new(Health::default()));
            let c = ScrapeCollector::new(
                name.clone(),
                self.client.clone(),
                target.clone(),
                self.cfg.bearer_token_file.clone(),
                self.metric_relabel.clone(),
                health.clone(),
            );
            let token = stop.child_token();
            tracing::info!(job = %self.cfg.job, url = %target.url, "target discovered: scrape loop started");
            let task = tokio::spawn(crate::run_collector(
                c,
                target.interval,
                self.pipeline.clone(),
                token.clone(),
            ));
            running.insert(
                k,
                Running {
                    name,
                    stop: token,
                    task,
                    active: ActiveTarget { target, health },
                },
            );
        }
        let mut active: Vec<ActiveTarget> = running.values().map(|r| r.active.clone()).collect();
        active.sort_by(|a, b| {
            a.target
                .url
                .cmp(&b.target.url)
                .then(a.target.labels.cmp(&b.target.labels))
        });
        self.pipeline.targets.set(
            self.index,
            PoolView {
                job: self.cfg.job.clone(),
                active,
                dropped,
                discovered,
            },
        );
    }
}
