//! The scheduled report digest (`reports.digest` in `vigil.yml`): every
//! day or week at a set UTC time, the report over the period just ended
//! goes to the email and Slack integrations of named receivers of the
//! Alertmanager configuration, so digests reach the people and channels
//! alerts already reach.
//!
//! Never silent: a receiver the digest cannot use is refused at start; a
//! digest that fails to send is retried, then counted in
//! `vigil_report_digests_total{result="failed"}` (the default pack's
//! `VigilReportDigestFailing` pages on it) and logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Utc, Weekday};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use vigil_alerting::AlertingConfig;
use vigil_alerting::notify::email::Email;
use vigil_alerting::notify::slack::Slack;
use vigil_promql::{Engine, Queryable};

use super::source::EngineSource;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Every {
    Daily,
    Weekly,
}

/// `reports.digest`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    /// `daily` (the last 24 hours) or `weekly` (the last 7 days).
    pub every: Every,
    /// Time of day it is sent, UTC: `HH:MM` or `HH:MM:SS`. Default 08:00.
    #[serde(default = "default_at")]
    pub at: String,
    /// Day a weekly digest is sent. Default monday.
    #[serde(default = "default_weekday")]
    pub weekday: String,
    /// Receivers of the Alertmanager configuration whose `email_configs`
    /// and `slack_configs` get the digest.
    pub receivers: Vec<String>,
}

fn default_at() -> String {
    "08:00".into()
}

fn default_weekday() -> String {
    "monday".into()
}

/// `reports:` in `vigil.yml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportsConfig {
    pub digest: Option<DigestConfig>,
}

impl DigestConfig {
    pub fn time_of_day(&self) -> Result<NaiveTime, String> {
        NaiveTime::parse_from_str(&self.at, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(&self.at, "%H:%M"))
            .map_err(|_| {
                format!(
                    "reports.digest.at: {:?} is not a time of day (HH:MM or HH:MM:SS, UTC)",
                    self.at
                )
            })
    }

    pub fn weekday(&self) -> Result<Weekday, String> {
        self.weekday.parse::<Weekday>().map_err(|_| {
            format!(
                "reports.digest.weekday: {:?} is not a day of the week",
                self.weekday
            )
        })
    }

    /// The period each digest covers.
    pub fn period(&self) -> Duration {
        match self.every {
            Every::Daily => Duration::from_secs(86_400),
            Every::Weekly => Duration::from_secs(7 * 86_400),
        }
    }

    /// The first send time strictly after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
        let at = self.time_of_day()?;
        let weekday = self.weekday()?;
        let mut day = now.date_naive();
        // At most 8 days ahead: today's time may have passed, and a weekly
        // digest waits for its weekday.
        for _ in 0..9 {
            let candidate = Utc.from_utc_datetime(&day.and_time(at));
            let day_ok = self.every == Every::Daily || day.weekday() == weekday;
            if candidate > now && day_ok {
                return Ok(candidate);
            }
            day = day.succ_opt().ok_or("date out of range")?;
        }
        Err("no next send time".into())
    }

    /// Refuses what cannot work, at start: a bad time or weekday, a
    /// receiver missing from the Alertmanager configuration, one with no
    /// email or Slack integration, or one with integrations a digest
    /// cannot use (they would silently get nothing).
    pub fn validate(&self, alerting: &AlertingConfig) -> Result<(), String> {
        self.time_of_day()?;
        self.weekday()?;
        if self.receivers.is_empty() {
            return Err("reports.digest.receivers: name at least one receiver".into());
        }
        for name in &self.receivers {
            let r = alerting
                .receivers
                .iter()
                .find(|r| &r.name.value == name)
                .ok_or_else(|| {
                    format!(
                        "reports.digest.receivers: {name:?} is not a receiver of the Alertmanager configuration"
                    )
                })?;
            let others = [
                ("webhook_configs", r.webhook_configs.len()),
                ("pagerduty_configs", r.pagerduty_configs.len()),
                ("opsgenie_configs", r.opsgenie_configs.len()),
                ("wechat_configs", r.wechat_configs.len()),
                ("pushover_configs", r.pushover_configs.len()),
                ("victorops_configs", r.victorops_configs.len()),
                ("sns_configs", r.sns_configs.len()),
                ("telegram_configs", r.telegram_configs.len()),
                ("discord_configs", r.discord_configs.len()),
                ("webex_configs", r.webex_configs.len()),
                ("msteams_configs", r.msteams_configs.len()),
                ("vigil_sms_configs", r.vigil_sms_configs.len()),
            ];
            if let Some((kind, _)) = others.iter().find(|(_, n)| *n > 0) {
                return Err(format!(
                    "reports.digest.receivers: receiver {name:?} has {kind}; a digest goes only to email_configs and slack_configs, so name a receiver that has only those"
                ));
            }
            if r.email_configs.is_empty() && r.slack_configs.is_empty() {
                return Err(format!(
                    "reports.digest.receivers: receiver {name:?} has no email_configs or slack_configs"
                ));
            }
        }
        Ok(())
    }
}

