//! OpenTelemetry GenAI semantic conventions → the agent's own `llm_*`
//! series, shared by both doors (OTLP metrics and usage events), so that
//! applications instrumented with OpenTelemetry get the same cost, token and
//! request series (and with them the LLM alerts and dashboard) as those
//! sending usage events.
//!
//! The conventions as they stand (semantic-conventions `gen-ai`, status
//! "development"):
//!
//! | convention | Prometheus name (OTLP translation) | derived `llm_*` series |
//! |---|---|---|
//! | `gen_ai.client.token.usage` (histogram, `{token}`, `gen_ai.token.type` = `input`/`output`) | `gen_ai_client_token_usage_*` | `llm_tokens_total{type}`, `llm_cost_usd_total` |
//! | `gen_ai.client.operation.duration` (histogram, `s`, `error.type` on failure) | `gen_ai_client_operation_duration_seconds_*` | `llm_requests_total{status}`, `llm_rate_limited_total`, `llm_unpriced_requests_total`; for `invoke_agent`/`create_agent` `llm_agent_requests_total` and `llm_agent_duration_seconds`; for `execute_tool` `llm_tool_calls_total` and `llm_tool_duration_seconds` |
//! | `gen_ai.client.operation.time_to_first_chunk` (streaming clients) and `gen_ai.server.time_to_first_token` (model servers) | `gen_ai_client_operation_time_to_first_chunk_seconds_*`, `gen_ai_server_time_to_first_token_seconds_*` | `llm_time_to_first_token_seconds` |
//!
//! Attributes: `gen_ai.provider.name` (older `gen_ai.system`, mirrored by
//! the OTLP translation) → `provider`; `gen_ai.request.model` (else
//! `gen_ai.response.model`) → `model`; `gen_ai.operation.name` (`chat`,
//! `text_completion`, `generate_content`, `embeddings`, `create_agent`,
//! `invoke_agent`, `execute_tool`, …) chooses model-call, agent or tool
//! series; `gen_ai.agent.name` → `agent`, `gen_ai.tool.name` → `tool`;
//! `error.type` → `status` (`ok` without it; rate-limit errors under one
//! name, `rate_limited`).
//!
//! Cached-input and reasoning tokens exist in the conventions only as span
//! attributes (`gen_ai.usage.cache_read.input_tokens`, part of
//! `gen_ai.usage.input_tokens`; `gen_ai.usage.reasoning.output_tokens`,
//! part of the output tokens), which the metrics do not carry: usage events
//! carry them (`cached_input_tokens`, `reasoning_output_tokens`, with the
//! same containment), and an OTLP token point whose `gen_ai.token.type` is
//! `cached_input` or `reasoning` (not in the conventions, but sent by some
//! SDKs) is counted under that type. OTLP costs price all input at the
//! input price and all output at the output price (an upper bound when
//! prompts hit the cache): send usage events for exact cost.
//!
//! What each GenAI histogram point adds since the last one (the increase of
//! a cumulative point, the whole of a delta point) is what is derived.

use vigil_wire::Labels;
use vigil_wire::remote_write::MetricType;

use super::{Aggregator, HistIncrease, UpdateError};
use crate::config::ModelPrice;

/// Prometheus name of `gen_ai.client.token.usage`.
pub const TOKEN_USAGE: &str = "gen_ai_client_token_usage";
/// Prometheus name of `gen_ai.client.operation.duration`.
pub const OPERATION_DURATION: &str = "gen_ai_client_operation_duration_seconds";
/// Prometheus name of `gen_ai.client.operation.time_to_first_chunk`.
pub const TIME_TO_FIRST_CHUNK: &str = "gen_ai_client_operation_time_to_first_chunk_seconds";
/// Prometheus name of `gen_ai.server.time_to_first_token`.
pub const SERVER_TIME_TO_FIRST_TOKEN: &str = "gen_ai_server_time_to_first_token_seconds";

pub const REQUESTS_HELP: &str = "LLM requests by provider, model and status.";
pub const TOKENS_HELP: &str = "LLM tokens by provider, model, type (input and output; cached_input is the part of input read from the prompt cache, reasoning the part of output spent reasoning) and tenant.";
pub const COST_HELP: &str =
    "LLM cost in US dollars, from the price table, by provider, model and tenant.";
