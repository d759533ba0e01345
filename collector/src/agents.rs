//! Liveness of everything that pushes: every agent that writes to the
//! collector is watched the way Prometheus watches a scrape target.
//!
//! An agent is named by its `job` and `instance`: the identity headers of
//! [`vigil_wire::identity`] that vigil-agent sends, else the name of the
//! ingest token it presented, under `job="vigil-agent"`. Not by the labels
//! of the series it pushes: those may be a scrape target's, whose own `up`
//! the collector must not overwrite. A push naming neither is counted in
//! `vigil_agent_pushes_unidentified_total` and not watched. Its push interval
//! is observed (the longest gap among its recent pushes, so the several
//! requests an agent sends per collection do not shorten it), and it is
//! down once no push arrived for `agents.down_after_intervals` of those
//! intervals. Every `agents.check_interval` the collector writes, per agent,
//! `up{job,instance}` (1 or 0) and
//! `vigil_agent_last_push_timestamp_seconds{job,instance}` into the store,
//! so rules (`AgentDown`) and PromQL see them.
//!
//! What is known survives a restart (`<data_dir>/agents.json`): an agent
//! that was up is given its full allowance again from the moment the
//! collector started, so a restart pages for nobody who keeps pushing, and
//! an agent that died meanwhile is still marked down once that allowance
//! runs out. An agent retired on purpose is forgotten through
//! `DELETE /api/vigil/v1/agents/{job}/{instance}` (admin token); its series
//! are ended with stale markers.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use vigil_tsdb::{Db, SeriesSamples};
use vigil_wire::{Labels, Sample, identity};

use crate::params::now_ms;
use crate::server::App;

/// The `job` of an agent known only by its ingest token's name.
pub const TOKEN_JOB: &str = "vigil-agent";
/// Gaps kept per agent to estimate its push interval.
const GAPS_KEPT: usize = 16;
/// The observed interval is never taken as shorter than this, so an agent
/// whose recent requests came in one burst is not judged on milliseconds.
const MIN_INTERVAL_MS: i64 = 1_000;
/// Requests closer together than this belong to one push.
const BURST_GAP_MS: i64 = 250;
const STATE_FILE: &str = "agents.json";

/// Settings of the liveness tracking (`agents:` in the collector config).
#[derive(Debug, Clone)]
pub struct LivenessOptions {
    pub down_after_intervals: f64,
    pub initial_interval: Duration,
    pub check_interval: Duration,
}

/// What is known of one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    pub job: String,
    pub instance: String,
    pub first_seen_ms: i64,
    pub last_push_ms: i64,
    /// Recent gaps between pushes received while the agent was up.
    pub gaps_ms: VecDeque<i64>,
    pub up: bool,
    pub down_since_ms: Option<i64>,
    pub pushes: u64,
}

impl AgentState {
    /// The observed push interval: the longest recent gap between pushes
    /// (never under [`MIN_INTERVAL_MS`]), or the assumed initial interval
    /// before one has been seen. Gaps under [`BURST_GAP_MS`] are requests
    /// of one burst (an agent sends several batches per collection, and
    /// its whole backlog at start), so they say nothing of the interval:
    /// an agent seen only in a burst is judged on the initial interval,
    /// not on a second.
    pub fn interval_ms(&self, opts: &LivenessOptions) -> i64 {
        match self.gaps_ms.iter().filter(|g| **g >= BURST_GAP_MS).max() {
            Some(g) => (*g).max(MIN_INTERVAL_MS),
            None => opts.initial_interval.as_millis() as i64,
        }
    }

    /// How long after its last push the agent counts as down.
    pub fn allowance_ms(&self, opts: &LivenessOptions) -> i64 {
        (self.interval_ms(opts) as f64 * opts.down_after_intervals).ceil() as i64
    }
}

/// The agents and their state; pure, driven by explicit times so the rule
/// "down after N observed intervals" is tested without waiting.
#[derive(Debug, Clone)]
pub struct Tracker {
    opts: LivenessOptions,
    agents: BTreeMap<(String, String), AgentState>,
    /// Agents that were up when the state was loaded are not judged on
    /// time before this (the collector was not listening then).
    grace_from_ms: i64,
}

impl Tracker {
    pub fn new(opts: LivenessOptions, loaded: Vec<AgentState>, now_ms: i64) -> Self {
        Self {
            opts,
            agents: loaded
                .into_iter()
                .map(|a| ((a.job.clone(), a.instance.clone()), a))
                .collect(),
            grace_from_ms: now_ms,
        }
    }

