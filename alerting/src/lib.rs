//! Alertmanager-compatible alerting for Vigil.
//!
//! Alerts arrive from the rule engine ([`Alerting::push`]) or over the
//! Alertmanager v2 API (`POST /api/v2/alerts`, so Prometheus can use Vigil
//! as its Alertmanager). They are stored, routed through the routing tree
//! into aggregation groups, and flushed with Alertmanager's timing
//! (`group_wait`, `group_interval`, `repeat_interval`); each flush drops
//! inhibited and silenced alerts, asks the notification log whether
//! anything changed, and writes a notification per receiver integration to
//! a durable outbox before delivering it (email, Slack, webhook,
//! PagerDuty), with retries and backoff. Alerts, silences, the log and the
//! outbox live in `alerting.db` and survive restarts and `kill -9`.
//!
//! Beyond Alertmanager, every alert episode is kept as an incident
//! ([`incident`]): its notifications and their outcome, acknowledgements
//! (which stop its repeats), escalations ([`escalation`]) and notes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vigil_alerting::Error> {
//! use vigil_alerting::{Alerting, AlertingConfig, AlertingOptions};
//! let cfg = vigil_alerting::load_config(std::path::Path::new("alertmanager.yml"))?;
//! let opts = AlertingOptions { data_dir: "/var/lib/vigil".into(), ..Default::default() };
//! let alerting = Alerting::start(cfg, opts, tokio_util::sync::CancellationToken::new()).await?;
//! let app: axum::Router = alerting.router(); // serves /api/v2/*
//! # let _ = app; Ok(()) }
//! ```

pub mod alert;
pub mod api;
pub mod config;
pub mod dispatch;
pub mod escalation;
pub mod incident;
pub mod inhibit;
pub mod matchers;
pub mod metrics;
pub mod nflog;
pub mod notify;
pub mod outbox;
pub mod replicate;
pub mod route;
pub mod silence;
pub mod store;
pub mod timeinterval;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub use alert::PostableAlert;
pub use config::{AlertingConfig, ConfigError, Summary, check_config, load_config, parse_config};

use dispatch::{ClusterWait, FlushOptions, Runtime, State};
use escalation::EscalationRule;
use incident::IncidentBook;
use incident::service::check_escalations;
use metrics::{Gauges, Metrics};
use outbox::{Outbox, RetryPolicy};
use silence::Silences;
use store::{Store, Write};

/// Errors of the alerting service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("alerting store: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid alerts: {0}")]
    InvalidAlerts(String),
    #[error(transparent)]
    Cluster(#[from] vigil_cluster::Error),
}

/// Settings that are not part of the Alertmanager file.
#[derive(Debug, Clone)]
pub struct AlertingOptions {
    /// The URL users reach Vigil at (`externalURL` in notifications).
    pub external_url: String,
    /// Where `alerting.db` lives.
    pub data_dir: PathBuf,
    /// Timeout of one delivery attempt.
    pub notify_timeout: Duration,
    /// First retry delay; doubles per attempt up to `retry_max_backoff`.
    pub retry_initial_backoff: Duration,
    pub retry_max_backoff: Duration,
    /// A notification not delivered this long after it was created is
    /// marked failed.
    pub give_up_after: Duration,
    /// How long notification log entries and expired silences are kept.
    pub retention: Duration,
    /// How often resolved alerts and old entries are removed.
    pub gc_interval: Duration,
    /// Join a cluster of peers sharing silences and the notification log
    /// (`--cluster.*`); `None` runs alone.
    pub cluster: Option<vigil_cluster::ClusterOptions>,
    /// Incidents that ended longer ago than this are removed.
    pub incident_retention: Duration,
    /// How often open incidents are checked for escalation and for an
    /// alert that resolved without a new update.
    pub incident_check_interval: Duration,
    /// Escalation rules (Vigil's `alerting.escalations`), already checked
    /// against this configuration's receivers.
    pub escalations: Vec<EscalationRule>,
}

impl Default for AlertingOptions {
    fn default() -> Self {
        Self {
            external_url: "http://localhost:9800".into(),
            data_dir: PathBuf::from("data"),
            notify_timeout: Duration::from_secs(15),
            retry_initial_backoff: Duration::from_secs(1),
            retry_max_backoff: Duration::from_secs(60),
            give_up_after: Duration::from_secs(3600),
            retention: Duration::from_secs(120 * 3600),
            gc_interval: Duration::from_secs(60),
            cluster: None,
            incident_retention: Duration::from_secs(90 * 86_400),
            incident_check_interval: Duration::from_secs(1),
            escalations: Vec::new(),
        }
    }
}

