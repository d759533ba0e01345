//! OpenTelemetry GenAI metrics → the agent's own `llm_*` series, so that
//! applications instrumented with OpenTelemetry get the same cost, token and
//! request series (and with them the LLM alerts and dashboard) as those
//! sending usage events.
//!
//! What each GenAI histogram point adds since the last one (the increase of
//! a cumulative point, the whole of a delta point) is derived into:
//! - `gen_ai.client.token.usage` (sum = tokens): `llm_tokens_total{type}`
//!   and, priced by the price table, `llm_cost_usd_total`;
//! - `gen_ai.client.operation.duration` (count = calls):
//!   `llm_requests_total{status}` (`ok`, or the point's `error.type`),
//!   `llm_rate_limited_total` for rate-limit errors, and
//!   `llm_unpriced_requests_total` for models without a price.
//!
//! Labels are `provider` (`gen_ai.provider.name`, or the older
//! `gen_ai.system`) and `model` (`gen_ai.request.model`, else
//! `gen_ai.response.model`); points without a model are not derived.

use vigil_wire::Labels;
use vigil_wire::remote_write::MetricType;

use super::{Aggregator, UpdateError};
use crate::config::ModelPrice;

/// Prometheus name of `gen_ai.client.token.usage`.
pub const TOKEN_USAGE: &str = "gen_ai_client_token_usage";
/// Prometheus name of `gen_ai.client.operation.duration`.
pub const OPERATION_DURATION: &str = "gen_ai_client_operation_duration_seconds";

pub const REQUESTS_HELP: &str = "LLM requests by provider, model and status.";
pub const TOKENS_HELP: &str = "LLM tokens by provider, model and type.";
pub const COST_HELP: &str = "LLM cost in US dollars, from the price table.";
pub const UNPRICED_HELP: &str = "LLM requests for models missing from the price table.";
pub const RATE_LIMITED_HELP: &str = "LLM requests refused by the provider's rate limit (HTTP 429).";

/// Where prices come from, and who hears about models without one.
pub trait Pricing {
    fn price(&self, provider: &str, model: &str) -> Option<ModelPrice>;
    fn unpriced(&self, provider: &str, model: &str);
}

/// Whether a metric is one the `llm_*` series are derived from.
pub fn is_source(name: &str) -> bool {
    name == TOKEN_USAGE || name == OPERATION_DURATION
}

/// `status` for an `error.type`: rate limits under one name whatever the
/// SDK calls them, other types as given.
fn status_of(error_type: Option<&str>) -> String {
    match error_type.map(str::trim) {
        None | Some("") => "ok".into(),
        Some(t) => {
            let lower = t.to_ascii_lowercase();
            if lower == "429" || lower.contains("ratelimit") || lower.contains("rate_limit") {
                "rate_limited".into()
            } else {
                lower
            }
        }
    }
}