pub const UNPRICED_HELP: &str = "LLM requests for models missing from the price table.";
pub const RATE_LIMITED_HELP: &str = "LLM requests refused by the provider's rate limit (HTTP 429).";
pub const TTFT_HELP: &str = "Time from the LLM request to its first output token or chunk.";
pub const AGENT_REQUESTS_HELP: &str = "GenAI agent operations by agent, operation and status.";
pub const AGENT_DURATION_HELP: &str = "GenAI agent operation duration by agent and operation.";
pub const TOOL_CALLS_HELP: &str = "GenAI tool calls by tool and status.";
pub const TOOL_DURATION_HELP: &str = "GenAI tool call duration by tool.";

/// Families carrying the bounded `tenant` label.
pub const TENANT_FAMILIES: &[&str] = &["llm_cost_usd_total", "llm_tokens_total"];
/// Families carrying the bounded `agent` label.
pub const AGENT_FAMILIES: &[&str] = &["llm_agent_requests_total", "llm_agent_duration_seconds"];
/// Families carrying the bounded `tool` label.
pub const TOOL_FAMILIES: &[&str] = &["llm_tool_calls_total", "llm_tool_duration_seconds"];

/// The bounded labels (see [`super::topn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounded {
    Tenant,
    Agent,
    Tool,
}

/// Where prices come from, who hears about models without one, and which
/// label value a tenant, agent or tool name gets.
pub trait Pricing {
    fn price(&self, provider: &str, model: &str) -> Option<ModelPrice>;
    fn unpriced(&self, provider: &str, model: &str);
    /// The label value for `name` after adding `weight` (cost or calls).
    fn bounded(&self, which: Bounded, name: &str, weight: f64, agg: &mut Aggregator) -> String;
}

/// One histogram point as the OTLP translation stored it.
pub struct Point<'a> {
    pub bounds: &'a [f64],
    pub increase: &'a HistIncrease,
}

/// Whether a metric is one the `llm_*` series are derived from.
pub fn is_source(name: &str) -> bool {
    matches!(
        name,
        TOKEN_USAGE | OPERATION_DURATION | TIME_TO_FIRST_CHUNK | SERVER_TIME_TO_FIRST_TOKEN
    )
}

/// Operations on agents (`gen_ai.operation.name`).
pub fn is_agent_operation(op: &str) -> bool {
    matches!(op, "invoke_agent" | "create_agent")
}

/// The operation on tools.
pub const EXECUTE_TOOL: &str = "execute_tool";

/// `status` for an `error.type`: rate limits under one name whatever the
/// SDK calls them, other types as given.
pub fn status_of(error_type: Option<&str>) -> String {
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

/// Token counts of one call (or one point), as the conventions count them:
/// `cached_input` is part of `input`, `reasoning` part of `output`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tokens {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    pub reasoning: u64,
}

