//! Commit observers: code that must see every sample the store accepts, in
//! commit order, durably before the commit is acknowledged — the
//! collector's remote_write forwarding queues.
//!
//! The observer runs on the writer thread, once per group commit, before
//! the commit is written: if it fails, the commit fails and every caller in
//! the group gets an error (the sender retries), so an acknowledged sample
//! is never missing from the observer's queue. Exact re-sends of a series'
//! newest sample are acknowledged without being stored again and are not
//! shown to the observer a second time.

use std::collections::HashMap;
use std::fmt;

use vigil_wire::{Labels, Sample};

use crate::head::State;
use crate::index::SeriesId;

/// Sees the samples of every group commit before it is written.
pub trait CommitObserver: Send + Sync + fmt::Debug {
    /// `series` lists the accepted samples per series, in commit order; a
    /// series may appear more than once (once per request of the group),
    /// later entries holding later samples. An `Err` fails the commit.
    fn before_commit(&self, series: &[(&Labels, &[Sample])]) -> Result<(), String>;
}

/// Calls the observer with the group's accepted samples.
pub(crate) fn notify(
    observer: &dyn CommitObserver,
    state: &State,
    new_series: &[(SeriesId, Labels)],
    accepted: &[(SeriesId, std::ops::Range<usize>)],
    flat: &[Sample],
) -> Result<(), crate::Error> {
    if accepted.is_empty() {
        return Ok(());
    }
    let created: HashMap<SeriesId, &Labels> = new_series.iter().map(|(id, l)| (*id, l)).collect();
    let mut series = Vec::with_capacity(accepted.len());
    for (id, range) in accepted {
        let labels = match state.get(*id) {
            Some(s) => &s.labels,
            None => match created.get(id) {
                Some(l) => *l,
                None => continue,
            },
        };
        series.push((labels, &flat[range.clone()]));
    }
    observer
        .before_commit(&series)
        .map_err(|e| crate::Error::Commit(format!("commit observer: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use parking_lot::Mutex;

    use super::*;
    use crate::{Db, Options, SeriesSamples};

    #[derive(Debug, Default)]
    struct Recorder {
        seen: Mutex<Vec<(String, i64, f64)>>,
        fail: AtomicBool,
    }

    impl CommitObserver for Recorder {
        fn before_commit(&self, series: &[(&Labels, &[Sample])]) -> Result<(), String> {
            if self.fail.load(Ordering::SeqCst) {
                return Err("queue unavailable".into());
            }
            let mut seen = self.seen.lock();
            for (l, samples) in series {
                for s in *samples {
                    seen.push((l.to_string(), s.timestamp_ms, s.value));
                }
            }
            Ok(())
        }
    }

    fn batch(job: &str, samples: &[(i64, f64)]) -> Vec<SeriesSamples> {
        vec![SeriesSamples {
            labels: Labels::from_pairs([("__name__", "up"), ("job", job)]),
            samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        }]
    }

    #[test]
    fn observer_sees_exactly_the_accepted_samples_and_can_fail_the_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = Arc::new(Recorder::default());
        let db = Db::open(
            dir.path(),
            Options {
                commit_observer: Some(rec.clone()),
                ..Options::default()
            },
        )
        .expect("open");
        let now = 1_000_000;
        let out = db
            .append(batch("a", &[(10, 1.0), (20, 2.0)]), now)
            .expect("append");
        assert_eq!(out.accepted, 2);
        // An exact re-send of the newest sample, an out-of-order one, a
        // conflicting duplicate and a new one: only the new one is observed.
        let out = db
            .append(
                batch("a", &[(5, 0.5), (20, 2.0), (20, 9.0), (30, 3.0)]),
                now,
            )
            .expect("append");
        assert_eq!(out.accepted, 2);
        let want = |v: &[(i64, f64)]| -> Vec<(String, i64, f64)> {
            v.iter()
                .map(|&(t, x)| ("up{job=\"a\"}".to_string(), t, x))
                .collect()
        };
        assert_eq!(*rec.seen.lock(), want(&[(10, 1.0), (20, 2.0), (30, 3.0)]));

        rec.fail.store(true, Ordering::SeqCst);
        let err = db
            .append(batch("b", &[(40, 4.0)]), now)
            .expect_err("observer failed");
        assert!(err.to_string().contains("queue unavailable"), "{err}");
        rec.fail.store(false, Ordering::SeqCst);
        // Nothing of the failed commit was stored: the retry is new data.
        let out = db.append(batch("b", &[(40, 4.0)]), now).expect("retry");
        assert_eq!(out.accepted, 1);
        assert_eq!(rec.seen.lock().len(), 4);
        let stored = db
            .select(&[vigil_wire::Matcher::equal("job", "b")], 0, 100)
            .expect("select");
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].samples.len(), 1);
    }
}
