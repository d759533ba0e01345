//! Cost per tenant through the real `vigil-agent` binary and its HTTP
//! endpoint: usage events for two tenants and models with cached-input and
//! reasoning tokens give costs equal to a table computed by hand from the
//! price table; a third tenant beyond `top_tenants` is counted as
//! `tenant="other"` until it outgrows a named one; a model missing from the
//! price table is counted, not costed at 0; agent and tool operations get
//! their own series.

mod common;

use common::{AgentProc, get_text, metric, sum};
use serde_json::{Value, json};

const CONFIG: &str = r#"
interval: 1s
remote_write: { url: "" }
system: { enabled: false }
llm:
  top_tenants: 2
  prices:
    # A model whose reasoning tokens cost more than its other output, so
    # the four token types are all priced apart.
    my-reasoner: {input: 2, output: 8, cached_input: 0.5, reasoning: 12}
"#;

async fn post(agent: &AgentProc, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(agent.url("/v1/llm/usage"))
        .json(&body)
        .send()
        .await
        .expect("POST /v1/llm/usage");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON answer"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_costs_match_a_hand_computed_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let agent = AgentProc::spawn(CONFIG, dir.path(), &["--data-dir", &data.to_string_lossy()]);
    agent.wait_healthy().await;

    let (status, answer) = post(
        &agent,
        json!([
            // acme, o4-mini from the built-in table: $1.10 input, $0.275
            // cached input, $4.40 output (reasoning billed as output).
            {"provider": "openai", "model": "o4-mini", "tenant": "acme", "agent": "planner",
             "input_tokens": 10000, "cached_input_tokens": 6000,
             "output_tokens": 3000, "reasoning_output_tokens": 2000,
             "duration_seconds": 4.0, "time_to_first_token_seconds": 0.3},
            // globex, my-reasoner from the configuration.
            {"provider": "custom", "model": "my-reasoner", "tenant": "globex",
             "input_tokens": 5000, "cached_input_tokens": 1000,
             "output_tokens": 4000, "reasoning_output_tokens": 3000,
             "time_to_first_token_seconds": 1.2},
            // acme again, claude-sonnet-4-5: $3, cache reads $0.30, $15.
            {"provider": "anthropic", "model": "claude-sonnet-4-5", "tenant": "acme",
             "input_tokens": 2000, "cached_input_tokens": 1500, "output_tokens": 500},
            // A third tenant, smaller than both: other.
            {"provider": "openai", "model": "gpt-4o-mini", "tenant": "initech",
             "input_tokens": 1000, "output_tokens": 100},
            // A model priced nowhere: counted, never costed at 0.
            {"provider": "local", "model": "llama-unpriced", "tenant": "acme",
             "input_tokens": 10, "output_tokens": 10},
            // An agent run and a tool call.
            {"operation": "invoke_agent", "agent": "planner", "duration_seconds": 2.0},
            {"operation": "execute_tool", "tool": "web_search", "duration_seconds": 0.5,
             "status": "timeout"}
        ]),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 7);

    // What cannot be right is refused, naming the field.
    let (status, answer) = post(
        &agent,
        json!([
            {"provider": "openai", "model": "o4-mini", "input_tokens": 10, "cached_input_tokens": 11},
            {"provider": "openai", "model": "o4-mini", "tool": "web_search"},
            {"operation": "execute_tool"},
            {"operation": "invoke_agent", "agent": "planner", "input_tokens": 5}
        ]),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["rejected"], 4, "{answer}");
    let fields: Vec<&str> = answer["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        fields,
        ["cached_input_tokens", "tool", "tool", "provider"],
        "{answer}"
    );

    // The hand-computed table (USD; tokens / 1e6 × price per million).
    let o4_mini = (4000.0 * 1.10 + 6000.0 * 0.275 + 1000.0 * 4.40 + 2000.0 * 4.40) / 1e6;
    let my_reasoner = (4000.0 * 2.0 + 1000.0 * 0.5 + 1000.0 * 8.0 + 3000.0 * 12.0) / 1e6;
    let sonnet = (500.0 * 3.0 + 1500.0 * 0.30 + 500.0 * 15.0) / 1e6;
    let mini = (1000.0 * 0.15 + 100.0 * 0.60) / 1e6;
    assert!(close(o4_mini, 0.019_25) && close(my_reasoner, 0.0525));
    assert!(close(sonnet, 0.009_45) && close(mini, 0.000_21));

    let text = get_text(&agent.url("/metrics")).await;
    let cost = |tenant: &str, model: &str| {
        metric(
            &text,
            "llm_cost_usd_total",
            &[("tenant", tenant), ("model", model)],
        )
    };
    for (tenant, model, want) in [
        ("acme", "o4-mini", o4_mini),
        ("acme", "claude-sonnet-4-5", sonnet),
        ("globex", "my-reasoner", my_reasoner),
        ("other", "gpt-4o-mini", mini),
    ] {
        let got = cost(tenant, model).unwrap_or_else(|| panic!("{tenant}/{model}:\n{text}"));
        assert!(close(got, want), "{tenant}/{model}: {got} != {want}");
    }
    assert!(
        !text.contains("tenant=\"initech\""),
        "the third tenant is not a label value"
    );
    assert!(close(
        sum(&text, "llm_cost_usd_total", &[("tenant", "acme")]),
        o4_mini + sonnet
    ));
    // Tokens by type, cached and reasoning as parts of input and output.
    for (kind, want) in [
        ("input", 10000.0),
        ("cached_input", 6000.0),
        ("output", 3000.0),
        ("reasoning", 2000.0),
    ] {
        assert_eq!(
            metric(
                &text,
                "llm_tokens_total",
                &[("tenant", "acme"), ("model", "o4-mini"), ("type", kind)]
            ),
            Some(want),
            "{kind}"
        );
    }
    // The unpriced model: counted and its tokens kept, no cost series.
    assert_eq!(
        metric(
            &text,
            "llm_unpriced_requests_total",
            &[("provider", "local"), ("model", "llama-unpriced")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "llm_tokens_total",
            &[
                ("tenant", "acme"),
                ("model", "llama-unpriced"),
                ("type", "input")
            ]
        ),
        Some(10.0)
    );
    assert_eq!(cost("acme", "llama-unpriced"), None);
    // Time to first token.
    assert_eq!(
        metric(
            &text,
            "llm_time_to_first_token_seconds_bucket",
            &[("model", "o4-mini"), ("le", "0.5")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "llm_time_to_first_token_seconds_bucket",
            &[("model", "my-reasoner"), ("le", "1")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &text,
            "llm_time_to_first_token_seconds_sum",
            &[("model", "my-reasoner")]
        ),
        Some(1.2)
    );
    // Agents and tools.
    for (op, want) in [("invoke_agent", 1.0), ("chat", 1.0)] {
        assert_eq!(
            metric(
                &text,
                "llm_agent_requests_total",
                &[("agent", "planner"), ("operation", op), ("status", "ok")]
            ),
            Some(want),
            "{op}"
        );
    }
    assert_eq!(
        metric(
            &text,
            "llm_tool_calls_total",
            &[("tool", "web_search"), ("status", "timeout")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "llm_tool_duration_seconds_sum",
            &[("tool", "web_search")]
        ),
        Some(0.5)
    );
    assert_eq!(
        sum(&text, "llm_requests_total", &[]),
        5.0,
        "agent and tool operations are not model requests"
    );

    // initech outgrows acme (the smaller named tenant) by more than 10%:
    // it is named from now on, acme's series leave the exposition with
    // their values kept, and nothing already counted moves.
    let (status, _) = post(
        &agent,
        json!({"provider": "openai", "model": "gpt-4o", "tenant": "initech", "input_tokens": 20000}),
    )
    .await;
    assert_eq!(status, 200);
    let gpt_4o = 20000.0 * 2.5 / 1e6;
    let text = get_text(&agent.url("/metrics")).await;
    let got = |tenant: &str, model: &str| {
        metric(
            &text,
            "llm_cost_usd_total",
            &[("tenant", tenant), ("model", model)],
        )
    };
    assert_eq!(got("initech", "gpt-4o"), Some(gpt_4o));
    assert_eq!(
        got("other", "gpt-4o-mini"),
        Some(mini),
        "other keeps what it counted"
    );
    assert!(!text.contains("tenant=\"acme\""), "acme is parked");
    let exposed = sum(&text, "llm_cost_usd_total", &[]);
    assert!(
        close(
            exposed + o4_mini + sonnet,
            o4_mini + sonnet + my_reasoner + mini + gpt_4o
        ),
        "every dollar is counted once: {exposed}"
    );
    // The warning for the unpriced model was logged, once.
    let log = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(
        log.matches("no price configured for this model").count(),
        1,
        "{log}"
    );
}