fn counter(
    agg: &mut Aggregator,
    name: &str,
    help: &str,
    labels: Labels,
    v: f64,
) -> Option<UpdateError> {
    agg.value(name, help, MetricType::Counter, "", labels, v, true)
        .err()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// Counts a call's tokens into `llm_tokens_total` and, priced, into
/// `llm_cost_usd_total`, under the tenant's bounded label (weighted by the
/// call's cost). Returns the cost, or `None` for an unpriced model (the
/// caller counts the request as unpriced).
pub fn record_tokens(
    agg: &mut Aggregator,
    pricing: &dyn Pricing,
    provider: &str,
    model: &str,
    tenant: Option<&str>,
    t: Tokens,
    errors: &mut Vec<UpdateError>,
) -> Option<f64> {
    let price = pricing.price(provider, model);
    let cost = price.map(|p| p.cost(t.input, t.cached_input, t.output, t.reasoning));
    let tenant = tenant.map(|n| pricing.bounded(Bounded::Tenant, n, cost.unwrap_or(0.0), agg));
    let with = |extra: &[(&str, &str)]| {
        let mut l = vec![("provider", provider), ("model", model)];
        if let Some(t) = &tenant {
            l.push(("tenant", t.as_str()));
        }
        l.extend_from_slice(extra);
        labels(&l)
    };
    for (kind, n, always) in [
        ("input", t.input, true),
        ("output", t.output, true),
        ("cached_input", t.cached_input, false),
        ("reasoning", t.reasoning, false),
    ] {
        if always || n > 0 {
            errors.extend(counter(
                agg,
                "llm_tokens_total",
                TOKENS_HELP,
                with(&[("type", kind)]),
                n as f64,
            ));
        }
    }
    if let Some(c) = cost {
        errors.extend(counter(agg, "llm_cost_usd_total", COST_HELP, with(&[]), c));
    }
    cost
}

/// Counts one model call: `llm_requests_total{status}`, rate limits and,
/// for unpriced models, `llm_unpriced_requests_total` (logged once).
pub fn record_requests(
    agg: &mut Aggregator,
    pricing: &dyn Pricing,
    provider: &str,
    model: &str,
    status: &str,
    calls: f64,
    errors: &mut Vec<UpdateError>,
) {
    let pm = [("provider", provider), ("model", model)];
    errors.extend(counter(
        agg,
        "llm_requests_total",
        REQUESTS_HELP,
        labels(&[pm[0], pm[1], ("status", status)]),
        calls,
    ));
    if status == "rate_limited" {
        errors.extend(counter(
            agg,
            "llm_rate_limited_total",
            RATE_LIMITED_HELP,
            labels(&pm),
            calls,
        ));
    }
    if pricing.price(provider, model).is_none() {
        count_unpriced(agg, pricing, provider, model, calls, errors);
    }
}

/// Counts an unpriced call outside `record_requests` (an agent operation
/// carrying tokens).
pub fn record_requests_unpriced(
    agg: &mut Aggregator,
    pricing: &dyn Pricing,
    provider: &str,
    model: &str,
    errors: &mut Vec<UpdateError>,
) {
    count_unpriced(agg, pricing, provider, model, 1.0, errors);
}

fn count_unpriced(
    agg: &mut Aggregator,
    pricing: &dyn Pricing,
    provider: &str,
    model: &str,
    calls: f64,
    errors: &mut Vec<UpdateError>,
) {
    errors.extend(counter(
        agg,
        "llm_unpriced_requests_total",
        UNPRICED_HELP,
        labels(&[("provider", provider), ("model", model)]),
        calls,
    ));
    pricing.unpriced(provider, model);
}

/// A duration to add to a histogram: one observation, or a point's
/// increase.
pub enum Durations<'a> {
    One { bounds: &'a [f64], seconds: f64 },
    Point(&'a Point<'a>),
}

fn add_durations(
    agg: &mut Aggregator,
    name: &str,
    help: &str,
    l: Labels,
    d: &Durations<'_>,
) -> Option<UpdateError> {
    match d {
        Durations::One { bounds, seconds } => agg.observe(name, help, l, bounds, *seconds).err(),
        Durations::Point(p) => agg
            .histogram(
                name,
                help,
                l,
                p.bounds,
                &p.increase.buckets,
                p.increase.sum,
                p.increase.count,
                true,
            )
            .err(),
    }
}

/// Counts agent operations (`invoke_agent`, `create_agent`, or model calls
/// an agent made) under the agent's bounded label.
#[allow(clippy::too_many_arguments)]
pub fn record_agent(
    agg: &mut Aggregator,
    pricing: &dyn Pricing,
    agent: &str,
    operation: &str,
    status: &str,
    calls: u64,
    durations: Option<Durations<'_>>,
    errors: &mut Vec<UpdateError>,
) {
    let agent = pricing.bounded(Bounded::Agent, agent, calls as f64, agg);
    let base = [("agent", agent.as_str()), ("operation", operation)];
    errors.extend(counter(
        agg,
        "llm_agent_requests_total",
        AGENT_REQUESTS_HELP,
        labels(&[base[0], base[1], ("status", status)]),
        calls as f64,
    ));
    if let Some(d) = durations {
        errors.extend(add_durations(
            agg,
            "llm_agent_duration_seconds",
            AGENT_DURATION_HELP,
            labels(&base),
            &d,
        ));
    }
}

/// Counts tool calls under the tool's bounded label.
pub fn record_tool(
    agg: &mut Aggregator,
    pricing: &dyn Pricing,
    tool: &str,
    status: &str,
    calls: u64,
    durations: Option<Durations<'_>>,
    errors: &mut Vec<UpdateError>,
) {
    let tool = pricing.bounded(Bounded::Tool, tool, calls as f64, agg);
    errors.extend(counter(
        agg,
        "llm_tool_calls_total",
        TOOL_CALLS_HELP,
        labels(&[("tool", tool.as_str()), ("status", status)]),
        calls as f64,
    ));
    if let Some(d) = durations {
        errors.extend(add_durations(
            agg,
            "llm_tool_duration_seconds",
            TOOL_DURATION_HELP,
            labels(&[("tool", tool.as_str())]),
            &d,
        ));
    }
}

/// Adds to `llm_time_to_first_token_seconds{provider,model}`.
pub fn record_ttft(
    agg: &mut Aggregator,
    provider: &str,
    model: &str,
    d: &Durations<'_>,
) -> Option<UpdateError> {
    add_durations(
        agg,
        "llm_time_to_first_token_seconds",
        TTFT_HELP,
        labels(&[("provider", provider), ("model", model)]),
        d,
    )
}

/// Derives the `llm_*` increase of one GenAI point (OTLP).
pub fn derive(
    agg: &mut Aggregator,
    metric: &str,
    l: &Labels,
    point: &Point<'_>,
    pricing: &dyn Pricing,
) -> Vec<UpdateError> {
    let mut errors = Vec::new();
    let provider = l.get("gen_ai_provider_name").unwrap_or("");
    let model = l
        .get("gen_ai_request_model")
        .filter(|m| !m.is_empty())
        .or_else(|| l.get("gen_ai_response_model"))
        .filter(|m| !m.is_empty());
    let operation = l.get("gen_ai_operation_name").unwrap_or("");
    let inc = point.increase;
    match metric {
        OPERATION_DURATION if is_agent_operation(operation) => {
            if let Some(agent) = l.get("gen_ai_agent_name").filter(|a| !a.is_empty()) {
                let status = status_of(l.get("error_type"));
                record_agent(
                    agg,
                    pricing,
                    agent,
                    operation,
                    &status,
                    inc.count,
                    Some(Durations::Point(point)),
                    &mut errors,
                );
            }
        }
        OPERATION_DURATION if operation == EXECUTE_TOOL => {
            if let Some(tool) = l.get("gen_ai_tool_name").filter(|a| !a.is_empty()) {
                let status = status_of(l.get("error_type"));
                record_tool(
                    agg,
                    pricing,
                    tool,
                    &status,
                    inc.count,
                    Some(Durations::Point(point)),
                    &mut errors,
                );
            }
        }
        OPERATION_DURATION => {
            if let Some(model) = model {
                let status = status_of(l.get("error_type"));
                record_requests(
                    agg,
                    pricing,
                    provider,
                    model,
                    &status,
                    inc.count as f64,
                    &mut errors,
                );
            }
        }
        TOKEN_USAGE => {
            let Some(model) = model else { return errors };
            let n = inc.sum.max(0.0).round() as u64;
            let t = match l.get("gen_ai_token_type") {
                Some("input" | "prompt") => Tokens {
                    input: n,
                    ..Tokens::default()
                },
                Some("output" | "completion") => Tokens {
                    output: n,
                    ..Tokens::default()
                },
                Some("cached_input" | "cache_read" | "cached") => {
                    return derive_part(agg, provider, model, "cached_input", n);
                }
                Some("reasoning") => {
                    return derive_part(agg, provider, model, "reasoning", n);
                }
                _ => return errors,
            };
            record_tokens(agg, pricing, provider, model, None, t, &mut errors);
        }
        TIME_TO_FIRST_CHUNK | SERVER_TIME_TO_FIRST_TOKEN => {
            if let Some(model) = model {
                errors.extend(record_ttft(agg, provider, model, &Durations::Point(point)));
            }
        }
        _ => {}
    }
    errors
}

/// A cached-input or reasoning token point: those tokens were already
/// counted (and priced) in the input or output point, so only the type's
/// own count is added. The cost stays at the input or output price: the
/// cache discount would have to be subtracted from a counter that must
/// never decrease.
fn derive_part(
    agg: &mut Aggregator,
    provider: &str,
    model: &str,
    kind: &str,
    n: u64,
) -> Vec<UpdateError> {
    counter(
        agg,
        "llm_tokens_total",
        TOKENS_HELP,
        labels(&[("provider", provider), ("model", model), ("type", kind)]),
        n as f64,
    )
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Table;
    impl Pricing for Table {
        fn price(&self, _: &str, model: &str) -> Option<ModelPrice> {
            (model == "gpt-4o").then_some(ModelPrice::new(2.5, 10.0))
        }
        fn unpriced(&self, _: &str, _: &str) {}
        fn bounded(&self, _: Bounded, name: &str, _: f64, _: &mut Aggregator) -> String {
            name.to_string()
        }
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

    fn inc(sum: f64, count: u64) -> HistIncrease {
        HistIncrease {
            sum,
            count,
            buckets: vec![count],
        }
    }

    fn point(i: &HistIncrease) -> Point<'_> {
        Point {
            bounds: &[],
            increase: i,
        }
    }

    #[test]
    fn tokens_cost_and_requests_are_derived() {
        let mut agg = Aggregator::new(100);
        let tokens = |kind: &str| {
            Labels::from_pairs([
                ("gen_ai_provider_name", "openai"),
                ("gen_ai_request_model", "gpt-4o"),
                ("gen_ai_token_type", kind),
            ])
        };
        let i = inc(1000.0, 2);
        assert!(derive(&mut agg, TOKEN_USAGE, &tokens("input"), &point(&i), &Table).is_empty());
        let o = inc(500.0, 2);
        derive(&mut agg, TOKEN_USAGE, &tokens("output"), &point(&o), &Table);
        let duration = Labels::from_pairs([
            ("gen_ai_provider_name", "openai"),
            ("gen_ai_request_model", "gpt-4o"),
            ("error_type", "RateLimitError"),
        ]);
        let d = inc(3.0, 2);
        derive(&mut agg, OPERATION_DURATION, &duration, &point(&d), &Table);
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
    fn agents_tools_and_time_to_first_token_are_derived() {
        let mut agg = Aggregator::new(100);
        let agent = Labels::from_pairs([
            ("gen_ai_operation_name", "invoke_agent"),
            ("gen_ai_agent_name", "planner"),
            ("gen_ai_provider_name", "openai"),
            ("gen_ai_request_model", "gpt-4o"),
        ]);
        let d = HistIncrease {
            sum: 7.0,
            count: 3,
            buckets: vec![1, 2],
        };
        let p = Point {
            bounds: &[1.0],
            increase: &d,
        };
        derive(&mut agg, OPERATION_DURATION, &agent, &p, &Table);
        let tool = Labels::from_pairs([
            ("gen_ai_operation_name", "execute_tool"),
            ("gen_ai_tool_name", "search"),
            ("error_type", "TimeoutError"),
        ]);
        derive(&mut agg, OPERATION_DURATION, &tool, &p, &Table);
        let ttft = Labels::from_pairs([
            ("gen_ai_provider_name", "openai"),
            ("gen_ai_request_model", "gpt-4o"),
        ]);
        derive(&mut agg, TIME_TO_FIRST_CHUNK, &ttft, &p, &Table);
        assert_eq!(
            value(
                &agg,
                "llm_agent_requests_total",
                &[
                    ("agent", "planner"),
                    ("operation", "invoke_agent"),
                    ("status", "ok")
                ]
            ),
            Some(3.0)
        );
        assert_eq!(
            value(&agg, "llm_requests_total", &[]),
            None,
            "an agent operation is not a model request"
        );
        assert_eq!(
            value(
                &agg,
                "llm_tool_calls_total",
                &[("tool", "search"), ("status", "timeouterror")]
            ),
            Some(3.0)
        );
        let text = crate::family::render_text(agg.families().iter());
        assert!(
            text.contains(
                "llm_time_to_first_token_seconds_bucket{le=\"1\",model=\"gpt-4o\",provider=\"openai\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("llm_tool_duration_seconds_sum{tool=\"search\"} 7\n"));
        assert!(text.contains(
            "llm_agent_duration_seconds_count{agent=\"planner\",operation=\"invoke_agent\"} 3\n"
        ));
    }

    #[test]
    fn points_without_a_model_are_not_derived() {
        let mut agg = Aggregator::new(100);
        let l = Labels::from_pairs([("gen_ai_token_type", "input")]);
        let i = inc(10.0, 1);
        derive(&mut agg, TOKEN_USAGE, &l, &point(&i), &Table);
        assert!(agg.families().is_empty());
    }
}