/// Digests sent and failed, for `/metrics`.
#[derive(Debug, Default)]
pub struct DigestMetrics {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub last_success_seconds: AtomicU64,
}

impl DigestMetrics {
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP vigil_report_digests_total Scheduled report digests by result (one per receiver integration).\n# TYPE vigil_report_digests_total counter\nvigil_report_digests_total{{result=\"sent\"}} {}\nvigil_report_digests_total{{result=\"failed\"}} {}",
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP vigil_report_digest_last_success_timestamp_seconds When a digest was last delivered.\n# TYPE vigil_report_digest_last_success_timestamp_seconds gauge\nvigil_report_digest_last_success_timestamp_seconds {}",
            self.last_success_seconds.load(Ordering::Relaxed)
        );
    }
}

/// Sends one digest over `[from_ms, to_ms]` to every email and Slack
/// integration of the configured receivers; each is retried up to three
/// times. Returns the failures (`receiver/integration: reason`).
pub async fn send(
    cfg: &DigestConfig,
    alerting: &AlertingConfig,
    engine: Arc<Engine>,
    storage: Arc<dyn Queryable + Send + Sync>,
    from_ms: i64,
    to_ms: i64,
    metrics: &DigestMetrics,
) -> Vec<String> {
    let report = match tokio::task::spawn_blocking(move || {
        let source = EngineSource {
            engine: &engine,
            storage: storage.as_ref(),
        };
        super::build(&source, from_ms, to_ms)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            metrics.failed.fetch_add(1, Ordering::Relaxed);
            return vec![format!("building the report failed: {e}")];
        }
    };
    let subject = format!(
        "Vigil {} report: {} to {}",
        match cfg.every {
            Every::Daily => "daily",
            Every::Weekly => "weekly",
        },
        report.from,
        report.to
    );
    let markdown = super::render_markdown(&report);
    let html = super::render_html(&report);
    let timeout = Duration::from_secs(30);
    let mut failures = Vec::new();
    for name in &cfg.receivers {
        let Some(r) = alerting.receivers.iter().find(|r| &r.name.value == name) else {
            failures.push(format!(
                "{name}: no longer a receiver of the Alertmanager configuration"
            ));
            metrics.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        for (i, e) in r.email_configs.iter().enumerate() {
            let outcome = match Email::new(e, &alerting.global, timeout) {
                Ok(email) => {
                    retry(|| email.send_document(&subject, markdown.clone(), html.clone())).await
                }
                Err(e) => Err(e),
            };
            record(
                outcome,
                format!("{name}/email[{i}]"),
                metrics,
                &mut failures,
            );
        }
        for (i, s) in r.slack_configs.iter().enumerate() {
            let text = format!("*{subject}*\n```\n{markdown}\n```");
            let outcome = match Slack::new(s, &alerting.global, timeout) {
                Ok(slack) => retry(|| slack.post_document(&text)).await,
                Err(e) => Err(e),
            };
            record(
                outcome,
                format!("{name}/slack[{i}]"),
                metrics,
                &mut failures,
            );
        }
    }
    failures
}

async fn retry<F, Fut>(mut attempt: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), vigil_alerting::notify::NotifyError>>,
{
    let mut wait = Duration::from_secs(1);
    let mut last = String::new();
    for _ in 0..3 {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(e) => {
                last = e.to_string();
                if !e.retryable {
                    break;
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait *= 4;
    }
    Err(last)
}

fn record(
    outcome: Result<(), String>,
    what: String,
    metrics: &DigestMetrics,
    failures: &mut Vec<String>,
) {
    match outcome {
        Ok(()) => {
            metrics.sent.fetch_add(1, Ordering::Relaxed);
            metrics
                .last_success_seconds
                .store(Utc::now().timestamp().max(0) as u64, Ordering::Relaxed);
        }
        Err(e) => {
            metrics.failed.fetch_add(1, Ordering::Relaxed);
            failures.push(format!("{what}: {e}"));
        }
    }
}

/// Sends the digest at each scheduled time until `shutdown`. The
/// Alertmanager configuration is read at each send, so a reload applies.
pub async fn run(
    cfg: DigestConfig,
    alerting: Arc<vigil_alerting::Alerting>,
    engine: Arc<Engine>,
    storage: Arc<dyn Queryable + Send + Sync>,
    metrics: Arc<DigestMetrics>,
    shutdown: CancellationToken,
) {
    loop {
        let now = Utc::now();
        let next = match cfg.next_after(now) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "report digest schedule");
                return;
            }
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let to_ms = next.timestamp_millis();
        let from_ms = to_ms - cfg.period().as_millis() as i64;
        let failures = send(
            &cfg,
            &alerting.config(),
            engine.clone(),
            storage.clone(),
            from_ms,
            to_ms,
            &metrics,
        )
        .await;
        if failures.is_empty() {
            tracing::info!(receivers = ?cfg.receivers, "report digest sent");
        }
        for f in failures {
            tracing::error!(failure = %f, "report digest not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(every: Every, at: &str, weekday: &str) -> DigestConfig {
        DigestConfig {
            every,
            at: at.into(),
            weekday: weekday.into(),
            receivers: vec!["ops".into()],
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn next_send_time_follows_the_schedule() {
        let daily = cfg(Every::Daily, "08:00", "monday");
        assert_eq!(
            daily.next_after(t("2026-12-06T07:59:59Z")).expect("next"),
            t("2026-12-06T08:00:00Z")
        );
        // Exactly at the time: the next one is tomorrow (no double send).
        assert_eq!(
            daily.next_after(t("2026-12-06T08:00:00Z")).expect("next"),
            t("2026-12-07T08:00:00Z")
        );
        // 2026-12-06 is a Sunday.
        let weekly = cfg(Every::Weekly, "06:30:15", "monday");
        assert_eq!(
            weekly.next_after(t("2026-12-06T12:00:00Z")).expect("next"),
            t("2026-12-07T06:30:15Z")
        );
        assert_eq!(
            weekly.next_after(t("2026-12-07T06:30:15Z")).expect("next"),
            t("2026-12-14T06:30:15Z")
        );
        // Across the year's end.
        assert_eq!(
            daily.next_after(t("2026-12-31T09:00:00Z")).expect("next"),
            t("2027-01-01T08:00:00Z")
        );
    }

    #[test]
    fn bad_settings_and_receivers_are_refused() {
        let am = vigil_alerting::parse_config(
            "route:\n  receiver: ops\nreceivers:\n  - name: ops\n    email_configs:\n      - to: a@example.org\n        from: v@example.org\n        smarthost: 127.0.0.1:25\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:1/\n  - name: none\n",
            "am.yml",
        )
        .expect("config");
        assert_eq!(cfg(Every::Daily, "08:00", "monday").validate(&am), Ok(()));
        assert!(cfg(Every::Daily, "25:00", "monday").validate(&am).is_err());
        assert!(
            cfg(Every::Weekly, "08:00", "someday")
                .validate(&am)
                .is_err()
        );
        let mut c = cfg(Every::Daily, "08:00", "monday");
        c.receivers = vec!["missing".into()];
        assert!(
            c.validate(&am)
                .expect_err("refused")
                .contains("not a receiver")
        );
        c.receivers = vec!["hook".into()];
        assert!(
            c.validate(&am)
                .expect_err("refused")
                .contains("webhook_configs")
        );
        c.receivers = vec!["none".into()];
        assert!(
            c.validate(&am)
                .expect_err("refused")
                .contains("no email_configs")
        );
    }
}
