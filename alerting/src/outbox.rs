//! The durable notification outbox: every notification is committed to the
//! store before its first attempt, retried with exponential backoff and
//! jitter until its give-up time, and deleted once delivered (or counted as
//! failed). Deliveries run as independent tasks with a timeout, so a slow or
//! failing receiver never holds up another. A receiver with a
//! `vigil_rate_limit` gets at most N deliveries per window; the surplus is
//! held and folded into one digest when the window frees up.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::dispatch::Runtime;
use crate::incident::IncidentBook;
use crate::metrics::Metrics;
use crate::nflog::IntegrationId;
use crate::notify::{NotificationData, NotifyError};
use crate::store::{Store, Write};

/// One notification waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: u64,
    pub receiver: String,
    pub integration: IntegrationId,
    pub data: NotificationData,
    #[serde(with = "crate::alert::go_time")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::alert::go_time")]
    pub give_up_at: DateTime<Utc>,
    pub attempts: u32,
    #[serde(with = "crate::alert::go_time")]
    pub next_attempt: DateTime<Utc>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Held back by a rate limit; folded into a digest when due.
    #[serde(default)]
    pub digest: bool,
    /// The notification log entry this notification carries out; a
    /// cluster shares it with the peers once delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nflog: Option<crate::nflog::NflogEntry>,
}

impl OutboxEntry {
    pub fn new(
        id: u64,
        receiver: &str,
        integration: IntegrationId,
        data: NotificationData,
        now: DateTime<Utc>,
        give_up_after: chrono::Duration,
    ) -> Self {
        Self {
            id,
            receiver: receiver.to_string(),
            integration,
            data,
            created_at: now,
            give_up_at: now + give_up_after,
            attempts: 0,
            next_attempt: now,
            last_error: None,
            digest: false,
            nflog: None,
        }
    }
}

/// Retry settings.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub attempt_timeout: Duration,
}

impl RetryPolicy {
    /// Exponential backoff with ±20 % jitter.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let base = self.initial_backoff.as_secs_f64()
            * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
        let capped = base.min(self.max_backoff.as_secs_f64());
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        Duration::from_secs_f64(capped * jitter)
    }
}

#[derive(Default)]
struct Inner {
    pending: BTreeMap<u64, OutboxEntry>,
    in_flight: HashSet<u64>,
    /// Per receiver: when recent deliveries happened (rate limiting).
    sent: HashMap<String, VecDeque<DateTime<Utc>>>,
}

/// Called with the entries of each delivered notification.
pub type DeliveredHook = Box<dyn Fn(&[OutboxEntry]) + Send + Sync>;

/// The outbox; shared by the dispatcher (enqueue) and its delivery loop.
pub struct Outbox {
    delivered: std::sync::OnceLock<DeliveredHook>,
    inner: Mutex<Inner>,
    wake: Notify,
    next_id: AtomicU64,
    store: Store,
    policy: RetryPolicy,
    runtime: Arc<RwLock<Arc<Runtime>>>,
    metrics: Arc<Metrics>,
    /// Where each final outcome is recorded, on the incidents of the
    /// alerts a notification carried.
    incidents: Arc<Mutex<IncidentBook>>,
}

impl Outbox {
    pub fn new(
        store: Store,
        loaded: Vec<OutboxEntry>,
        policy: RetryPolicy,
        runtime: Arc<RwLock<Arc<Runtime>>>,
        metrics: Arc<Metrics>,
        incidents: Arc<Mutex<IncidentBook>>,
    ) -> Arc<Self> {
        // Ids stay above those recorded on incidents too, so a notification
        // after a restart never reuses the id of one already in a history.
        let recorded = incidents.lock().max_notification_id();
        let next = loaded.iter().map(|e| e.id).max().unwrap_or(0).max(recorded) + 1;
        if !loaded.is_empty() {
            info!(
                pending = loaded.len(),
                "resuming notifications pending before restart"
            );
        }
        let pending = loaded.into_iter().map(|e| (e.id, e)).collect();
        Arc::new(Self {
            delivered: std::sync::OnceLock::new(),
            inner: Mutex::new(Inner {
                pending,
                ..Default::default()
            }),
            wake: Notify::new(),
            next_id: AtomicU64::new(next),
            store,
            policy,
            runtime,
            metrics,
            incidents,
        })
    }

