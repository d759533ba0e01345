//! LLM usage end to end: the real OpenTelemetry Python SDK exports GenAI
//! metrics over OTLP/HTTP (protobuf) to the agent, with cumulative and with
//! delta temporality; an OTLP/JSON body; and usage events over HTTP. The
//! agent's `/metrics` must carry the translated series with the right
//! values.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{free_port, get_text, metric};
use tokio_util::sync::CancellationToken;
use vigil_agent::config::{Config, ModelPrice};

/// Starts the agent in-process (no shipping, no host metrics) on a free
/// port and returns its base URL and stop token.
async fn start_agent() -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
    let port = free_port();
    let mut cfg = Config {
        listen: format!("127.0.0.1:{port}").parse().expect("addr"),
        ..Config::default()
    };
    cfg.remote_write.url = String::new();
    cfg.system.enabled = false;
    cfg.llm
        .prices
        .insert("gpt-4o".into(), ModelPrice::new(2.5, 10.0));
    let token = CancellationToken::new();
    let t = token.clone();
    let h = tokio::spawn(async move {
        vigil_agent::run(cfg, t).await.expect("agent runs");
    });
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{base}/-/healthy"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return (base, token, h);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("in-process agent never became healthy");
}

fn ensure_python_sdk() {
    let probe =
        "import opentelemetry.sdk.metrics, opentelemetry.exporter.otlp.proto.http.metric_exporter";
    let ok = Command::new("python3")
        .args(["-c", probe])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let st = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "opentelemetry-sdk",
                "opentelemetry-exporter-otlp-proto-http",
            ])
            .status()
            .expect("python3 with pip");
        assert!(st.success(), "pip install of the OpenTelemetry SDK failed");
    }
}

/// Records two rounds of GenAI metrics (new `gen_ai.provider.name` and old
/// `gen_ai.system` attributes) and exports after each round.
const SCRIPT: &str = r#"
import sys
from opentelemetry.sdk.metrics import MeterProvider, Histogram, Counter
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader, AggregationTemporality
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

endpoint, temporality = sys.argv[1], sys.argv[2]
pref = {Histogram: AggregationTemporality.DELTA, Counter: AggregationTemporality.DELTA} if temporality == "delta" else {}
exporter = OTLPMetricExporter(endpoint=endpoint, preferred_temporality=pref)
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=600000)
provider = MeterProvider(
    resource=Resource.create({"service.name": "chatbot", "service.instance.id": "pod-1"}),
    metric_readers=[reader],
)
meter = provider.get_meter("vigil-agent-test")
tokens = meter.create_histogram(
    "gen_ai.client.token.usage", unit="{token}", description="Measures number of input and output tokens used",
    explicit_bucket_boundaries_advisory=[1, 4, 16, 64, 256, 1024, 4096, 16384, 65536])
duration = meter.create_histogram(
    "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration",
    explicit_bucket_boundaries_advisory=[0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24])
requests = meter.create_counter("app.llm.requests", unit="{request}")
first_chunk = meter.create_histogram(
    "gen_ai.client.operation.time_to_first_chunk", unit="s",
    description="Time to receive the first chunk",
    explicit_bucket_boundaries_advisory=[0.1, 0.25, 0.5, 1.0])
new = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai", "gen_ai.agent.name": "planner"}
tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "web_search"}
duration.record(3.0, agent)
duration.record(0.3, {**tool, "error.type": "TimeoutError"})
old = {"gen_ai.operation.name": "chat", "gen_ai.system": "anthropic", "gen_ai.request.model": "claude"}
for inp, out, d in [(100, 20, 0.5), (300, 40, 1.5)]:
    tokens.record(inp, {**new, "gen_ai.token.type": "input"})
    tokens.record(out, {**new, "gen_ai.token.type": "output"})
    duration.record(d, new)
    first_chunk.record(d / 4, new)
    requests.add(1, new)
assert reader.force_flush()
tokens.record(1000, {**old, "gen_ai.token.type": "input"})
duration.record(2.0, {**old, "error.type": "timeout"})
requests.add(2, new)
assert reader.force_flush()
provider.shutdown()
"#;

