//! The rule manager: owns the running groups, swaps rule sets atomically on
//! reload (keeping the state of alerts that continue), runs one task per
//! group on its interval, and answers the rules/alerts API and self-metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use vigil_promql::{Engine, Queryable};
use vigil_template::Value;
use vigil_wire::Labels;

use crate::file::RuleSet;
use crate::group::{EvalEnv, Group, aligned_eval_ms, eval_offset};
use crate::template::labels_value;
use crate::{AlertSender, SampleAppender};

/// How the manager runs.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Added to outgoing alerts (where unset) and visible to templates as
    /// `$externalLabels`.
    pub external_labels: Labels,
    /// `$externalURL` and the base of generator URLs.
    pub external_url: String,
    /// Interval of groups that do not set one (1m).
    pub default_interval: Duration,
    /// Restore `for` state from `ALERTS_FOR_STATE` on the first load.
    pub restore: bool,
    /// Minimum time between re-sends of a firing alert (1m).
    pub resend_delay: Duration,
    /// Minimum remaining `for` after a restore (10m).
    pub for_grace_period: Duration,
    /// How far back `ALERTS_FOR_STATE` may be to be restored (1h).
    pub outage_tolerance: Duration,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            external_labels: Labels::empty(),
            external_url: String::new(),
            default_interval: Duration::from_secs(60),
            restore: true,
            resend_delay: Duration::from_secs(60),
            for_grace_period: Duration::from_secs(600),
            outage_tolerance: Duration::from_secs(3600),
        }
    }
}

/// Runs rule groups. See the crate docs for the lifecycle.
pub struct RuleManager {
    engine: Arc<Engine>,
    storage: Arc<dyn Queryable>,
    appender: Arc<dyn SampleAppender>,
    sender: Arc<dyn AlertSender>,
    opts: ManagerOptions,
    external_labels_value: Value,
    pub(crate) groups: Mutex<Vec<Arc<Mutex<Group>>>>,
    loaded_once: AtomicBool,
    changed: Notify,
}

