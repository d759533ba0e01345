//! Usage events (`POST /v1/llm/usage`): one JSON object per LLM call, or an
//! array of them, for platforms without OpenTelemetry. The fields follow
//! the OpenTelemetry GenAI conventions' meaning ([`super::genai`]):
//!
//! - `provider`, `model` (non-empty strings): required for model calls, the
//!   default; optional for agent and tool operations;
//! - `operation` (`gen_ai.operation.name`, default `chat`): `invoke_agent`
//!   and `create_agent` are agent operations and need `agent`;
//!   `execute_tool` is a tool call and needs `tool`; anything else is a
//!   model call;
//! - `input_tokens`, `output_tokens` (non-negative integers, default 0);
//!   `cached_input_tokens`, the part of `input_tokens` read from the prompt
//!   cache, and `reasoning_output_tokens`, the part of `output_tokens` spent
//!   reasoning (so each is at most the total it is part of), each priced at
//!   its own rate;
//! - `duration_seconds`, `time_to_first_token_seconds` (non-negative
//!   numbers, optional);
//! - `status` (`ok` or an error type such as `rate_limited`, `timeout`,
//!   `server_error`; an HTTP status number is also accepted: 2xx → `ok`,
//!   429 → `rate_limited`, others → `http_<code>`; default `ok`);
//! - `tenant` (label on cost and tokens, bounded to the top tenants by
//!   cost, see [`super::topn`]), `agent` (`gen_ai.agent.name`; on any
//!   operation, so an agent's model calls count for it too), `tool`
//!   (`gen_ai.tool.name`, only with `execute_tool`);
//! - `timestamp` (RFC 3339 string or Unix seconds, validated; aggregates are
//!   stamped with their collection time) and `queue_depth` (non-negative).
//!
//! A model call feeds `gen_ai_client_token_usage` and
//! `gen_ai_client_operation_duration_seconds` (the OTLP series' names and
//! labels) plus `llm_requests_total`, `llm_tokens_total`,
//! `llm_cost_usd_total` (from the price table), `llm_unpriced_requests_total`,
//! `llm_rate_limited_total`, `llm_time_to_first_token_seconds` and
//! `llm_queue_depth`. Agent operations feed `llm_agent_requests_total` and
//! `llm_agent_duration_seconds` (and tokens and cost when they carry
//! tokens, for agents whose model calls are not reported apart); tool calls
//! feed `llm_tool_calls_total` and `llm_tool_duration_seconds`. Invalid
//! events are reported by index and field; valid ones in the same batch are
//! kept. A field not listed above refuses its event (`unknown field`), so a
//! typo such as `input_token` is never accepted and silently counted as
//! zero.

use serde::Serialize;
use serde_json::Value;
use vigil_wire::Labels;
use vigil_wire::remote_write::MetricType;

use super::{LlmState, genai};

/// One validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageEvent {
    /// Empty only for agent and tool operations without a model.
    pub provider: String,
    pub model: String,
    pub operation: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub reasoning_output_tokens: u64,
    pub duration_seconds: Option<f64>,
    pub time_to_first_token_seconds: Option<f64>,
    pub status: String,
    pub tenant: Option<String>,
    pub agent: Option<String>,
    pub tool: Option<String>,
    pub queue_depth: Option<f64>,
}

impl UsageEvent {
    /// Whether this is a model call (not an agent or tool operation).
    pub fn is_model_call(&self) -> bool {
        !(genai::is_agent_operation(&self.operation) || self.operation == genai::EXECUTE_TOOL)
    }

    fn tokens(&self) -> genai::Tokens {
        genai::Tokens {
            input: self.input_tokens,
            cached_input: self.cached_input_tokens,
            output: self.output_tokens,
            reasoning: self.reasoning_output_tokens,
        }
    }
}

/// Why one event was refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventError {
    pub index: usize,
    pub field: String,
    pub reason: String,
}

/// The answer to a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageResponse {
    pub accepted: usize,
    pub rejected: usize,
    pub errors: Vec<EventError>,
}

const MAX_LABEL_LEN: usize = 256;

fn err(index: usize, field: &str, reason: impl Into<String>) -> EventError {
    EventError {
        index,
        field: field.into(),
        reason: reason.into(),
    }
}