/// The alerting service; shared as `Arc<Alerting>`.
pub struct Alerting {
    state: Mutex<State>,
    runtime: Arc<RwLock<Arc<Runtime>>>,
    store: Store,
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    opts: AlertingOptions,
    wake: Notify,
    started: chrono::DateTime<Utc>,
    cluster: std::sync::OnceLock<Arc<vigil_cluster::Cluster>>,
    /// Held notifications a peer had already sent.
    deduplicated: std::sync::atomic::AtomicU64,
    /// The incident history (never locked while `state` is held by the
    /// same thread in the other order: take `state` first, or only one).
    incidents: Arc<Mutex<IncidentBook>>,
    escalations: RwLock<Vec<EscalationRule>>,
}

impl Alerting {
    /// Opens the store, restores state and starts the dispatcher, the
    /// delivery loop and garbage collection; all stop on `shutdown`.
    pub async fn start(
        cfg: AlertingConfig,
        opts: AlertingOptions,
        shutdown: CancellationToken,
    ) -> Result<Arc<Alerting>, Error> {
        std::fs::create_dir_all(&opts.data_dir).map_err(|source| Error::DataDir {
            path: opts.data_dir.clone(),
            source,
        })?;
        let rt = Arc::new(Runtime::new(cfg, opts.notify_timeout).map_err(Error::Invalid)?);
        let (store, loaded) = Store::open(&opts.data_dir.join("alerting.db"))?;
        check_escalations(&rt, &opts.escalations).map_err(Error::Invalid)?;
        let runtime = Arc::new(RwLock::new(Arc::clone(&rt)));
        let metrics = Arc::new(Metrics::default());
        let incidents = Arc::new(Mutex::new(IncidentBook::load(loaded.incidents)));
        let policy = RetryPolicy {
            initial_backoff: opts.retry_initial_backoff,
            max_backoff: opts.retry_max_backoff,
            attempt_timeout: opts.notify_timeout,
        };
        let outbox = Outbox::new(
            store.clone(),
            loaded.outbox,
            policy,
            Arc::clone(&runtime),
            Arc::clone(&metrics),
            Arc::clone(&incidents),
        );
        let mut state = State::new(
            Arc::clone(&rt),
            Silences::load(loaded.silences),
            loaded.nflog.into_iter().collect(),
        );
        let now = Utc::now();
        let now_i = tokio::time::Instant::now();
        let restored = loaded.alerts.len();
        for a in loaded.alerts {
            state.put(a, now, now_i);
        }
        info!(
            alerts = restored,
            pending_notifications = outbox.pending_len(),
            incidents = incidents.lock().len(),
            "alerting started"
        );
        let escalations = RwLock::new(opts.escalations.clone());
        let me = Arc::new(Alerting {
            incidents,
            escalations,
            state: Mutex::new(state),
            runtime,
            store,
            outbox: Arc::clone(&outbox),
            metrics,
            opts,
            wake: Notify::new(),
            started: now,
            cluster: std::sync::OnceLock::new(),
            deduplicated: Default::default(),
        });
        // The cluster is joined before the dispatcher runs, so restored
        // alerts already wait for this member's turn.
        if let Some(copts) = me.opts.cluster.clone() {
            let cluster =
                vigil_cluster::Cluster::start(copts, replicate::kinds(&me), shutdown.clone())
                    .await?;
            let _ = me.cluster.set(cluster);
            me.publish_all();
            let weak = Arc::downgrade(&me);
            outbox.on_delivered(Box::new(move |batch| {
                let Some(a) = weak.upgrade() else { return };
                for e in batch {
                    if let Some(entry) = &e.nflog {
                        let key = nflog::NflogKey {
                            receiver: e.receiver.clone(),
                            integration: e.integration.clone(),
                            group_key: e.data.group_key.clone(),
                        };
                        a.publish_nflog(&key, entry);
                    }
                }
            }));
        }
        tokio::spawn(outbox.run(shutdown.clone()));
        tokio::spawn(Arc::clone(&me).dispatch_loop(shutdown.clone()));
        tokio::spawn(Arc::clone(&me).incident_loop(shutdown.clone()));
        tokio::spawn(Arc::clone(&me).gc_loop(shutdown));
        Ok(me)
    }