pub(crate) fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl RuleManager {
    pub fn new(
        engine: Arc<Engine>,
        storage: Arc<dyn Queryable>,
        appender: Arc<dyn SampleAppender>,
        sender: Arc<dyn AlertSender>,
        opts: ManagerOptions,
    ) -> Arc<Self> {
        let external_labels_value = labels_value(&opts.external_labels);
        Arc::new(RuleManager {
            engine,
            storage,
            appender,
            sender,
            opts,
            external_labels_value,
            groups: Mutex::new(Vec::new()),
            loaded_once: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    pub fn options(&self) -> &ManagerOptions {
        &self.opts
    }

    /// Swaps in a validated rule set. Groups that continue (same file and
    /// name) keep their alerts' state, series bookkeeping and evaluation
    /// schedule (see [`next_eval_ms`]); removed
    /// groups' series are marked stale. Running tasks pick the new set up
    /// immediately.
    pub fn update(&self, set: RuleSet) {
        let first = !self.loaded_once.swap(true, Ordering::SeqCst);
        let should_restore = self.opts.restore && first;
        let mut current = self.groups.lock();
        let mut old: HashMap<(String, String), Arc<Mutex<Group>>> = HashMap::new();
        for g in current.iter() {
            let key = g.lock().key();
            old.insert(key, g.clone());
        }
        let mut next = Vec::with_capacity(set.groups.len());
        for spec in set.groups {
            let key = (spec.file.clone(), spec.name.clone());
            let mut g = Group::new(spec, self.opts.default_interval, should_restore);
            if let Some(prev) = old.remove(&key) {
                let mut prev = prev.lock();
                g.copy_state(&prev);
                prev.retired = true;
            }
            next.push(Arc::new(Mutex::new(g)));
        }
        // Prometheus lists (and we evaluate) groups by file, then name.
        next.sort_by_cached_key(|g| g.lock().key());
        let now = wall_ms();
        for (_, g) in old {
            let mut g = g.lock();
            g.retired = true;
            let stale = g.stale_markers(now);
            if !stale.is_empty()
                && let Err(e) = self.appender.append(stale)
            {
                tracing::warn!(group = %g.spec.name, error = %e, "writing stale markers for a removed group failed");
            }
        }
        tracing::info!(groups = next.len(), "rule set updated");
        *current = next;
        drop(current);
        self.changed.notify_waiters();
    }

    fn env(&self) -> EvalEnv<'_> {
        EvalEnv {
            engine: &self.engine,
            storage: &self.storage,
            appender: self.appender.as_ref(),
            sender: self.sender.as_ref(),
            external_labels: &self.opts.external_labels,
            external_labels_value: &self.external_labels_value,
            external_url: &self.opts.external_url,
            resend_delay: self.opts.resend_delay,
        }
    }

    /// Evaluates every group once at `ts_ms`, in order, on the calling
    /// thread (what the scheduler does per group; useful for tests and
    /// backfills). Restores `for` state after the second evaluation when a
    /// restore is due, as the scheduler does.
    pub fn eval_all_at(&self, ts_ms: i64) {
        let groups = self.groups.lock().clone();
        for g in groups {
            let mut g = g.lock();
            self.eval_group(&mut g, ts_ms, ts_ms);
        }
    }

    fn eval_group(&self, g: &mut Group, ts_ms: i64, now_ms: i64) {
        g.eval(ts_ms, &self.env());
        if g.should_restore && g.iterations >= 2 {
            g.restore_for_state(
                now_ms,
                self.storage.as_ref(),
                self.opts.for_grace_period,
                self.opts.outage_tolerance,
            );
        }
    }

    /// Runs every group on its interval until `shutdown`; restarts the
    /// group tasks whenever [`RuleManager::update`] swaps the set.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let groups = self.groups.lock().clone();
            let token = shutdown.child_token();
            let handles: Vec<_> = groups
                .into_iter()
                .map(|g| tokio::spawn(self.clone().run_group(g, token.clone())))
                .collect();
            let stop = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = &mut notified => false,
            };
            token.cancel();
            for h in handles {
                if let Err(e) = h.await {
                    tracing::error!(error = %e, "rule group task failed");
                }
            }
            if stop {
                return;
            }
        }
    }

    async fn run_group(self: Arc<Self>, g: Arc<Mutex<Group>>, token: CancellationToken) {
        let (interval, offset, last) = {
            let g = g.lock();
            (
                g.interval,
                eval_offset(&g.spec.file, &g.spec.name, g.interval),
                g.last_eval_ts_ms,
            )
        };
        let iv = (interval.as_millis() as i64).max(1);
        let mut next = next_eval_ms(last, wall_ms(), offset, interval);
        loop {
            let wait = (next - wall_ms()).max(0) as u64;
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            }
            let now = wall_ms();
            let missed = (now - next) / iv;
            if missed > 0 {
                next += missed * iv;
            }
            let ts = next;
            let mgr = self.clone();
            let group = g.clone();
            let done = tokio::task::spawn_blocking(move || {
                let mut g = group.lock();
                if g.retired {
                    return false;
                }
                if missed > 0 {
                    g.missed_iterations += missed as u64;
                }
                mgr.eval_group(&mut g, ts, wall_ms());
                true
            })
            .await;
            match done {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::error!(error = %e, "rule group evaluation panicked");
                    return;
                }
            }
            next += iv;
        }
    }

    /// Self-metrics in the text exposition format, named after
    /// Prometheus's `prometheus_rule_*` families.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        use vigil_wire::exposition::{escape_label_value, format_value};
        let groups = self.groups.lock().clone();
        let stats: Vec<GroupStat> = groups
            .iter()
            .map(|g| {
                let g = g.lock();
                GroupStat {
                    key: format!("{};{}", g.spec.file, g.spec.name),
                    evaluations: g.rules.iter().map(|r| r.evaluations).sum(),
                    failures: g.rules.iter().map(|r| r.failures).sum(),
                    iterations: g.iterations,
                    missed: g.missed_iterations,
                    last_duration: g.eval_duration.as_secs_f64(),
                    interval: g.interval.as_secs_f64(),
                    rules: g.rules.len(),
                    last_eval: g.last_eval_wall_ms.map_or(0.0, |t| t as f64 / 1000.0),
                }
            })
            .collect();
        type Get = fn(&GroupStat) -> String;
        let families: [(&str, &str, &str, Get); 8] = [
            (
                "vigil_rule_evaluations_total",
                "counter",
                "Rule evaluations.",
                |s| s.evaluations.to_string(),
            ),
            (
                "vigil_rule_evaluation_failures_total",
                "counter",
                "Rule evaluations that failed.",
                |s| s.failures.to_string(),
            ),
            (
                "vigil_rule_group_iterations_total",
                "counter",
                "Scheduled group evaluations.",
                |s| s.iterations.to_string(),
            ),
            (
                "vigil_rule_group_iterations_missed_total",
                "counter",
                "Group evaluations skipped because the previous one overran.",
                |s| s.missed.to_string(),
            ),
            (
                "vigil_rule_group_last_duration_seconds",
                "gauge",
                "Duration of the last group evaluation.",
                |s| format_value(s.last_duration),
            ),
            (
                "vigil_rule_group_interval_seconds",
                "gauge",
                "Evaluation interval of the group.",
                |s| format_value(s.interval),
            ),
            (
                "vigil_rule_group_rules",
                "gauge",
                "Rules in the group.",
                |s| s.rules.to_string(),
            ),
            (
                "vigil_rule_group_last_evaluation_timestamp_seconds",
                "gauge",
                "Start of the last group evaluation.",
                |s| format_value(s.last_eval),
            ),
        ];
        for (name, kind, help, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for s in &stats {
                let _ = writeln!(
                    out,
                    "{name}{{rule_group=\"{}\"}} {}",
                    escape_label_value(&s.key),
                    get(s)
                );
            }
        }
    }
}