fn string_field(
    o: &serde_json::Map<String, Value>,
    i: usize,
    f: &str,
    required: bool,
) -> Result<Option<String>, EventError> {
    match o.get(f) {
        None | Some(Value::Null) if required => Err(err(i, f, "required")),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(err(i, f, "must not be empty")),
        Some(Value::String(s)) if s.len() > MAX_LABEL_LEN => {
            Err(err(i, f, format!("longer than {MAX_LABEL_LEN} bytes")))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err(i, f, "must be a string")),
    }
}

fn count_field(o: &serde_json::Map<String, Value>, i: usize, f: &str) -> Result<u64, EventError> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(v),
            (None, Some(v)) if v >= 0.0 && v.fract() == 0.0 && v < 9.0e15 => Ok(v as u64),
            _ => Err(err(i, f, "must be a non-negative integer")),
        },
        Some(_) => Err(err(i, f, "must be a non-negative integer")),
    }
}

fn number_field(
    o: &serde_json::Map<String, Value>,
    i: usize,
    f: &str,
) -> Result<Option<f64>, EventError> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v >= 0.0 && v.is_finite() => Ok(Some(v)),
            _ => Err(err(i, f, "must be a non-negative number")),
        },
        Some(_) => Err(err(i, f, "must be a non-negative number")),
    }
}

fn status_field(o: &serde_json::Map<String, Value>, i: usize) -> Result<String, EventError> {
    match o.get("status") {
        None | Some(Value::Null) => Ok("ok".into()),
        Some(Value::String(s)) => {
            let s = s.trim().to_ascii_lowercase();
            if s.is_empty()
                || s.len() > 64
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            {
                return Err(err(
                    i,
                    "status",
                    "must be `ok` or an error type like `rate_limited`",
                ));
            }
            Ok(match s.as_str() {
                "429" => "rate_limited".into(),
                _ => s,
            })
        }
        Some(Value::Number(n)) => match n.as_u64() {
            Some(200..=299) => Ok("ok".into()),
            Some(429) => Ok("rate_limited".into()),
            Some(c @ 100..=599) => Ok(format!("http_{c}")),
            _ => Err(err(i, "status", "HTTP status must be 100-599")),
        },
        Some(_) => Err(err(
            i,
            "status",
            "must be a string or an HTTP status number",
        )),
    }
}

fn timestamp_field(o: &serde_json::Map<String, Value>, i: usize) -> Result<(), EventError> {
    match o.get("timestamp") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) if n.as_f64().is_some_and(|v| v >= 0.0 && v.is_finite()) => Ok(()),
        Some(Value::String(s))
            if humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).is_ok()
                || humantime::parse_rfc3339(s).is_ok() =>
        {
            Ok(())
        }
        Some(_) => Err(err(i, "timestamp", "must be RFC 3339 or Unix seconds")),
    }
}

/// The fields an event may carry (see the module docs).
pub const FIELDS: [&str; 15] = [
    "provider",
    "model",
    "operation",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_output_tokens",
    "duration_seconds",
    "time_to_first_token_seconds",
    "status",
    "tenant",
    "agent",
    "tool",
    "timestamp",
    "queue_depth",
];

