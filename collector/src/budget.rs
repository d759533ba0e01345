//! LLM spend budgets and provider quotas as series, so rules can page on
//! them: every rule-evaluation interval the collector writes
//!
//! - `llm_budget_usd{budget, <match labels>}`: the monthly budget;
//! - `llm_spend_month_to_date_usd{budget, …}`: what `llm_cost_usd_total`
//!   series matching the budget's labels rose by since the start of the
//!   calendar month (UTC), counter resets included (`increase`);
//! - `llm_spend_forecast_month_usd{budget, …}`: that spend extrapolated
//!   linearly to the end of the month;
//! - `llm_quota_tokens_per_minute{provider, model}` and
//!   `llm_quota_requests_per_minute{provider, model}`: provider quotas.
//!
//! PromQL cannot express "since the first of the month" (range windows are
//! fixed), which is why the spend is computed here rather than by a
//! recording rule. The default pack's `rules/llm-budget.rules.yml` warns
//! on the forecast and pages on the spend.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, TimeZone, Utc};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use vigil_promql::{Engine, QueryContext, Queryable, Value};
use vigil_rules::SampleAppender;
use vigil_wire::{Labels, Sample};

/// One monthly budget over the cost series whose labels match.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Names the budget (the `budget` label of the series written).
    pub name: String,
    /// Labels the `llm_cost_usd_total` series must carry (e.g.
    /// `tenant: acme`, `model: gpt-4o`); empty means all spend.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Budget for one calendar month (UTC), in US dollars.
    pub monthly_usd: f64,
}

/// A provider's rate limits for one model.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub provider: String,
    pub model: String,
    /// Tokens per minute (TPM) the provider allows.
    #[serde(default)]
    pub tokens_per_minute: Option<f64>,
    /// Requests per minute (RPM) the provider allows.
    #[serde(default)]
    pub requests_per_minute: Option<f64>,
}

/// `llm:` in `vigil.yml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Monthly budgets; see the module docs for the series written.
    pub budgets: Vec<BudgetConfig>,
    /// Provider quotas per model.
    pub quotas: Vec<QuotaConfig>,
}

impl LlmConfig {
    /// What serde cannot check.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for (i, b) in self.budgets.iter().enumerate() {
            let at = format!("llm.budgets[{i}]");
            if b.name.is_empty() {
                return Err(format!("{at}: name is empty"));
            }
            if !names.insert(&b.name) {
                return Err(format!("{at}: budget {:?} is defined twice", b.name));
            }
            if !(b.monthly_usd.is_finite() && b.monthly_usd > 0.0) {
                return Err(format!("{at}: monthly_usd must be a positive number"));
            }
            for (k, v) in &b.labels {
                if k == "budget" || k == "__name__" || !vigil_wire::labels::is_valid_label_name(k) {
                    return Err(format!("{at}: labels: {k:?} cannot be matched"));
                }
                if v.contains(['"', '\\', '\n']) {
                    return Err(format!(
                        "{at}: labels: the value of {k} has a quote, backslash or newline"
                    ));
                }
            }
        }
        for (i, q) in self.quotas.iter().enumerate() {
            let at = format!("llm.quotas[{i}]");
            if q.provider.is_empty() || q.model.is_empty() {
                return Err(format!("{at}: provider and model are required"));
            }
            if q.tokens_per_minute.is_none() && q.requests_per_minute.is_none() {
                return Err(format!(
                    "{at}: set tokens_per_minute, requests_per_minute or both"
                ));
            }
            for v in [q.tokens_per_minute, q.requests_per_minute]
                .into_iter()
                .flatten()
            {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("{at}: quotas must be positive numbers"));
                }
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.budgets.is_empty() && self.quotas.is_empty()
    }
}

