//! `--alerting-config`: the notifications a backtest's alerts would have
//! caused. The alerts the rule manager would have sent (with Prometheus's
//! resend delay and `endsAt`) go through the alerting pipeline's own
//! dispatcher state ([`vigil_alerting::dispatch::State`]: routing,
//! grouping with `group_wait`/`group_interval`/`repeat_interval`,
//! inhibition, silences, time intervals, the notification log) on a
//! simulated clock, which jumps from one alert or due flush to the next
//! instead of sleeping. Nothing is delivered: each notification a flush
//! produces is printed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, TimeZone as _, Utc};
use vigil_alerting::AlertingConfig;
use vigil_alerting::dispatch::{FlushOptions, Runtime, State};
use vigil_alerting::silence::{PostableSilence, Silences};
use vigil_rules::OutgoingAlert;
use vigil_rules::backtest::rfc3339;

/// Silences stored by the serve that owns `data_dir` (its
/// `alerting/alerting.db`,
/// read-only), plus those in `file` (a JSON array as `POST
/// /api/v2/silences` takes them, `startsAt`/`endsAt` required).
pub fn load_silences(data_dir: Option<&Path>, file: Option<&Path>) -> anyhow::Result<Silences> {
    let mut list = Vec::new();
    if let Some(dir) = data_dir {
        let db = dir.join("alerting").join("alerting.db");
        if db.is_file() {
            list = vigil_alerting::store::read_silences(&db)
                .with_context(|| format!("reading silences from {}", db.display()))?;
        }
    }
    let mut silences = Silences::load(list);
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let posted: Vec<PostableSilence> = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a JSON array of silences", path.display()))?;
        for (i, p) in posted.into_iter().enumerate() {
            // Created as of its own start, so a silence of the past is
            // valid (the API would refuse one that has already ended).
            let at = p.starts_at.unwrap_or_else(Utc::now);
            silences
                .upsert(p, at)
                .map_err(|e| anyhow::anyhow!("{}: silence {}: {e}", path.display(), i + 1))?;
        }
    }
    Ok(silences)
}

fn wall(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Runs the dispatcher over `sent` (time order) until `to_ms`; returns
/// one JSON line per notification.
pub fn simulate(
    cfg: AlertingConfig,
    silences: Silences,
    sent: &[(i64, OutgoingAlert)],
    to_ms: i64,
    external_url: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let rt = Arc::new(Runtime::new(cfg, Duration::from_secs(10)).map_err(anyhow::Error::msg)?);
    let resolve_timeout = rt.resolve_timeout;
    let mut st = State::new(rt, silences, HashMap::new());
    let Some(&(base_ms, _)) = sent.first() else {
        return Ok(Vec::new());
    };
    // The simulated monotonic clock: `base_i` stands for `base_ms`.
    let base_i = tokio::time::Instant::now();
    let mono = |ms: i64| base_i + Duration::from_millis((ms - base_ms).max(0) as u64);
    let ms_of = |i: tokio::time::Instant| base_ms + i.duration_since(base_i).as_millis() as i64;
    let opts = FlushOptions {
        external_url: external_url.to_string(),
        give_up_after: chrono::Duration::hours(1),
        // One simulated member: it notifies at once, as a lone serve does.
        cluster: None,
    };
    let mut ids = 0u64;
    let mut out = Vec::new();
    let mut last_gc = base_ms;
    let mut flush_until = |st: &mut State, until_ms: i64, out: &mut Vec<serde_json::Value>| {
        while let Some(next) = st.next_flush() {
            let t = ms_of(next);
            if t > until_ms {
                break;
            }
            let mut next_id = || {
                ids += 1;
                ids
            };
            let flushed = st.flush_due(wall(t), next, &mut next_id, &opts);
            for n in flushed.notifications {
                out.push(serde_json::json!({
                    "time": rfc3339(t),
                    "notification": {
                        "receiver": n.receiver,
                        "integration": n.integration.to_string(),
                        "groupKey": n.data.group_key,
                        "status": n.data.status,
                        "alerts": n.data.alerts,
                    }
                }));
            }
        }
    };
    let mut i = 0;
    while i < sent.len() {
        let t = sent[i].0;
        // Flushes due strictly before this batch of alerts arrives.
        flush_until(&mut st, t - 1, &mut out);
        if t - last_gc >= 60_000 {
            // As serve's periodic gc: resolved alerts leave the store.
            st.gc(
                wall(t),
                chrono::Duration::hours(120),
                chrono::Duration::hours(120),
            );
            last_gc = t;
        }
        while i < sent.len() && sent[i].0 == t {
            let a = &sent[i].1;
            let p = vigil_alerting::PostableAlert {
                labels: a
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
                annotations: a.annotations.clone(),
                starts_at: Utc.timestamp_millis_opt(a.starts_at_ms).single(),
                ends_at: a
                    .ends_at_ms
                    .and_then(|e| Utc.timestamp_millis_opt(e).single()),
                generator_url: a.generator_url.clone(),
            };
            let alert = vigil_alerting::alert::Alert::from_postable(p, wall(t), resolve_timeout)
                .map_err(|e| anyhow::anyhow!("alert {}: {e}", a.labels))?;
            st.put(alert, wall(t), mono(t));
            i += 1;
        }
    }
    flush_until(&mut st, to_ms, &mut out);
    Ok(out)
}