    /// The Alertmanager v2 API (`/api/v2/*`).
    pub fn router(self: &Arc<Self>) -> axum::Router {
        api::router(Arc::clone(self))
    }

    /// Adds alerts (from the rule engine). Invalid alerts are counted and
    /// reported; valid ones in the same batch are still accepted.
    pub async fn push(&self, alerts: Vec<PostableAlert>) -> Result<(), Error> {
        let n = alerts.len();
        self.push_with_values(
            alerts
                .into_iter()
                .zip(std::iter::repeat_n(None, n))
                .collect(),
        )
        .await
    }

    /// Adds alerts with the value each carries (Vigil's rule and anomaly
    /// alerts: their expression's value), kept as the incident's peak.
    pub async fn push_with_values(
        &self,
        alerts: Vec<(PostableAlert, Option<f64>)>,
    ) -> Result<(), Error> {
        let now = Utc::now();
        let now_i = tokio::time::Instant::now();
        let mut errors = Vec::new();
        let mut writes = Vec::new();
        let mut observed = Vec::new();
        {
            let resolve_timeout = self.runtime.read().resolve_timeout;
            let mut st = self.state.lock();
            for (p, value) in alerts {
                match alert::Alert::from_postable(p, now, resolve_timeout) {
                    Ok(a) => {
                        self.metrics.alert_received(a.status_at(now));
                        let new_episode = st
                            .alerts
                            .get(&a.fingerprint)
                            .is_none_or(|old| old.resolved_at(now));
                        let stored = st.put(a, now, now_i);
                        observed.push((stored.clone(), new_episode, value));
                        writes.push(Write::PutAlert(Box::new(stored)));
                    }
                    Err(e) => {
                        self.metrics.alert_invalid();
                        errors.push(e);
                    }
                }
            }
        }
        if !observed.is_empty() {
            let mut book = self.incidents.lock();
            for (a, new_episode, value) in &observed {
                writes.extend(book.observe(a, *new_episode, *value, now));
            }
        }
        if !writes.is_empty() {
            self.store.write(writes).await?;
            self.wake.notify_one();
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidAlerts(errors.join("; ")))
        }
    }

    /// Swaps in a new configuration; on error the running one stays.
    pub async fn reload(&self, cfg: AlertingConfig) -> Result<(), Error> {
        let escalations = self.escalations.read().clone();
        self.reload_with_escalations(cfg, escalations).await
    }

    /// Swaps in a new configuration and escalation rules together; on
    /// error (a rule naming a receiver the configuration lacks) both of the
    /// running ones stay.
    pub async fn reload_with_escalations(
        &self,
        cfg: AlertingConfig,
        escalations: Vec<EscalationRule>,
    ) -> Result<(), Error> {
        let rt = Arc::new(Runtime::new(cfg, self.opts.notify_timeout).map_err(Error::Invalid)?);
        check_escalations(&rt, &escalations).map_err(Error::Invalid)?;
        *self.escalations.write() = escalations;
        *self.runtime.write() = Arc::clone(&rt);
        {
            let mut st = self.state.lock();
            st.rt = rt;
            st.reroute_all(Utc::now(), tokio::time::Instant::now());
        }
        self.wake.notify_one();
        info!("alerting configuration reloaded");
        Ok(())
    }

    /// Prometheus text exposition of the self-metrics.
    pub fn render_metrics(&self, out: &mut String) {
        let now = Utc::now();
        let g = {
            let st = self.state.lock();
            let mut active = 0;
            let mut suppressed = 0;
            for a in st.alerts.values().filter(|a| !a.resolved_at(now)) {
                let (i, s) = st.mute_status(&a.labels, now);
                if i.is_empty() && s.is_empty() {
                    active += 1;
                } else {
                    suppressed += 1;
                }
            }
            let counts = st.silences.count_by_state(now);
            Gauges {
                alerts_active: active,
                alerts_suppressed: suppressed,
                silences: [
                    (counts[0].0.as_str(), counts[0].1),
                    (counts[1].0.as_str(), counts[1].1),
                    (counts[2].0.as_str(), counts[2].1),
                ],
                outbox_pending: self.outbox.pending_len(),
                outbox_oldest_age_seconds: self
                    .outbox
                    .oldest_pending()
                    .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
                groups: st.groups.len(),
            }
        };
        self.metrics.render(&g, out);
        let (open, closed) = self.incidents.lock().counts();
        use std::fmt::Write as _;
        let _ = write!(
            out,
            "# HELP vigil_incidents Alert episodes kept in the incident history, by state.\n\
             # TYPE vigil_incidents gauge\n\
             vigil_incidents{{state=\"open\"}} {open}\n\
             vigil_incidents{{state=\"closed\"}} {closed}\n"
        );
        if let Some(c) = self.cluster.get() {
            use std::fmt::Write as _;
            let w = c.wait();
            let _ = write!(
                out,
                "# HELP vigil_cluster_members Live members of the alerting cluster, this one included.\n\
                 # TYPE vigil_cluster_members gauge\nvigil_cluster_members {}\n\
                 # HELP vigil_cluster_position This member's position (it waits position x peer_timeout before notifying).\n\
                 # TYPE vigil_cluster_position gauge\nvigil_cluster_position {}\n\
                 # HELP vigil_cluster_ready 1 once the cluster has settled.\n\
                 # TYPE vigil_cluster_ready gauge\nvigil_cluster_ready {}\n\
                 # HELP vigil_cluster_notifications_deduplicated_total Notifications this member did not send because the shared notification log showed a peer had (at a group's first flush, or after waiting its turn).\n\
                 # TYPE vigil_cluster_notifications_deduplicated_total counter\nvigil_cluster_notifications_deduplicated_total {}\n\
                 # HELP vigil_cluster_oversized_entries_total Silences or log entries too large to gossip (peers do not see them).\n\
                 # TYPE vigil_cluster_oversized_entries_total counter\nvigil_cluster_oversized_entries_total {}\n",
                c.members().len(),
                w.position,
                u8::from(w.ready),
                self.deduplicated.load(std::sync::atomic::Ordering::Relaxed),
                c.oversized(),
            );
        }
    }

    /// The cluster this instance belongs to, if any.
    pub fn cluster(&self) -> Option<&Arc<vigil_cluster::Cluster>> {
        self.cluster.get()
    }

    /// The configuration currently running.
    pub fn config(&self) -> AlertingConfig {
        self.runtime.read().cfg.clone()
    }

    async fn dispatch_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let opts = FlushOptions {
            external_url: self.opts.external_url.clone(),
            give_up_after: chrono::Duration::from_std(self.opts.give_up_after)
                .unwrap_or(chrono::Duration::hours(1)),
            cluster: None,
        };
        let mut opts = opts;
        loop {
            opts.cluster = self.cluster.get().map(|c| {
                let w = c.wait();
                ClusterWait {
                    delay: w.delay,
                    ready: w.ready,
                }
            });
            let acks = self.incidents.lock().ack_views();
            let out = {
                let mut st = self.state.lock();
                st.acks = acks;
                let mut next_id = || self.outbox.next_id();
                st.flush_due(Utc::now(), tokio::time::Instant::now(), &mut next_id, &opts)
            };
            if out.deduplicated > 0 {
                self.deduplicated.fetch_add(
                    out.deduplicated as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                tracing::debug!(
                    notifications = out.deduplicated,
                    "a peer already sent these notifications"
                );
            }
            if !out.writes.is_empty() {
                // Commit the log and the outbox rows before any attempt.
                match self.store.write(out.writes).await {
                    Ok(()) => {
                        self.outbox.enqueue(out.notifications);
                        for (k, e) in &out.logged {
                            self.publish_nflog(k, e);
                        }
                    }
                    Err(e) => error!(error = %e, "cannot persist notifications; they are not sent"),
                }
            }
            let (next, held) = {
                let st = self.state.lock();
                let next = match (st.next_flush(), st.next_deferred()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                (next, !st.deferred.is_empty())
            };
            let mut sleep = next
                .map(|t| t.saturating_duration_since(tokio::time::Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            // Held notifications wait for the cluster to settle, which
            // nothing wakes this loop for: look again shortly.
            if held && opts.cluster.is_some_and(|w| !w.ready) {
                sleep = sleep
                    .max(Duration::from_millis(200))
                    .min(Duration::from_millis(200));
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn gc_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let retention =
            chrono::Duration::from_std(self.opts.retention).unwrap_or(chrono::Duration::hours(120));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.opts.gc_interval) => {}
            }
            let now = Utc::now();
            let mut writes = self.state.lock().gc(now, retention, retention);
            self.unpublish(&writes);
            let incident_retention = chrono::Duration::from_std(self.opts.incident_retention)
                .unwrap_or(chrono::Duration::days(90));
            writes.extend(self.incidents.lock().gc(now, incident_retention));
            self.store.write_later(writes);
        }
    }
}