async fn python_export(base: &str, temporality: &str) {
    let script = tempfile::NamedTempFile::new().expect("script file");
    std::fs::write(script.path(), SCRIPT).expect("write script");
    let out = tokio::process::Command::new("python3")
        .arg(script.path())
        .arg(format!("{base}/v1/metrics"))
        .arg(temporality)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python exporter failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check_genai(text: &str) {
    let new = [
        ("job", "chatbot"),
        ("instance", "pod-1"),
        ("gen_ai_provider_name", "openai"),
        ("gen_ai_request_model", "gpt-4o"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        new.iter().chain(extra).copied().collect()
    };
    let m = |name: &str, labels: &[(&str, &str)]| {
        metric(text, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing:\n{text}"))
    };
    assert_eq!(
        m(
            "gen_ai_client_token_usage_sum",
            &with(&[("gen_ai_token_type", "input")])
        ),
        400.0
    );
    assert_eq!(
        m(
            "gen_ai_client_token_usage_count",
            &with(&[("gen_ai_token_type", "input")])
        ),
        2.0
    );
    assert_eq!(
        m(
            "gen_ai_client_token_usage_sum",
            &with(&[("gen_ai_token_type", "output")])
        ),
        60.0
    );
    assert_eq!(
        m(
            "gen_ai_client_token_usage_bucket",
            &with(&[("gen_ai_token_type", "input"), ("le", "256")])
        ),
        1.0
    );
    assert_eq!(
        m(
            "gen_ai_client_token_usage_bucket",
            &with(&[("gen_ai_token_type", "input"), ("le", "+Inf")])
        ),
        2.0
    );
    assert_eq!(
        m("gen_ai_client_operation_duration_seconds_count", &with(&[])),
        2.0
    );
    assert_eq!(
        m("gen_ai_client_operation_duration_seconds_sum", &with(&[])),
        2.0
    );
    assert_eq!(
        m(
            "gen_ai_client_operation_duration_seconds_bucket",
            &with(&[("le", "0.64")])
        ),
        1.0
    );
    assert_eq!(
        m(
            "gen_ai_client_operation_duration_seconds_bucket",
            &with(&[("le", "2.56")])
        ),
        2.0
    );
    assert_eq!(m("app_llm_requests_total", &with(&[])), 4.0);
    // Old attribute: kept as-is and mirrored to the new name.
    let old = [
        ("gen_ai_system", "anthropic"),
        ("gen_ai_provider_name", "anthropic"),
        ("gen_ai_token_type", "input"),
    ];
    assert_eq!(m("gen_ai_client_token_usage_sum", &old), 1000.0);
    assert_eq!(
        m(
            "gen_ai_client_operation_duration_seconds_count",
            &[("gen_ai_system", "anthropic"), ("error_type", "timeout")]
        ),
        1.0
    );
    assert!(text.contains("# TYPE gen_ai_client_token_usage histogram"));
    // Other resource attributes land on target_info, as in Prometheus.
    assert_eq!(
        m(
            "target_info",
            &[
                ("job", "chatbot"),
                ("instance", "pod-1"),
                ("telemetry_sdk_language", "python")
            ]
        ),
        1.0
    );
    assert!(text.contains("# TYPE app_llm_requests_total counter"));
    // Time to first chunk, agent runs and tool calls feed the llm_* series
    // once (a cumulative export re-sends them unchanged).
    let pm = [("provider", "openai"), ("model", "gpt-4o")];
    assert_eq!(
        m("llm_time_to_first_token_seconds_count", &pm),
        2.0,
        "{text}"
    );
    assert_eq!(
        m(
            "llm_time_to_first_token_seconds_bucket",
            &[pm[0], pm[1], ("le", "0.25")]
        ),
        1.0
    );
    assert_eq!(
        m(
            "llm_agent_requests_total",
            &[
                ("agent", "planner"),
                ("operation", "invoke_agent"),
                ("status", "ok")
            ]
        ),
        1.0
    );
    assert_eq!(
        m(
            "llm_agent_duration_seconds_sum",
            &[("agent", "planner"), ("operation", "invoke_agent")]
        ),
        3.0
    );
    assert_eq!(
        m(
            "llm_tool_calls_total",
            &[("tool", "web_search"), ("status", "timeouterror")]
        ),
        1.0
    );
    assert_eq!(
        m("llm_requests_total", &[pm[0], pm[1], ("status", "ok")]),
        2.0,
        "agent and tool operations are not model requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_cumulative_and_delta_export() {
    ensure_python_sdk();
    for temporality in ["cumulative", "delta"] {
        let (base, stop, h) = start_agent().await;
        python_export(&base, temporality).await;
        let text = get_text(&format!("{base}/metrics")).await;
        check_genai(&text);
        stop.cancel();
        h.await.expect("agent stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_json_is_accepted_and_delta_sums_accumulate() {
    let (base, stop, h) = start_agent().await;
    let body = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
      "scopeMetrics":[{"metrics":[
        {"name":"gen_ai.client.token.usage","unit":"{token}","histogram":{"aggregationTemporality":1,"dataPoints":[
          {"attributes":[{"key":"gen_ai.system","value":{"stringValue":"openai"}},{"key":"gen_ai.token.type","value":{"stringValue":"input"}}],
           "timeUnixNano":"2","count":"3","sum":30,"bucketCounts":["1","2","0"],"explicitBounds":[5,10]}]}},
        {"name":"queue.size","unit":"{request}","gauge":{"dataPoints":[{"asInt":"7","timeUnixNano":"2"}]}},
        {"name":"llm.calls","unit":"{call}","sum":{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[{"asInt":"5","timeUnixNano":"2"}]}}
      ]}]}]}"#;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let r = client
            .post(format!("{base}/v1/metrics"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        assert!(
            r.status().is_success(),
            "{}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    let text = get_text(&format!("{base}/metrics")).await;
    let j = [("job", "svc"), ("gen_ai_provider_name", "openai")];
    assert_eq!(
        metric(&text, "gen_ai_client_token_usage_count", &j),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "gen_ai_client_token_usage_bucket",
            &[("job", "svc"), ("le", "10")]
        ),
        Some(6.0)
    );
    assert_eq!(metric(&text, "queue_size", &[("job", "svc")]), Some(7.0));
    assert_eq!(
        metric(&text, "llm_calls_total", &[("job", "svc")]),
        Some(10.0)
    );
    let bad = client
        .post(format!("{base}/v1/metrics"))
        .header("content-type", "application/x-protobuf")
        .body(vec![0xff, 0xff, 0xff])
        .send()
        .await
        .expect("POST");
    assert_eq!(bad.status().as_u16(), 400);
    stop.cancel();
    h.await.expect("agent stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_events_over_http() {
    let (base, stop, h) = start_agent().await;
    let client = reqwest::Client::new();
    let events = serde_json::json!([
        {"provider": "openai", "model": "gpt-4o", "operation": "chat", "input_tokens": 2000, "output_tokens": 1000, "duration_seconds": 0.7, "status": "ok", "tenant": "acme", "timestamp": "2026-11-25T12:00:00Z"},
        {"provider": "openai", "model": "gpt-4o", "input_tokens": "lots"},
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "status": "rate_limited", "queue_depth": 12},
        {"provider": "mistral", "model": "unpriced-model", "input_tokens": 5, "output_tokens": 5, "duration_seconds": 3.0, "status": "timeout"}
    ]);
    let r = client
        .post(format!("{base}/v1/llm/usage"))
        .json(&events)
        .send()
        .await
        .expect("POST");
    assert_eq!(
        r.status().as_u16(),
        400,
        "a batch with a bad event answers 400"
    );
    let body: serde_json::Value = r.json().await.expect("JSON answer");
    assert_eq!(body["accepted"], 3);
    assert_eq!(body["rejected"], 1);
    assert_eq!(body["errors"][0]["index"], 1);
    assert_eq!(body["errors"][0]["field"], "input_tokens");
    let r = client
        .post(format!("{base}/v1/llm/usage"))
        .json(&serde_json::json!({"provider": "openai", "model": "gpt-4o", "output_tokens": 1}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 200);

    let text = get_text(&format!("{base}/metrics")).await;
    let pm = [("provider", "openai"), ("model", "gpt-4o")];
    assert_eq!(
        metric(
            &text,
            "llm_requests_total",
            &[pm[0], pm[1], ("status", "ok")]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &text,
            "llm_requests_total",
            &[pm[0], pm[1], ("status", "rate_limited")]
        ),
        Some(1.0)
    );
    assert_eq!(
        common::sum(
            &text,
            "llm_tokens_total",
            &[pm[0], pm[1], ("type", "input")]
        ),
        2010.0
    );
    assert_eq!(
        common::sum(
            &text,
            "llm_tokens_total",
            &[pm[0], pm[1], ("type", "output")]
        ),
        1001.0
    );
    // The first event's tenant is a label of its own; the others have none.
    let acme = metric(
        &text,
        "llm_cost_usd_total",
        &[pm[0], pm[1], ("tenant", "acme")],
    )
    .expect("acme's cost");
    assert!((acme - (2000.0 * 2.5 + 1000.0 * 10.0) / 1e6).abs() < 1e-9);
    let cost = common::sum(&text, "llm_cost_usd_total", &pm);
    assert!(
        (cost - (2010.0 * 2.5 + 1001.0 * 10.0) / 1e6).abs() < 1e-9,
        "cost {cost}"
    );
    assert_eq!(metric(&text, "llm_rate_limited_total", &pm), Some(1.0));
    assert_eq!(metric(&text, "llm_queue_depth", &pm), Some(12.0));
    assert_eq!(
        metric(
            &text,
            "llm_unpriced_requests_total",
            &[("model", "unpriced-model")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "gen_ai_client_operation_duration_seconds_count",
            &[
                ("gen_ai_request_model", "unpriced-model"),
                ("error_type", "timeout")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "vigil_agent_llm_events_total",
            &[("outcome", "rejected")]
        ),
        Some(1.0)
    );
    stop.cancel();
    h.await.expect("agent stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_types_not_translated_are_refused_by_name_and_the_rest_kept() {
    let (base, stop, h) = start_agent().await;
    let client = reqwest::Client::new();
    // A gauge (with an exemplar, as SDKs attach inside a sampled trace)
    // beside an exponential histogram, which Vigil cannot store.
    let body = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
      "scopeMetrics":[{"metrics":[
        {"name":"queue.size","unit":"{request}","gauge":{"dataPoints":[{"asInt":"7","timeUnixNano":"2",
          "exemplars":[{"asDouble":7,"timeUnixNano":"2","traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}},
        {"name":"gen_ai.client.operation.duration","unit":"s","exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[
          {"timeUnixNano":"2","count":"2","sum":1.5,"scale":3,"zeroCount":"0","positive":{"offset":0,"bucketCounts":["1","1"]}}]}}
      ]}]}]}"#;
    let r = client
        .post(format!("{base}/v1/metrics"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 400);
    let answer: serde_json::Value = r.json().await.expect("a google.rpc.Status as JSON");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("gen_ai.client.operation.duration")
            && message.contains("exponential histogram")
            && message.contains("1 data points accepted, 1 refused"),
        "{answer}"
    );
    // The exemplar alone: the point is kept, OTLP's warning says what was not.
    let only_exemplar = body.replace(
        r#",
        {"name":"gen_ai.client.operation.duration","unit":"s","exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[
          {"timeUnixNano":"2","count":"2","sum":1.5,"scale":3,"zeroCount":"0","positive":{"offset":0,"bucketCounts":["1","1"]}}]}}"#,
        "",
    );
    assert_ne!(only_exemplar, body);
    let r = client
        .post(format!("{base}/v1/metrics"))
        .header("content-type", "application/json")
        .body(only_exemplar)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 200);
    let answer: serde_json::Value = r.json().await.expect("json");
    assert!(
        answer["partialSuccess"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("1 exemplars not kept")),
        "{answer}"
    );
    let text = get_text(&format!("{base}/metrics")).await;
    assert_eq!(
        metric(&text, "queue_size", &[("job", "svc")]),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "vigil_agent_otlp_rejected_total",
            &[("reason", "exponential_histogram")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "vigil_agent_otlp_rejected_total",
            &[("reason", "exemplar")]
        ),
        Some(2.0),
        "{text}"
    );
    stop.cancel();
    h.await.expect("agent stops");
}