/// The first evaluation of a group task: right after the group's last
/// evaluation when it continues (a reload restarts every task, and a slot
/// that fell due while the old task was stopping must still run, or a
/// transition due then waits a whole interval), else the next aligned slot.
pub(crate) fn next_eval_ms(
    last_eval_ts_ms: Option<i64>,
    now_ms: i64,
    offset: Duration,
    interval: Duration,
) -> i64 {
    let iv = (interval.as_millis() as i64).max(1);
    let aligned_next = aligned_eval_ms(now_ms, offset, interval) + iv;
    match last_eval_ts_ms {
        // Only a recent last evaluation continues; after a long pause the
        // group starts on the grid again rather than replaying slots.
        Some(last) if last + iv <= aligned_next && last + iv > now_ms - iv => last + iv,
        _ => aligned_next,
    }
}

/// One group's numbers for [`RuleManager::render_metrics`].
struct GroupStat {
    key: String,
    evaluations: u64,
    failures: u64,
    iterations: u64,
    missed: u64,
    last_duration: f64,
    interval: f64,
    rules: usize,
    last_eval: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_group_task_keeps_the_schedule() {
        let iv = Duration::from_secs(10);
        let off = Duration::from_millis(3_000);
        // Between slots: the next slot, with or without history.
        assert_eq!(next_eval_ms(None, 25_000, off, iv), 33_000);
        assert_eq!(next_eval_ms(Some(23_000), 25_000, off, iv), 33_000);
        // The slot at 33 s fell due while the old task was stopping: it
        // still runs, at once, instead of waiting for 43 s.
        assert_eq!(next_eval_ms(Some(23_000), 33_200, off, iv), 33_000);
        // After a long pause the group starts on the grid again.
        assert_eq!(next_eval_ms(Some(3_000), 95_000, off, iv), 103_000);
    }
}
