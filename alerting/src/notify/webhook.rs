//! Webhook integration: Alertmanager's v4 JSON message, POSTed as is.

use super::common::{Notifier, at, first_secret};
use super::{NotificationData, NotifyError};
use crate::config::WebhookConfig;

pub type Webhook = Notifier<WebhookConfig>;

impl Notifier<WebhookConfig> {
    pub async fn notify(&self, data: &NotificationData) -> Result<(), NotifyError> {
        // url_file is read when sending, so a rotated URL needs no reload.
        let url = first_secret(
            &[at(&self.cfg.url, &self.cfg.url_file, "url_file")],
            "webhook without url",
        )?;
        self.http
            .post_json(&url, &message(data, self.cfg.max_alerts))
            .await
    }
}

/// The webhook body: template data plus `version`, `groupKey` and
/// `truncatedAlerts` (alerts beyond `max_alerts`, 0 meaning no limit).
pub fn message(data: &NotificationData, max_alerts: u64) -> serde_json::Value {
    let limit = if max_alerts == 0 {
        usize::MAX
    } else {
        max_alerts as usize
    };
    let truncated = data.alerts.len().saturating_sub(limit);
    // Alertmanager truncates before building the template data, so status
    // and common labels describe only the alerts that are sent.
    let cut;
    let data = if truncated > 0 {
        let mut d = data.clone();
        d.alerts.truncate(limit);
        d.recompute();
        cut = d;
        &cut
    } else {
        data
    };
    let alerts = &data.alerts;
    serde_json::json!({
        "receiver": data.receiver,
        "status": data.status,
        "alerts": alerts,
        "groupLabels": data.group_labels,
        "commonLabels": data.common_labels,
        "commonAnnotations": data.common_annotations,
        "externalURL": data.external_url,
        "version": "4",
        "groupKey": data.group_key,
        "truncatedAlerts": truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, PostableAlert};
    use crate::matchers::LabelSet;

    #[test]
    fn truncates_to_max_alerts() {
        let now = chrono::Utc::now();
        let alerts: Vec<Alert> = (0..3)
            .map(|i| {
                let p = PostableAlert {
                    labels: [("alertname".to_string(), format!("A{i}"))]
                        .into_iter()
                        .collect(),
                    ..Default::default()
                };
                Alert::from_postable(p, now, chrono::Duration::minutes(5)).expect("valid")
            })
            .collect();
        let d = NotificationData::new("r", "{}:{}", &LabelSet::new(), &alerts, "http://am", now);
        let m = message(&d, 2);
        assert_eq!(m["truncatedAlerts"], 1);
        assert_eq!(m["alerts"].as_array().map(Vec::len), Some(2));
        assert_eq!(m["version"], "4");
        assert_eq!(m["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(message(&d, 0)["truncatedAlerts"], 0);
    }
}
