//! The built-in price table: list prices of common hosted models, so that
//! `llm_cost_usd_total` exists out of the box. `llm.prices` in the
//! configuration overrides or extends it entry by entry, and
//! `llm.default_prices: false` turns it off.
//!
//! Figures are the providers' published list prices in US dollars per
//! million tokens for the standard tier — text, pay-as-you-go, no batch or
//! volume discounts, and for models whose price depends on prompt length,
//! the price of the shortest tier — with the cached-input (prompt cache
//! read) price where the provider publishes one. They were compiled
//! from OpenAI's, Anthropic's and Google's pricing pages as of
//! [`PRICES_AS_OF`]; prices change, so check the provider's page and set
//! `llm.prices` when you pay something else. Reviewing the table means
//! updating both the figures and the date.

use std::collections::BTreeMap;

use crate::config::ModelPrice;

/// When the figures below were last compared with the providers' pages
/// (also exposed as `vigil_agent_llm_price_table_info{as_of}`).
pub const PRICES_AS_OF: &str = "2026-11";

/// `(model, USD per 1M input tokens, USD per 1M output tokens, USD per 1M
/// input tokens read from the prompt cache)`; `None` where the provider
/// publishes no cached-input price (those tokens are priced as input).
/// Reasoning (thinking) tokens have no column: the three providers bill
/// them as output tokens, which is what an unset `reasoning` price does.
///
/// Cached input, as published: OpenAI's "cached input" column; Anthropic's
/// "cache hits & refreshes" (a tenth of the input price; cache writes are
/// not modelled); Google's "context caching" price for prompts up to 200k
/// tokens (storage per hour not modelled).
const DEFAULT_PRICES: &[(&str, f64, f64, Option<f64>)] = &[
    // OpenAI
    ("gpt-5", 1.25, 10.0, Some(0.125)),
    ("gpt-5-mini", 0.25, 2.0, Some(0.025)),
    ("gpt-5-nano", 0.05, 0.4, Some(0.005)),
    ("gpt-4.1", 2.0, 8.0, Some(0.5)),
    ("gpt-4.1-mini", 0.4, 1.6, Some(0.1)),
    ("gpt-4.1-nano", 0.1, 0.4, Some(0.025)),
    ("gpt-4o", 2.5, 10.0, Some(1.25)),
    ("gpt-4o-mini", 0.15, 0.6, Some(0.075)),
    ("gpt-4-turbo", 10.0, 30.0, None),
    ("gpt-3.5-turbo", 0.5, 1.5, None),
    ("o1", 15.0, 60.0, Some(7.5)),
    ("o3", 2.0, 8.0, Some(0.5)),
    ("o3-mini", 1.1, 4.4, Some(0.55)),
    ("o4-mini", 1.1, 4.4, Some(0.275)),
    // Anthropic
    ("claude-opus-4-5", 5.0, 25.0, Some(0.5)),
    ("claude-opus-4-1", 15.0, 75.0, Some(1.5)),
    ("claude-opus-4", 15.0, 75.0, Some(1.5)),
    ("claude-sonnet-4-5", 3.0, 15.0, Some(0.3)),
    ("claude-sonnet-4", 3.0, 15.0, Some(0.3)),
    ("claude-haiku-4-5", 1.0, 5.0, Some(0.1)),
    ("claude-3-7-sonnet", 3.0, 15.0, Some(0.3)),
    ("claude-3-5-sonnet", 3.0, 15.0, Some(0.3)),
    ("claude-3-5-haiku", 0.8, 4.0, Some(0.08)),
    ("claude-3-opus", 15.0, 75.0, Some(1.5)),
    ("claude-3-haiku", 0.25, 1.25, Some(0.03)),
    // Google
    ("gemini-2.5-pro", 1.25, 10.0, Some(0.125)),
    ("gemini-2.5-flash", 0.3, 2.5, Some(0.03)),
    ("gemini-2.5-flash-lite", 0.1, 0.4, Some(0.01)),
    ("gemini-2.0-flash", 0.1, 0.4, Some(0.025)),
    ("gemini-1.5-pro", 1.25, 5.0, None),
    ("gemini-1.5-flash", 0.075, 0.3, None),
];

/// The built-in table, keyed by model name.
pub fn default_prices() -> BTreeMap<String, ModelPrice> {
    DEFAULT_PRICES
        .iter()
        .map(|&(model, input, output, cached_input)| {
            (
                model.to_string(),
                ModelPrice {
                    input,
                    output,
                    cached_input,
                    reasoning: None,
                },
            )
        })
        .collect()
}

/// The names a model may be priced under, most specific first: the name
/// itself, then without a release suffix providers append to pinned
/// versions (`gpt-4o-2024-08-06`, `claude-sonnet-4-20250514`,
/// `claude-3-5-sonnet-latest`, `gemini-1.5-pro-002`).
pub fn model_keys(model: &str) -> Vec<&str> {
    let mut keys = vec![model];
    let mut current = model;
    while let Some(shorter) = strip_release_suffix(current) {
        keys.push(shorter);
        current = shorter;
    }
    keys
}

fn strip_release_suffix(model: &str) -> Option<&str> {
    let (head, last) = model.rsplit_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // -latest, -YYYYMMDD, -001
    if last == "latest" || (digits(last) && (last.len() == 8 || last.len() == 3)) {
        return Some(head);
    }
    // -YYYY-MM-DD
    if digits(last) && last.len() == 2 {
        let (head2, month) = head.rsplit_once('-')?;
        let (head3, year) = head2.rsplit_once('-')?;
        if digits(month) && month.len() == 2 && digits(year) && year.len() == 4 {
            return Some(head3);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_versions_fall_back_to_the_family_price() {
        assert_eq!(
            model_keys("gpt-4o-2024-08-06"),
            vec!["gpt-4o-2024-08-06", "gpt-4o"]
        );
        assert_eq!(
            model_keys("claude-sonnet-4-20250514"),
            vec!["claude-sonnet-4-20250514", "claude-sonnet-4"]
        );
        assert_eq!(
            model_keys("claude-3-5-sonnet-latest"),
            vec!["claude-3-5-sonnet-latest", "claude-3-5-sonnet"]
        );
        assert_eq!(
            model_keys("gemini-1.5-pro-002"),
            vec!["gemini-1.5-pro-002", "gemini-1.5-pro"]
        );
        // A size or version number is part of the name, not a release.
        assert_eq!(model_keys("claude-sonnet-4"), vec!["claude-sonnet-4"]);
        assert_eq!(model_keys("gpt-4"), vec!["gpt-4"]);
    }

    #[test]
    fn the_table_is_sane() {
        let t = default_prices();
        assert_eq!(t.len(), DEFAULT_PRICES.len(), "no model listed twice");
        for (m, p) in &t {
            assert!(p.input > 0.0 && p.output >= p.input, "{m}: {p:?}");
            // A cache read is a discount on input, never a surcharge.
            assert!(
                p.cached_input.is_none_or(|c| c > 0.0 && c < p.input),
                "{m}: {p:?}"
            );
            assert_eq!(p.reasoning, None, "{m}: reasoning is billed as output");
        }
        assert_eq!(
            t.get("gpt-4o"),
            Some(&ModelPrice {
                input: 2.5,
                output: 10.0,
                cached_input: Some(1.25),
                reasoning: None,
            })
        );
    }
}