/// Validates one event.
pub fn parse_event(i: usize, v: &Value) -> Result<UsageEvent, EventError> {
    let Value::Object(o) = v else {
        return Err(err(i, "", "event must be a JSON object"));
    };
    if let Some(unknown) = o.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(err(
            i,
            unknown,
            format!("unknown field; known fields: {}", FIELDS.join(", ")),
        ));
    }
    let operation = string_field(o, i, "operation", false)?.unwrap_or_else(|| "chat".into());
    let is_agent_op = genai::is_agent_operation(&operation);
    let is_tool_op = operation == genai::EXECUTE_TOOL;
    let model_call = !(is_agent_op || is_tool_op);
    let provider = string_field(o, i, "provider", model_call)?;
    let model = string_field(o, i, "model", model_call)?;
    let input_tokens = count_field(o, i, "input_tokens")?;
    let output_tokens = count_field(o, i, "output_tokens")?;
    let cached_input_tokens = count_field(o, i, "cached_input_tokens")?;
    let reasoning_output_tokens = count_field(o, i, "reasoning_output_tokens")?;
    if cached_input_tokens > input_tokens {
        return Err(err(
            i,
            "cached_input_tokens",
            "is part of input_tokens and cannot exceed it",
        ));
    }
    if reasoning_output_tokens > output_tokens {
        return Err(err(
            i,
            "reasoning_output_tokens",
            "is part of output_tokens and cannot exceed it",
        ));
    }
    let duration_seconds = number_field(o, i, "duration_seconds")?;
    let time_to_first_token_seconds = number_field(o, i, "time_to_first_token_seconds")?;
    let status = status_field(o, i)?;
    let tenant = string_field(o, i, "tenant", false)?;
    let agent = string_field(o, i, "agent", is_agent_op)?;
    let tool = string_field(o, i, "tool", is_tool_op)?;
    if tool.is_some() && !is_tool_op {
        return Err(err(
            i,
            "tool",
            "only with operation execute_tool (the call of that tool)",
        ));
    }
    // Tokens, cost and time to first token are a model's: without one they
    // could be neither priced nor labelled.
    let has_tokens = input_tokens > 0 || output_tokens > 0;
    if (has_tokens || time_to_first_token_seconds.is_some())
        && (provider.is_none() || model.is_none())
    {
        let field = if provider.is_none() {
            "provider"
        } else {
            "model"
        };
        return Err(err(
            i,
            field,
            "required when the event carries tokens or time_to_first_token_seconds",
        ));
    }
    timestamp_field(o, i)?;
    let queue_depth = number_field(o, i, "queue_depth")?;
    if queue_depth.is_some() && model.is_none() {
        return Err(err(i, "model", "required with queue_depth"));
    }
    Ok(UsageEvent {
        provider: provider.unwrap_or_default(),
        model: model.unwrap_or_default(),
        operation,
        input_tokens,
        output_tokens,
        cached_input_tokens,
        reasoning_output_tokens,
        duration_seconds,
        time_to_first_token_seconds,
        status,
        tenant,
        agent,
        tool,
        queue_depth,
    })
}

/// Parses a request body: one object or an array of objects.
pub fn parse_body(body: &[u8]) -> Result<Vec<Result<UsageEvent, EventError>>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| parse_event(i, v))
            .collect(),
        other => vec![parse_event(0, &other)],
    })
}

const TOKEN_HELP: &str = "Number of input and output tokens used.";
const DURATION_HELP: &str = "GenAI operation duration.";

impl LlmState {
    /// Applies one valid event to the aggregates.
    pub fn record_event(&self, e: &UsageEvent) {
        let mut agg = self.agg.lock();
        let mut errors = Vec::new();
        let has_model = !e.model.is_empty();
        if e.is_model_call() {
            let genai_labels = |extra: &[(&str, &str)]| {
                let mut l = vec![
                    ("gen_ai_operation_name", e.operation.as_str()),
                    ("gen_ai_provider_name", e.provider.as_str()),
                    ("gen_ai_request_model", e.model.as_str()),
                ];
                l.extend_from_slice(extra);
                Labels::from_pairs(l)
            };
            for (kind, n) in [("input", e.input_tokens), ("output", e.output_tokens)] {
                errors.extend(
                    agg.observe(
                        genai::TOKEN_USAGE,
                        TOKEN_HELP,
                        genai_labels(&[("gen_ai_token_type", kind)]),
                        &self.token_buckets,
                        n as f64,
                    )
                    .err(),
                );
            }
            if let Some(d) = e.duration_seconds {
                let labels = if e.status == "ok" {
                    genai_labels(&[])
                } else {
                    genai_labels(&[("error_type", e.status.as_str())])
                };
                errors.extend(
                    agg.observe(
                        genai::OPERATION_DURATION,
                        DURATION_HELP,
                        labels,
                        &self.duration_buckets,
                        d,
                    )
                    .err(),
                );
            }
            genai::record_requests(
                &mut agg,
                self,
                &e.provider,
                &e.model,
                &e.status,
                1.0,
                &mut errors,
            );
        }
        if has_model && (e.is_model_call() || e.input_tokens > 0 || e.output_tokens > 0) {
            let cost = genai::record_tokens(
                &mut agg,
                self,
                &e.provider,
                &e.model,
                e.tenant.as_deref(),
                e.tokens(),
                &mut errors,
            );
            if cost.is_none() && !e.is_model_call() {
                // A model call counted itself as unpriced above.
                genai::record_requests_unpriced(&mut agg, self, &e.provider, &e.model, &mut errors);
            }
        }
        if let Some(t) = e.time_to_first_token_seconds {
            errors.extend(genai::record_ttft(
                &mut agg,
                &e.provider,
                &e.model,
                &genai::Durations::One {
                    bounds: &self.ttft_buckets,
                    seconds: t,
                },
            ));
        }
        let durations = |bounds| {
            e.duration_seconds
                .map(|seconds| genai::Durations::One { bounds, seconds })
        };
        if let Some(agent) = &e.agent {
            genai::record_agent(
                &mut agg,
                self,
                agent,
                &e.operation,
                &e.status,
                1,
                durations(&self.duration_buckets),
                &mut errors,
            );
        }
        if let Some(tool) = &e.tool {
            genai::record_tool(
                &mut agg,
                self,
                tool,
                &e.status,
                1,
                durations(&self.duration_buckets),
                &mut errors,
            );
        }
        if let Some(q) = e.queue_depth {
            errors.extend(
                agg.value(
                    "llm_queue_depth",
                    "LLM request queue depth, as last reported.",
                    MetricType::Gauge,
                    "",
                    Labels::from_pairs([
                        ("provider", e.provider.as_str()),
                        ("model", e.model.as_str()),
                    ]),
                    q,
                    false,
                )
                .err(),
            );
        }
        drop(agg);
        for e in errors {
            self.refused(&e);
        }
    }