    /// A push from `job`/`instance` arrived at `now_ms`.
    pub fn push(&mut self, job: &str, instance: &str, now_ms: i64) {
        let key = (job.to_string(), instance.to_string());
        let a = self.agents.entry(key).or_insert_with(|| {
            tracing::info!(job, instance, "new pushing agent");
            AgentState {
                job: job.to_string(),
                instance: instance.to_string(),
                first_seen_ms: now_ms,
                last_push_ms: now_ms,
                gaps_ms: VecDeque::new(),
                up: true,
                down_since_ms: None,
                pushes: 0,
            }
        });
        if a.up {
            // A gap spanning a stop of the collector says nothing either.
            if a.pushes > 0 && now_ms > a.last_push_ms && a.last_push_ms >= self.grace_from_ms {
                if a.gaps_ms.len() == GAPS_KEPT {
                    a.gaps_ms.pop_front();
                }
                a.gaps_ms.push_back(now_ms - a.last_push_ms);
            }
        } else {
            // A gap spanning an outage says nothing of the interval.
            tracing::info!(job, instance, "agent is pushing again");
            a.up = true;
            a.down_since_ms = None;
        }
        a.last_push_ms = a.last_push_ms.max(now_ms);
        a.pushes += 1;
    }

    /// Marks agents whose push is overdue at `now_ms` as down; returns
    /// whether anything changed.
    pub fn check(&mut self, now_ms: i64) -> bool {
        let mut changed = false;
        for a in self.agents.values_mut().filter(|a| a.up) {
            let deadline = a.last_push_ms.max(self.grace_from_ms) + a.allowance_ms(&self.opts);
            if now_ms > deadline {
                tracing::warn!(
                    job = %a.job,
                    instance = %a.instance,
                    last_push_ms = a.last_push_ms,
                    interval_ms = a.interval_ms(&self.opts),
                    "agent stopped pushing: marked down"
                );
                a.up = false;
                a.down_since_ms = Some(now_ms);
                changed = true;
            }
        }
        changed
    }

    /// Forgets an agent; returns its last state.
    pub fn forget(&mut self, job: &str, instance: &str) -> Option<AgentState> {
        self.agents.remove(&(job.to_string(), instance.to_string()))
    }

    pub fn agents(&self) -> impl Iterator<Item = &AgentState> {
        self.agents.values()
    }

    pub fn options(&self) -> &LivenessOptions {
        &self.opts
    }
}

/// The two series written per agent.
fn series(job: &str, instance: &str) -> [Labels; 2] {
    let make = |name: &str| {
        Labels::from_pairs([
            ("__name__".to_string(), name.to_string()),
            ("instance".to_string(), instance.to_string()),
            ("job".to_string(), job.to_string()),
        ])
    };
    [make("up"), make("vigil_agent_last_push_timestamp_seconds")]
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    agents: Vec<AgentState>,
}

/// Liveness tracking as the collector runs it: the [`Tracker`] behind a
/// lock, its persistence and its counters.
pub struct Liveness {
    tracker: Mutex<Tracker>,
    state_path: PathBuf,
    dirty: std::sync::atomic::AtomicBool,
    pushes_total: AtomicU64,
    unidentified_total: AtomicU64,
    save_failures_total: AtomicU64,
}

impl Liveness {
    /// Loads the saved state from `data_dir`; an unreadable file is logged
    /// and set aside, never fatal (the agents are learnt again as they push).
    pub fn open(data_dir: &Path, opts: LivenessOptions) -> Self {
        let state_path = data_dir.join(STATE_FILE);
        let loaded = match std::fs::read(&state_path) {
            Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
                Ok(f) => {
                    tracing::info!(agents = f.agents.len(), "agent liveness state restored");
                    f.agents
                }
                Err(e) => {
                    let aside = state_path.with_extension("json.corrupt");
                    tracing::error!(error = %e, file = %state_path.display(), moved_to = %aside.display(), "agent liveness state unreadable; starting without it");
                    let _ = std::fs::rename(&state_path, aside);
                    Vec::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::error!(error = %e, file = %state_path.display(), "cannot read agent liveness state; starting without it");
                Vec::new()
            }
        };
        Self {
            tracker: Mutex::new(Tracker::new(opts, loaded, now_ms())),
            state_path,
            dirty: false.into(),
            pushes_total: AtomicU64::new(0),
            unidentified_total: AtomicU64::new(0),
            save_failures_total: AtomicU64::new(0),
        }
    }