/// Derives the `llm_*` increase of one GenAI point. `sum`/`count` are what
/// the point added to its histogram.
pub fn derive(
    agg: &mut Aggregator,
    metric: &str,
    labels: &Labels,
    sum: f64,
    count: u64,
    pricing: &dyn Pricing,
) -> Vec<UpdateError> {
    let provider = labels.get("gen_ai_provider_name").unwrap_or("");
    let Some(model) = labels
        .get("gen_ai_request_model")
        .filter(|m| !m.is_empty())
        .or_else(|| labels.get("gen_ai_response_model"))
        .filter(|m| !m.is_empty())
    else {
        return Vec::new();
    };
    let with = |extra: &[(&str, &str)]| {
        Labels::from_pairs(
            [("provider", provider), ("model", model)]
                .iter()
                .chain(extra.iter())
                .copied(),
        )
    };
    let mut add = |name: &str, help: &str, labels: Labels, v: f64| {
        agg.value(name, help, MetricType::Counter, "", labels, v, true)
            .err()
    };
    let mut errors = Vec::new();
    match metric {
        TOKEN_USAGE => {
            let kind = match labels.get("gen_ai_token_type") {
                Some("input" | "prompt") => "input",
                Some("output" | "completion") => "output",
                _ => return errors,
            };
            let tokens = sum.max(0.0);
            errors.extend(add(
                "llm_tokens_total",
                TOKENS_HELP,
                with(&[("type", kind)]),
                tokens,
            ));
            if let Some(p) = pricing.price(provider, model) {
                let per_million = if kind == "input" { p.input } else { p.output };
                errors.extend(add(
                    "llm_cost_usd_total",
                    COST_HELP,
                    with(&[]),
                    tokens / 1e6 * per_million,
                ));
            }
        }
        OPERATION_DURATION => {
            let status = status_of(labels.get("error_type"));
            let calls = count as f64;
            errors.extend(add(
                "llm_requests_total",
                REQUESTS_HELP,
                with(&[("status", status.as_str())]),
                calls,
            ));
            if status == "rate_limited" {
                errors.extend(add(
                    "llm_rate_limited_total",
                    RATE_LIMITED_HELP,
                    with(&[]),
                    calls,
                ));
            }
            if pricing.price(provider, model).is_none() {
                errors.extend(add(
                    "llm_unpriced_requests_total",
                    UNPRICED_HELP,
                    with(&[]),
                    calls,
                ));
                pricing.unpriced(provider, model);
            }
        }
        _ => {}
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Table;
    impl Pricing for Table {
        fn price(&self, _: &str, model: &str) -> Option<ModelPrice> {
            (model == "gpt-4o").then_some(ModelPrice {
                input: 2.5,
                output: 10.0,
            })
        }
        fn unpriced(&self, _: &str, _: &str) {}
    }

    fn value(agg: &Aggregator, family: &str, want: &[(&str, &str)]) -> Option<f64> {
        agg.families()
            .into_iter()
            .find(|f| f.name == family)?
            .series
            .iter()
            .find(|s| want.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| s.value)
    }

    #[test]
    fn tokens_cost_and_requests_are_derived() {
        let mut agg = Aggregator::new(100);
        let point = |kind: &str| {
            Labels::from_pairs([
                ("gen_ai_provider_name", "openai"),
                ("gen_ai_request_model", "gpt-4o"),
                ("gen_ai_token_type", kind),
            ])
        };
        assert!(derive(&mut agg, TOKEN_USAGE, &point("input"), 1000.0, 2, &Table).is_empty());
        derive(&mut agg, TOKEN_USAGE, &point("output"), 500.0, 2, &Table);
        let duration = Labels::from_pairs([
            ("gen_ai_provider_name", "openai"),
            ("gen_ai_request_model", "gpt-4o"),
            ("error_type", "RateLimitError"),
        ]);
        derive(&mut agg, OPERATION_DURATION, &duration, 3.0, 2, &Table);
        let m = [("provider", "openai"), ("model", "gpt-4o")];
        assert_eq!(
            value(&agg, "llm_tokens_total", &[m[0], m[1], ("type", "input")]),
            Some(1000.0)
        );
        let cost = value(&agg, "llm_cost_usd_total", &m).expect("cost");
        assert!((cost - (1000.0 * 2.5 + 500.0 * 10.0) / 1e6).abs() < 1e-12);
        assert_eq!(
            value(
                &agg,
                "llm_requests_total",
                &[m[0], m[1], ("status", "rate_limited")]
            ),
            Some(2.0)
        );
        assert_eq!(value(&agg, "llm_rate_limited_total", &m), Some(2.0));
        assert_eq!(value(&agg, "llm_unpriced_requests_total", &m), None);
    }

    #[test]
    fn points_without_a_model_are_not_derived() {
        let mut agg = Aggregator::new(100);
        let l = Labels::from_pairs([("gen_ai_token_type", "input")]);
        derive(&mut agg, TOKEN_USAGE, &l, 10.0, 1, &Table);
        assert!(agg.families().is_empty());
    }
}