    /// Sets what runs after each successful delivery (once).
    pub fn on_delivered(&self, hook: DeliveredHook) {
        let _ = self.delivered.set(hook);
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds notifications already committed to the store. A newer
    /// notification for the same (receiver, integration, group) supersedes
    /// an older one still waiting, since it carries the current state.
    pub fn enqueue(&self, entries: Vec<OutboxEntry>) {
        if entries.is_empty() {
            return;
        }
        let mut superseded = Vec::new();
        {
            let mut inner = self.inner.lock();
            for e in entries {
                let old: Vec<u64> = inner
                    .pending
                    .values()
                    .filter(|o| {
                        o.receiver == e.receiver
                            && o.integration == e.integration
                            && o.data.group_key == e.data.group_key
                            && !o.digest
                    })
                    .map(|o| o.id)
                    .collect();
                for id in old {
                    if !inner.in_flight.contains(&id) {
                        inner.pending.remove(&id);
                        superseded.push(Write::DeleteOutbox(id));
                    }
                }
                inner.pending.insert(e.id, e);
            }
        }
        self.store.write_later(superseded);
        self.wake.notify_one();
    }

    pub fn pending_len(&self) -> usize {
        self.inner.lock().pending.len()
    }

    /// When the oldest notification still waiting was written.
    pub fn oldest_pending(&self) -> Option<DateTime<Utc>> {
        self.inner
            .lock()
            .pending
            .values()
            .map(|e| e.created_at)
            .min()
    }

    /// Delivers until shut down.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let now = Utc::now();
            let (batches, next) = self.take_due(now);
            for batch in batches {
                let me = Arc::clone(&self);
                tokio::spawn(async move { me.deliver(batch).await });
            }
            let sleep = next
                .map(|t| (t - now).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Picks due entries (marking them in flight), applying rate limits;
    /// returns batches to deliver (a batch of several is a digest) and the
    /// next time something becomes due.
    fn take_due(&self, now: DateTime<Utc>) -> (Vec<Vec<OutboxEntry>>, Option<DateTime<Utc>>) {
        let rt = Arc::clone(&self.runtime.read());
        let mut inner = self.inner.lock();
        let Inner {
            pending,
            in_flight,
            sent,
        } = &mut *inner;
        let mut batches: Vec<Vec<OutboxEntry>> = Vec::new();
        let mut digests: BTreeMap<(String, IntegrationId), Vec<OutboxEntry>> = BTreeMap::new();
        let mut next: Option<DateTime<Utc>> = None;
        let mut held: Vec<u64> = Vec::new();
        for e in pending.values_mut() {
            if in_flight.contains(&e.id) {
                continue;
            }
            if e.next_attempt > now {
                next = Some(next.map_or(e.next_attempt, |n| n.min(e.next_attempt)));
                continue;
            }
            let limit = rt
                .receivers
                .get(&e.receiver)
                .and_then(|r| r.rate_limit.clone());
            if let Some(l) = limit {
                let window =
                    chrono::Duration::from_std(l.per.0).unwrap_or(chrono::Duration::hours(1));
                let log = sent.entry(e.receiver.clone()).or_default();
                while log.front().is_some_and(|t| *t + window <= now) {
                    log.pop_front();
                }
                let key = (e.receiver.clone(), e.integration.clone());
                if let Some(list) = digests.get_mut(&key) {
                    list.push(e.clone());
                    continue;
                }
                if log.len() >= l.max_notifications as usize {
                    // Over the limit: hold until the oldest delivery leaves
                    // the window, then go out folded into one digest.
                    let free_at = log.front().map_or(now, |t| *t + window);
                    e.next_attempt = free_at;
                    if !e.digest {
                        e.digest = true;
                        held.push(e.id);
                    }
                    next = Some(next.map_or(free_at, |n| n.min(free_at)));
                    continue;
                }
                log.push_back(now);
                if e.digest {
                    digests.insert(key, vec![e.clone()]);
                    continue;
                }
            }
            batches.push(vec![e.clone()]);
        }
        batches.extend(digests.into_values());
        for b in &batches {
            for e in b {
                in_flight.insert(e.id);
            }
        }
        if !held.is_empty() {
            let writes: Vec<Write> = held
                .iter()
                .filter_map(|id| pending.get(id))
                .map(|e| Write::PutOutbox(Box::new(e.clone())))
                .collect();
            self.store.write_later(writes);
        }
        (batches, next)
    }

    async fn deliver(self: Arc<Self>, batch: Vec<OutboxEntry>) {
        let Some(first) = batch.first().cloned() else {
            return;
        };
        let rt = Arc::clone(&self.runtime.read());
        let integ = rt.receivers.get(&first.receiver).and_then(|r| {
            r.integrations
                .iter()
                .find(|(id, _)| *id == first.integration)
                .map(|(_, i)| Arc::clone(i))
        });
        let kind = first.integration.kind.clone();
        let result = match integ {
            None => Err(NotifyError::permanent(
                "receiver or integration no longer configured",
            )),
            Some(integ) => {
                let data = if batch.len() == 1 {
                    first.data.clone()
                } else {
                    fold_digest(&batch)
                };
                if batch.len() > 1 {
                    self.metrics.digest(&first.receiver, batch.len());
                }
                match tokio::time::timeout(
                    self.policy.attempt_timeout,
                    integ.notify(&data, &rt.templates),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(NotifyError::retryable(format!(
                        "timed out after {:?}",
                        self.policy.attempt_timeout
                    ))),
                }
            }
        };
        let now = Utc::now();
        let mut writes = Vec::new();
        // Final outcomes to record on incidents: (entry, ok, error, attempts).
        let mut outcomes: Vec<(OutboxEntry, bool, Option<String>, u32)> = Vec::new();
        {
            let mut inner = self.inner.lock();
            for e in &batch {
                inner.in_flight.remove(&e.id);
            }
            match &result {
                Ok(()) => {
                    debug!(receiver = %first.receiver, integration = %first.integration, alerts = first.data.alerts.len(), "notification delivered");
                    self.metrics.notification(&first.receiver, &kind, true);
                    for e in &batch {
                        inner.pending.remove(&e.id);
                        writes.push(Write::DeleteOutbox(e.id));
                        outcomes.push((e.clone(), true, None, e.attempts + 1));
                    }
                    if let Some(hook) = self.delivered.get() {
                        hook(&batch);
                    }
                }
                Err(err) => {
                    self.metrics.notification(&first.receiver, &kind, false);
                    for e in &batch {
                        let Some(p) = inner.pending.get_mut(&e.id) else {
                            continue;
                        };
                        p.attempts += 1;
                        p.last_error = Some(err.message.clone());
                        let backoff = chrono::Duration::from_std(self.policy.backoff(p.attempts))
                            .unwrap_or(chrono::Duration::seconds(60));
                        if err.retryable && now + backoff < p.give_up_at {
                            p.next_attempt = now + backoff;
                            warn!(receiver = %p.receiver, integration = %p.integration, attempts = p.attempts, error = %err, "notification failed; will retry");
                            writes.push(Write::PutOutbox(Box::new(p.clone())));
                        } else {
                            error!(receiver = %p.receiver, integration = %p.integration, attempts = p.attempts, error = %err, "notification failed; giving up");
                            self.metrics.failed(&p.receiver, &kind);
                            outcomes.push((
                                p.clone(),
                                false,
                                Some(err.message.clone()),
                                p.attempts,
                            ));
                            inner.pending.remove(&e.id);
                            writes.push(Write::DeleteOutbox(e.id));
                        }
                    }
                }
            }
        }
        if !outcomes.is_empty() {
            let mut book = self.incidents.lock();
            for (e, ok, err, attempts) in &outcomes {
                writes.extend(book.record_delivery(e, *ok, err.as_deref(), *attempts, now));
            }
        }
        if let Err(e) = self.store.write(writes).await {
            error!(error = %e, "cannot record notification outcome");
        }
        self.wake.notify_one();
    }
}

/// Folds held notifications into one: the latest state of every alert,
/// in first-seen order.
pub fn fold_digest(batch: &[OutboxEntry]) -> NotificationData {
    let mut data = batch[0].data.clone();
    let mut order: Vec<String> = Vec::new();
    let mut latest: HashMap<String, crate::notify::AlertData> = HashMap::new();
    for e in batch {
        for a in &e.data.alerts {
            if !latest.contains_key(&a.fingerprint) {
                order.push(a.fingerprint.clone());
            }
            latest.insert(a.fingerprint.clone(), a.clone());
        }
    }
    data.alerts = order.iter().filter_map(|fp| latest.remove(fp)).collect();
    let mut gl = batch[0].data.group_labels.clone();
    for e in &batch[1..] {
        gl.retain(|k, v| e.data.group_labels.get(k) == Some(v));
    }
    data.group_labels = gl;
    data.group_key = format!("vigil-digest:{}", batch[0].receiver);
    data.digest_of = batch.len();
    data.recompute();
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matchers::LabelSet;
    use crate::notify::AlertData;

    fn entry(id: u64, alerts: &[(&str, &str)]) -> OutboxEntry {
        let data = NotificationData {
            receiver: "r".into(),
            status: "firing".into(),
            alerts: alerts
                .iter()
                .map(|(fp, status)| AlertData {
                    status: status.to_string(),
                    labels: [("alertname".to_string(), fp.to_string())]
                        .into_iter()
                        .collect(),
                    annotations: LabelSet::new(),
                    starts_at: Utc::now(),
                    ends_at: Utc::now(),
                    generator_url: String::new(),
                    fingerprint: fp.to_string(),
                })
                .collect(),
            group_labels: [("alertname".to_string(), format!("g{id}"))]
                .into_iter()
                .collect(),
            common_labels: LabelSet::new(),
            common_annotations: LabelSet::new(),
            external_url: String::new(),
            group_key: format!("g{id}"),
            digest_of: 0,
        };
        OutboxEntry::new(
            id,
            "r",
            IntegrationId {
                kind: "webhook".into(),
                index: 0,
            },
            data,
            Utc::now(),
            chrono::Duration::hours(1),
        )
    }

    #[test]
    fn digest_keeps_every_alert_once_with_latest_state() {
        let d = fold_digest(&[
            entry(1, &[("a", "firing"), ("b", "firing")]),
            entry(2, &[("a", "resolved"), ("c", "firing")]),
        ]);
        let got: Vec<(&str, &str)> = d
            .alerts
            .iter()
            .map(|a| (a.fingerprint.as_str(), a.status.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![("a", "resolved"), ("b", "firing"), ("c", "firing")]
        );
        assert_eq!(d.digest_of, 2);
        assert!(d.group_labels.is_empty());
        assert_eq!(d.status, "firing");
    }

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(5),
        };
        let b1 = p.backoff(1).as_secs_f64();
        let b3 = p.backoff(3).as_secs_f64();
        let b20 = p.backoff(20).as_secs_f64();
        assert!((0.8..=1.2).contains(&b1), "{b1}");
        assert!((3.2..=4.8).contains(&b3), "{b3}");
        assert!((8.0..=12.0).contains(&b20), "{b20}");
    }
}