    /// Records a push. `from_headers` is [`identity_from_headers`],
    /// `token` the name of the ingest token it presented.
    pub fn observe(&self, from_headers: Option<(String, String)>, token: Option<&str>) {
        let Some((job, instance)) =
            from_headers.or_else(|| token.map(|t| (TOKEN_JOB.to_string(), t.to_string())))
        else {
            self.unidentified_total.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.pushes_total.fetch_add(1, Ordering::Relaxed);
        self.tracker.lock().push(&job, &instance, now_ms());
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Checks deadlines and writes `up` and the last push time of every
    /// agent at `now`, then saves the state if it changed.
    pub fn tick(&self, db: &Db) {
        let now = now_ms();
        let batch: Vec<SeriesSamples> = {
            let mut t = self.tracker.lock();
            if t.check(now) {
                self.dirty.store(true, Ordering::Relaxed);
            }
            t.agents()
                .flat_map(|a| {
                    let [up, last] = series(&a.job, &a.instance);
                    [
                        SeriesSamples {
                            labels: up,
                            samples: vec![Sample::new(now, if a.up { 1.0 } else { 0.0 })],
                        },
                        SeriesSamples {
                            labels: last,
                            samples: vec![Sample::new(now, a.last_push_ms as f64 / 1000.0)],
                        },
                    ]
                })
                .collect()
        };
        append(db, batch);
        if self.dirty.swap(false, Ordering::Relaxed) {
            self.save();
        }
    }

    /// Saves the state file (write, then rename, so a crash leaves the old
    /// or the new file, never half of one).
    pub fn save(&self) {
        let file = StateFile {
            agents: self.tracker.lock().agents().cloned().collect(),
        };
        let tmp = self.state_path.with_extension("json.tmp");
        let result = serde_json::to_vec(&file)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.state_path));
        if let Err(e) = result {
            self.save_failures_total.fetch_add(1, Ordering::Relaxed);
            self.dirty.store(true, Ordering::Relaxed);
            tracing::error!(error = %e, file = %self.state_path.display(), "saving agent liveness state failed");
        }
    }

    /// Forgets an agent and ends its series with stale markers.
    pub fn forget(&self, db: &Db, job: &str, instance: &str) -> Option<AgentState> {
        let gone = self.tracker.lock().forget(job, instance)?;
        tracing::info!(job, instance, "agent forgotten");
        let now = now_ms();
        append(
            db,
            series(job, instance)
                .into_iter()
                .map(|labels| SeriesSamples {
                    labels,
                    samples: vec![Sample::new(now, vigil_wire::stale_nan())],
                })
                .collect(),
        );
        self.save();
        Some(gone)
    }

    /// Writes and saves every `check_interval` until shutdown, then saves.
    pub async fn run(self: Arc<Self>, db: Arc<Db>, shutdown: CancellationToken) {
        let every = self.tracker.lock().options().check_interval;
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let me = self.clone();
            let db = db.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || me.tick(&db)).await {
                tracing::error!(error = %e, "agent liveness check failed");
            }
        }
        self.save();
    }

    /// The agents as the API lists them.
    pub fn list(&self) -> serde_json::Value {
        let t = self.tracker.lock();
        let opts = t.options();
        let agents: Vec<serde_json::Value> = t
            .agents()
            .map(|a| {
                json!({
                    "job": a.job,
                    "instance": a.instance,
                    "up": a.up,
                    "lastPush": rfc3339(a.last_push_ms),
                    "lastPushTimestamp": a.last_push_ms as f64 / 1000.0,
                    "pushIntervalSeconds": a.interval_ms(opts) as f64 / 1000.0,
                    "downAfterSeconds": a.allowance_ms(opts) as f64 / 1000.0,
                    "downSince": a.down_since_ms.map(rfc3339),
                    "firstSeen": rfc3339(a.first_seen_ms),
                    "pushes": a.pushes,
                })
            })
            .collect();
        json!({ "agents": agents })
    }

    /// `vigil_agents{state}` and the push counters on `/metrics`. The
    /// per-agent series are in the store, not here: a scrape of `/metrics`
    /// would relabel their `job` and `instance`.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let (up, down) = {
            let t = self.tracker.lock();
            let up = t.agents().filter(|a| a.up).count();
            (up, t.agents().count() - up)
        };
        let _ = writeln!(
            out,
            "# HELP vigil_agents Pushing agents watched, by state.\n# TYPE vigil_agents gauge\nvigil_agents{{state=\"up\"}} {up}\nvigil_agents{{state=\"down\"}} {down}"
        );
        crate::telemetry::counter(
            out,
            "vigil_agent_pushes_total",
            "Ingest requests attributed to a pushing agent.",
            self.pushes_total.load(Ordering::Relaxed),
        );
        crate::telemetry::counter(
            out,
            "vigil_agent_pushes_unidentified_total",
            "Ingest requests whose sender could not be named (no identity headers, no ingest token); such a sender is not watched.",
            self.unidentified_total.load(Ordering::Relaxed),
        );
        crate::telemetry::counter(
            out,
            "vigil_agent_state_save_failures_total",
            "Failed saves of the agent liveness state file.",
            self.save_failures_total.load(Ordering::Relaxed),
        );
    }
}