    /// Handles a usage body; returns the answer and whether all was valid.
    pub fn ingest_usage(&self, body: &[u8]) -> Result<UsageResponse, String> {
        let parsed = parse_body(body)?;
        let mut resp = UsageResponse {
            accepted: 0,
            rejected: 0,
            errors: Vec::new(),
        };
        for r in parsed {
            match r {
                Ok(ev) => {
                    self.record_event(&ev);
                    resp.accepted += 1;
                }
                Err(e) => {
                    resp.rejected += 1;
                    if resp.errors.len() < 100 {
                        resp.errors.push(e);
                    }
                }
            }
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.stats
            .events_accepted
            .fetch_add(resp.accepted as u64, Relaxed);
        self.stats
            .events_rejected
            .fetch_add(resp.rejected as u64, Relaxed);
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LlmConfig, ModelPrice};
    use proptest::prelude::*;

    fn state() -> LlmState {
        let mut cfg = LlmConfig::default();
        cfg.prices
            .insert("gpt-4o".into(), ModelPrice::new(2.5, 10.0));
        LlmState::new(&cfg)
    }

    fn value(st: &LlmState, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        st.snapshot()
            .iter()
            .flat_map(|f| f.series.iter())
            .find_map(|s| {
                (s.labels.metric_name() == Some(name)
                    && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
                .then_some(s.value)
            })
    }

    #[test]
    fn batch_keeps_valid_events_and_reports_bad_ones() {
        let st = state();
        let body = br#"[
            {"provider":"openai","model":"gpt-4o","operation":"chat","input_tokens":1000,"output_tokens":500,"duration_seconds":1.2,"status":"ok"},
            {"provider":"openai","model":"gpt-4o","input_tokens":-5},
            {"provider":"openai","model":"gpt-4o","input_tokens":10,"status":"rate_limited","queue_depth":7},
            {"model":"x"},
            {"provider":"anthropic","model":"claude","input_tokens":3,"output_tokens":4,"status":429}
        ]"#;
        let r = st.ingest_usage(body).expect("valid JSON");
        assert_eq!((r.accepted, r.rejected), (3, 2));
        assert_eq!(r.errors[0].index, 1);
        assert_eq!(r.errors[0].field, "input_tokens");
        assert_eq!(r.errors[1].index, 3);
        assert_eq!(r.errors[1].field, "provider");
        assert_eq!(
            value(
                &st,
                "llm_requests_total",
                &[("model", "gpt-4o"), ("status", "ok")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &st,
                "llm_tokens_total",
                &[("model", "gpt-4o"), ("type", "input")]
            ),
            Some(1010.0)
        );
        let cost = value(&st, "llm_cost_usd_total", &[("model", "gpt-4o")]).expect("cost");
        assert!((cost - (1010.0 * 2.5 + 500.0 * 10.0) / 1e6).abs() < 1e-12);
        assert_eq!(
            value(&st, "llm_rate_limited_total", &[("model", "gpt-4o")]),
            Some(1.0)
        );
        assert_eq!(
            value(&st, "llm_rate_limited_total", &[("model", "claude")]),
            Some(1.0)
        );
        assert_eq!(
            value(&st, "llm_unpriced_requests_total", &[("model", "claude")]),
            Some(1.0)
        );
        assert_eq!(
            value(&st, "llm_queue_depth", &[("model", "gpt-4o")]),
            Some(7.0)
        );
        assert_eq!(
            value(
                &st,
                "gen_ai_client_operation_duration_seconds_count",
                &[("gen_ai_request_model", "gpt-4o")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &st,
                "gen_ai_client_token_usage_sum",
                &[
                    ("gen_ai_token_type", "output"),
                    ("gen_ai_request_model", "gpt-4o")
                ]
            ),
            Some(500.0)
        );
    }

    #[test]
    fn single_object_and_bad_json() {
        let st = state();
        let r = st
            .ingest_usage(br#"{"provider":"p","model":"m"}"#)
            .expect("json");
        assert_eq!(r.accepted, 1);
        assert!(st.ingest_usage(b"{not json").is_err());
        let r = st
            .ingest_usage(br#"[1, {"provider":"p","model":"m","timestamp":"yesterday"}]"#)
            .expect("json");
        assert_eq!(r.rejected, 2);
        assert_eq!(r.errors[1].field, "timestamp");
        // A misspelt field refuses the event, naming the field.
        let r = st
            .ingest_usage(br#"{"provider":"p","model":"m","input_token":5}"#)
            .expect("json");
        assert_eq!((r.accepted, r.rejected), (0, 1));
        assert_eq!(r.errors[0].field, "input_token");
        assert!(r.errors[0].reason.starts_with("unknown field"));
    }

    proptest! {
        #[test]
        fn parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_body(&body);
        }

        #[test]
        fn valid_events_round_trip(provider in "[a-z]{1,10}", model in "[a-z0-9.-]{1,12}", inp in 0u64..1_000_000, out in 0u64..1_000_000, d in 0.0f64..100.0) {
            let body = serde_json::json!({"provider": provider, "model": model, "input_tokens": inp, "output_tokens": out, "duration_seconds": d});
            let parsed = parse_body(body.to_string().as_bytes()).expect("json");
            let ev = parsed.into_iter().next().expect("one").expect("valid");
            prop_assert_eq!(ev.input_tokens, inp);
            prop_assert_eq!(ev.output_tokens, out);
            let got = ev.duration_seconds.expect("duration present");
            prop_assert!((got - d).abs() <= 1e-12 * d.max(1.0), "{got} vs {d}");
            prop_assert_eq!(ev.status, "ok");
        }

        /// Cached input and reasoning are parts of input and output: an
        /// event carrying parts is accepted exactly when each part fits in
        /// its total, and without part prices its cost is the plain
        /// input/output cost (a part is never priced twice).
        #[test]
        fn parts_fit_their_totals_and_are_priced_once(inp in 0u64..100_000, cached in 0u64..100_000, out in 0u64..100_000, reasoning in 0u64..100_000) {
            let body = serde_json::json!({"provider": "p", "model": "m", "input_tokens": inp, "cached_input_tokens": cached, "output_tokens": out, "reasoning_output_tokens": reasoning});
            let parsed = parse_body(body.to_string().as_bytes()).expect("json");
            let r = parsed.into_iter().next().expect("one");
            prop_assert_eq!(r.is_ok(), cached <= inp && reasoning <= out, "{:?}", r);
            let plain = ModelPrice::new(2.5, 10.0);
            let c = plain.cost(inp, cached.min(inp), out, reasoning.min(out));
            let want = (inp as f64 * 2.5 + out as f64 * 10.0) / 1e6;
            prop_assert!((c - want).abs() <= 1e-9 * want.max(1.0), "{c} vs {want}");
            let discounted = ModelPrice { cached_input: Some(0.5), reasoning: Some(12.0), ..plain };
            let d = discounted.cost(inp, cached.min(inp), out, reasoning.min(out));
            let want = ((inp - cached.min(inp)) as f64 * 2.5 + cached.min(inp) as f64 * 0.5
                + (out - reasoning.min(out)) as f64 * 10.0 + reasoning.min(out) as f64 * 12.0) / 1e6;
            prop_assert!((d - want).abs() <= 1e-9 * want.max(1.0), "{d} vs {want}");
        }
    }
}