/// Start of the calendar month (UTC) holding `now_ms`, and its length, both
/// in milliseconds.
pub fn month_bounds(now_ms: i64) -> (i64, i64) {
    let now = Utc
        .timestamp_millis_opt(now_ms)
        .single()
        .unwrap_or_else(Utc::now);
    let start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    let (ny, nm) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    let next = Utc
        .with_ymd_and_hms(ny, nm, 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    (
        start.timestamp_millis(),
        next.timestamp_millis() - start.timestamp_millis(),
    )
}

/// The query for a budget's month-to-date spend with a window of `secs`.
pub fn spend_query(b: &BudgetConfig, secs: i64) -> String {
    let matchers: Vec<String> = b
        .labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!(
        "sum(increase(llm_cost_usd_total{{{}}}[{secs}s]))",
        matchers.join(",")
    )
}

/// The samples for one evaluation at `now_ms`.
pub fn evaluate(
    cfg: &LlmConfig,
    engine: &Engine,
    storage: &dyn Queryable,
    now_ms: i64,
) -> (Vec<(Labels, Sample)>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let (start_ms, month_ms) = month_bounds(now_ms);
    let elapsed_ms = (now_ms - start_ms).max(1);
    // At least one second: `[0s]` is not a valid range.
    let secs = (elapsed_ms / 1000).max(1);
    let sample = |v: f64| Sample {
        timestamp_ms: now_ms,
        value: v,
    };
    for b in &cfg.budgets {
        let labels = |metric: &str| {
            let mut pairs: Vec<(String, String)> = b
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            pairs.push(("budget".into(), b.name.clone()));
            pairs.push(("__name__".into(), metric.into()));
            Labels::from_pairs(pairs)
        };
        out.push((labels("llm_budget_usd"), sample(b.monthly_usd)));
        let spend = match engine.instant(
            storage,
            &spend_query(b, secs),
            now_ms,
            &QueryContext::default(),
        ) {
            Ok(Value::Vector(v)) => v.first().map_or(0.0, |s| s.v),
            Ok(other) => {
                errors.push(format!("budget {}: unexpected result {other:?}", b.name));
                continue;
            }
            Err(e) => {
                errors.push(format!("budget {}: {e}", b.name));
                continue;
            }
        };
        out.push((labels("llm_spend_month_to_date_usd"), sample(spend)));
        let forecast = spend * month_ms as f64 / elapsed_ms as f64;
        out.push((labels("llm_spend_forecast_month_usd"), sample(forecast)));
    }
    for q in &cfg.quotas {
        let labels = |metric: &str| {
            Labels::from_pairs(vec![
                ("__name__".to_string(), metric.to_string()),
                ("provider".to_string(), q.provider.clone()),
                ("model".to_string(), q.model.clone()),
            ])
        };
        if let Some(tpm) = q.tokens_per_minute {
            out.push((labels("llm_quota_tokens_per_minute"), sample(tpm)));
        }
        if let Some(rpm) = q.requests_per_minute {
            out.push((labels("llm_quota_requests_per_minute"), sample(rpm)));
        }
    }
    (out, errors)
}

/// Writes the budget and quota series every `every` until `shutdown`.
pub async fn run(
    cfg: LlmConfig,
    engine: Arc<Engine>,
    storage: Arc<dyn Queryable + Send + Sync>,
    appender: Arc<dyn SampleAppender>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (cfg, engine, storage) = (cfg.clone(), engine.clone(), storage.clone());
        let result = tokio::task::spawn_blocking(move || {
            evaluate(&cfg, &engine, storage.as_ref(), crate::params::now_ms())
        })
        .await;
        match result {
            Ok((samples, errors)) => {
                for e in errors {
                    tracing::warn!(error = %e, "LLM budget evaluation failed");
                }
                if let Err(e) = appender.append(samples) {
                    tracing::warn!(error = %e, "writing LLM budget series failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "LLM budget evaluation task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_bounds_follow_the_calendar() {
        // 2026-02-14T12:00:00Z: February 2026 has 28 days.
        let now = Utc
            .with_ymd_and_hms(2026, 2, 14, 12, 0, 0)
            .single()
            .expect("date")
            .timestamp_millis();
        let (start, len) = month_bounds(now);
        assert_eq!(
            start,
            Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0)
                .single()
                .expect("date")
                .timestamp_millis()
        );
        assert_eq!(len, 28 * 86_400_000);
        // December rolls into the next year.
        let dec = Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 59, 59)
            .single()
            .expect("date")
            .timestamp_millis();
        assert_eq!(month_bounds(dec).1, 31 * 86_400_000);
    }

    #[test]
    fn spend_query_matches_the_budget_labels() {
        let b = BudgetConfig {
            name: "acme".into(),
            labels: [("tenant".to_string(), "acme".to_string())].into(),
            monthly_usd: 10.0,
        };
        assert_eq!(
            spend_query(&b, 3600),
            "sum(increase(llm_cost_usd_total{tenant=\"acme\"}[3600s]))"
        );
    }

    #[test]
    fn validation_refuses_what_cannot_work() {
        let mut cfg = LlmConfig {
            budgets: vec![BudgetConfig {
                name: "a".into(),
                labels: BTreeMap::new(),
                monthly_usd: 0.0,
            }],
            quotas: vec![],
        };
        assert!(cfg.validate().expect_err("refused").contains("monthly_usd"));
        cfg.budgets[0].monthly_usd = 5.0;
        cfg.budgets.push(cfg.budgets[0].clone());
        assert!(
            cfg.validate()
                .expect_err("refused")
                .contains("defined twice")
        );
        cfg.budgets.pop();
        cfg.budgets[0].labels.insert("budget".into(), "x".into());
        assert!(
            cfg.validate()
                .expect_err("refused")
                .contains("cannot be matched")
        );
        cfg.budgets[0].labels.clear();
        cfg.quotas.push(QuotaConfig {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            tokens_per_minute: None,
            requests_per_minute: None,
        });
        assert!(
            cfg.validate()
                .expect_err("refused")
                .contains("tokens_per_minute")
        );
        cfg.quotas[0].requests_per_minute = Some(500.0);
        assert_eq!(cfg.validate(), Ok(()));
    }
}