fn append(db: &Db, batch: Vec<SeriesSamples>) {
    if batch.is_empty() {
        return;
    }
    match db.append(batch, now_ms()) {
        Ok(outcome) => {
            let rejected: u64 = outcome.rejected.values().sum();
            if rejected > 0 {
                tracing::warn!(?outcome.rejected, "agent liveness samples rejected by the store");
            }
        }
        Err(e) => tracing::error!(error = %e, "writing agent liveness series failed"),
    }
}

fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The identity a vigil-agent sends in its request headers.
pub fn identity_from_headers(headers: &HeaderMap) -> Option<(String, String)> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(identity::decode_header_value)
            .filter(|v| !v.is_empty())
    };
    Some((get(identity::JOB_HEADER)?, get(identity::INSTANCE_HEADER)?))
}

/// `GET /api/vigil/v1/agents`.
pub async fn list_agents(State(app): State<Arc<App>>) -> Response {
    crate::api::success(app.agents.list())
}

/// `DELETE /api/vigil/v1/agents/{job}/{instance}` (admin).
pub async fn forget_agent(
    State(app): State<Arc<App>>,
    UrlPath((job, instance)): UrlPath<(String, String)>,
) -> Response {
    let worker = app.clone();
    let (j, i) = (job.clone(), instance.clone());
    let gone = tokio::task::spawn_blocking(move || worker.agents.forget(&worker.db, &j, &i)).await;
    match gone {
        Ok(Some(_)) => crate::api::success(json!({"job": job, "instance": instance})),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({
                "status": "error",
                "errorType": "not_found",
                "error": format!("no agent with job {job:?} and instance {instance:?}"),
            })),
        )
            .into_response(),
        Err(e) => crate::api::ApiError::internal("forgetting an agent", e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> LivenessOptions {
        LivenessOptions {
            down_after_intervals: 4.0,
            initial_interval: Duration::from_secs(60),
            check_interval: Duration::from_secs(5),
        }
    }

    /// An agent pushing every 15 s, in bursts of three requests per
    /// collection as vigil-agent does, from `start` for `n` collections.
    fn push_every_15s(t: &mut Tracker, start: i64, n: i64) -> i64 {
        let mut last = start;
        for k in 0..n {
            for burst in 0..3 {
                last = start + k * 15_000 + burst * 7;
                t.push("vigil-agent", "web-1", last);
            }
        }
        last
    }

    /// The first time, checking every 5 s as the collector does, at which
    /// the agent is down.
    fn down_at(t: &mut Tracker, from: i64) -> i64 {
        let mut now = from;
        while !t.check(now) {
            now += 5_000;
            assert!(now < from + 3_600_000, "never marked down");
        }
        now
    }

    #[test]
    fn an_agent_pushing_every_15s_is_down_about_a_minute_after_going_quiet() {
        let mut t = Tracker::new(opts(), Vec::new(), 0);
        let last = push_every_15s(&mut t, 1_000_000, 20);
        let a = t.agents().next().expect("tracked").clone();
        // The longest gap: from the end of one burst to the next burst.
        assert!((14_900..=15_000).contains(&a.interval_ms(&opts())));
        assert!(a.up);
        let down = down_at(&mut t, last);
        // Not before three pushes were missed, within the rule's budget
        // (AgentDown fires on up == 0 and must reach a receiver within
        // 3 minutes of the last push).
        assert!(down - last > 45_000, "{}", down - last);
        assert!(down - last <= 65_000, "{}", down - last);
        // Back: up at the first push, and the outage is not taken as an
        // interval.
        t.push("vigil-agent", "web-1", down + 100_000);
        let a = t.agents().next().expect("tracked");
        assert!(a.up && a.down_since_ms.is_none());
        assert!((14_900..=15_000).contains(&a.interval_ms(&opts())));
    }

    #[test]
    fn slower_agents_get_a_longer_allowance() {
        let mut t = Tracker::new(opts(), Vec::new(), 0);
        for k in 0..5 {
            t.push("vigil-agent", "batch", k * 60_000);
        }
        assert!(!t.check(4 * 60_000 + 200_000));
        assert!(t.check(4 * 60_000 + 241_000));
    }

    #[test]
    fn a_burst_at_start_is_not_an_interval() {
        let mut t = Tracker::new(opts(), Vec::new(), 0);
        // A new agent ships its backlog in five requests 100 ms apart,
        // then pushes every 15 s.
        for k in 0..5 {
            t.push("j", "i", k * 100);
        }
        // Judged on the initial interval (1m, down after 4), not on 1 s.
        assert!(!t.check(400 + 15_000));
        assert!(!t.check(400 + 240_000));
        assert!(t.check(400 + 240_001));
        t.push("j", "i", 400 + 240_100);
        t.push("j", "i", 400 + 255_100);
        let a = t.agents().next().expect("tracked").clone();
        assert_eq!(a.interval_ms(&opts()), 15_000);
    }

    #[test]
    fn a_single_push_uses_the_initial_interval() {
        let mut t = Tracker::new(opts(), Vec::new(), 0);
        t.push("j", "i", 0);
        assert!(!t.check(240_000));
        assert!(t.check(240_001));
    }

    #[test]
    fn restart_pages_only_for_agents_that_stopped() {
        let mut before = Tracker::new(opts(), Vec::new(), 0);
        push_every_15s(&mut before, 0, 10);
        let mut dead = before.clone();
        dead.push("vigil-agent", "db-1", 100_000);
        dead.push("vigil-agent", "db-1", 115_000);
        let saved: Vec<AgentState> = dead.agents().cloned().collect();
        // The collector was away for 10 minutes.
        let restart = 135_000 + 600_000;
        let mut after = Tracker::new(opts(), saved, restart);
        assert!(!after.check(restart), "nobody is down at the restart");
        // web-1 keeps pushing; db-1 died meanwhile.
        let mut now = restart;
        while now < restart + 120_000 {
            after.push("vigil-agent", "web-1", now);
            after.check(now);
            now += 15_000;
        }
        let state: BTreeMap<&str, bool> = after
            .agents()
            .map(|a| (a.instance.as_str(), a.up))
            .collect();
        assert!(state["web-1"]);
        assert!(!state["db-1"]);
    }

    #[test]
    fn identity_comes_from_headers_then_the_token() {
        let mut h = HeaderMap::new();
        assert_eq!(identity_from_headers(&h), None);
        h.insert(identity::JOB_HEADER, "vigil-agent".parse().expect("value"));
        // Both or nothing.
        assert_eq!(identity_from_headers(&h), None);
        h.insert(
            identity::INSTANCE_HEADER,
            identity::encode_header_value("hôte")
                .parse()
                .expect("value"),
        );
        assert_eq!(
            identity_from_headers(&h),
            Some(("vigil-agent".into(), "hôte".into()))
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Liveness::open(dir.path(), opts());
        l.observe(identity_from_headers(&h), Some("edge-1"));
        l.observe(None, Some("edge-1"));
        l.observe(None, None);
        let listed = l.list();
        let names: Vec<&str> = listed["agents"]
            .as_array()
            .expect("agents")
            .iter()
            .filter_map(|a| a["instance"].as_str())
            .collect();
        assert_eq!(names, ["edge-1", "hôte"]);
        assert_eq!(l.unidentified_total.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn state_survives_a_restart_and_forget_removes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Liveness::open(dir.path(), opts());
        l.observe(None, Some("edge-1"));
        l.save();
        let again = Liveness::open(dir.path(), opts());
        let listed = again.list();
        assert_eq!(listed["agents"][0]["job"], TOKEN_JOB);
        assert_eq!(listed["agents"][0]["instance"], "edge-1");
        assert_eq!(listed["agents"][0]["up"], true);
        assert!(again.tracker.lock().forget(TOKEN_JOB, "edge-1").is_some());
        again.save();
        let third = Liveness::open(dir.path(), opts());
        assert_eq!(third.list()["agents"].as_array().map(Vec::len), Some(0));
    }
}
