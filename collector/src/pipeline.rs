//! Wiring between the rule engine, the store and the alerting pipeline:
//! rule output is written to the store, alerts go to the in-process
//! Alertmanager, and reloads swap validated rule sets and configurations.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use vigil_alerting::{Alerting, PostableAlert};
use vigil_rules::{AlertSender, OutgoingAlert, SampleAppender};
use vigil_tsdb::{Db, SeriesSamples};
use vigil_wire::{Labels, Sample};

use crate::params::now_ms;

/// Writes recorded series, `ALERTS` and `ALERTS_FOR_STATE` to the store.
pub struct StoreAppender(pub Arc<Db>);

impl SampleAppender for StoreAppender {
    fn append(&self, samples: Vec<(Labels, Sample)>) -> Result<(), String> {
        let mut by_series: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        for (labels, sample) in samples {
            by_series.entry(labels).or_default().push(sample);
        }
        let batch: Vec<SeriesSamples> = by_series
            .into_iter()
            .map(|(labels, mut samples)| {
                samples.sort_by_key(|s| s.timestamp_ms);
                SeriesSamples { labels, samples }
            })
            .collect();
        let outcome = self.0.append(batch, now_ms()).map_err(|e| e.to_string())?;
        let rejected: u64 = outcome.rejected.values().sum();
        if rejected > 0 {
            return Err(format!(
                "{rejected} rule output samples rejected: {:?}",
                outcome.rejected
            ));
        }
        Ok(())
    }
}

/// Sends rule alerts into the in-process Alertmanager.
pub struct AlertingSender {
    pub alerting: Arc<Alerting>,
    pub runtime: tokio::runtime::Handle,
}

fn to_time(ms: i64) -> Option<chrono::DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

impl AlertSender for AlertingSender {
    fn send(&self, alerts: Vec<OutgoingAlert>) {
        if alerts.is_empty() {
            return;
        }
        let postable: Vec<(PostableAlert, Option<f64>)> = alerts
            .into_iter()
            .map(|a| {
                let value = a.value.filter(|v| v.is_finite());
                let p = PostableAlert {
                    labels: a
                        .labels
                        .iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect(),
                    annotations: a.annotations,
                    starts_at: to_time(a.starts_at_ms),
                    ends_at: a.ends_at_ms.and_then(to_time),
                    generator_url: a.generator_url,
                };
                (p, value)
            })
            .collect();
        let alerting = self.alerting.clone();
        self.runtime.spawn(async move {
            // The value is kept as the incident's peak.
            if let Err(e) = alerting.push_with_values(postable).await {
                tracing::error!(error = %e, "alerting refused alerts from the rule engine");
            }
        });
    }
}
