//! OTLP everywhere it is expected, through the real binaries and the real
//! OpenTelemetry Python SDK (`opentelemetry-sdk` with the OTLP/HTTP and
//! OTLP/gRPC exporters, both gzip-compressed, as the OpenTelemetry
//! Collector and most deployments send):
//!
//! - to the collector, over HTTP (`POST /v1/metrics`) and gRPC (port set in
//!   `otlp.grpc_listen`), behind an ingest token: a counter, a gauge and an
//!   explicit-bucket histogram answer PromQL through `/api/v1/query` with
//!   the values the script recorded, names translated as Prometheus does;
//!   a missing token is refused on both doors;
//! - refusals: an exponential histogram (over HTTP and over gRPC), a delta
//!   sum, garbage protobuf, a body that is not gzip, an unknown encoding
//!   and content type get their 4xx (gRPC `INVALID_ARGUMENT`), are counted
//!   in `vigil_samples_rejected_total{reason}`, and store nothing; a request
//!   mixing a gauge with an exponential histogram stores the gauge and
//!   names the histogram with `rejectedDataPoints`;
//! - to the agent over gRPC and HTTP gzip: the series are on its `/metrics`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::{Collector, Proc, binary, free_port, wait_ready};

/// The SDK, installed by tests/run.sh; a missing one fails here loudly.
fn ensure_python_sdk() {
    let probe = "import opentelemetry.sdk.metrics, opentelemetry.exporter.otlp.proto.http.metric_exporter, opentelemetry.exporter.otlp.proto.grpc.metric_exporter";
    let ok = Command::new("python3")
        .args(["-c", probe])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the OpenTelemetry Python SDK is missing: run tests/run.sh, or pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http opentelemetry-exporter-otlp-proto-grpc"
    );
}

/// Records a counter (3, then 4 more), an observable gauge (42.5) and a
/// histogram (0.5, 3, 7, 20 with bounds 1, 5, 10), exporting after each of
/// the two rounds with cumulative temporality; with `exponential`, the
/// histogram is an exponential one. Prints one export result per round.
const SCRIPT: &str = r#"
import sys
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View, ExponentialBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource
from opentelemetry.metrics import Observation

transport, endpoint, job, token, kind = sys.argv[1:6]
headers = {"authorization": "Bearer " + token} if token != "-" else {}
if transport == "grpc":
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True, headers=headers,
                                  compression=grpc.Compression.Gzip, timeout=5)
else:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    exporter = OTLPMetricExporter(endpoint=endpoint, headers=headers,
                                  compression=Compression.Gzip, timeout=5)
views = [View(instrument_name="app.latency", aggregation=ExponentialBucketHistogramAggregation())] if kind == "exponential" else []
reader = InMemoryMetricReader()
provider = MeterProvider(
    resource=Resource.create({"service.name": job, "service.instance.id": "pod-1"}),
    metric_readers=[reader], views=views,
)
meter = provider.get_meter("vigil-otlp-test")
requests = meter.create_counter("app.requests", unit="{request}", description="Requests served")
meter.create_observable_gauge("app.queue.size", callbacks=[lambda options: [Observation(42.5, {"queue": "main"})]], unit="By")
latency = meter.create_histogram("app.latency", unit="s", description="Latency",
                                 explicit_bucket_boundaries_advisory=[1, 5, 10])
requests.add(3, {"route": "/a"})
for v in [0.5, 3]:
    latency.record(v, {"route": "/a"})
print(exporter.export(reader.get_metrics_data()).name, flush=True)
requests.add(4, {"route": "/a"})
for v in [7, 20]:
    latency.record(v, {"route": "/a"})
print(exporter.export(reader.get_metrics_data()).name, flush=True)
exporter.shutdown()
"#;

/// Runs the script; answers the export results (`SUCCESS`/`FAILURE`).
fn python_export(transport: &str, endpoint: &str, job: &str, token: &str, kind: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("export.py");
    std::fs::write(&script, SCRIPT).expect("script");
    let out = Command::new("python3")
        .arg(&script)
        .args([transport, endpoint, job, token, kind])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python exporter crashed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn query(c: &Collector, q: &str) -> Vec<Value> {
    let r = reqwest::blocking::Client::new()
        .get(c.url("/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .expect("query")
        .json::<Value>()
        .expect("json");
    assert_eq!(r["status"], "success", "{q}: {r}");
    r["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The single value of an instant query.
fn value(c: &Collector, q: &str) -> Option<f64> {
    let res = query(c, q);
    assert!(res.len() <= 1, "{q}: {res:?}");
    res.first()
        .and_then(|s| s["value"][1].as_str())
        .and_then(|v| v.parse().ok())
}

fn rejected(c: &Collector, reason: &str) -> f64 {
    let text = reqwest::blocking::get(c.url("/metrics"))
        .and_then(|r| r.text())
        .expect("metrics");
    let prefix = format!("vigil_samples_rejected_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn start_collector(dir: &Path, grpc_port: u16, token: Option<&str>) -> Collector {
    let mut cfg = format!("otlp:\n  grpc_listen: 127.0.0.1:{grpc_port}\n");
    if let Some(t) = token {
        let file = dir.join("sdk.token");
        std::fs::write(&file, t).expect("token file");
        cfg.push_str(&format!(
            "auth:\n  ingest_token_files: [{}]\n",
            file.display()
        ));
    }
    let path = dir.join("vigil.yml");
    std::fs::write(&path, cfg).expect("config");
    let data = dir.join("data");
    Collector::start(&data, &["--config", path.to_str().expect("utf-8 path")])
        .expect("collector starts")
}

fn assert_translated(c: &Collector, job: &str) {
    let sel = format!("job=\"{job}\",instance=\"pod-1\"");
    assert_eq!(
        value(c, &format!("app_requests_total{{{sel},route=\"/a\"}}")),
        Some(7.0),
        "counter of {job}"
    );
    assert_eq!(
        value(c, &format!("app_queue_size_bytes{{{sel},queue=\"main\"}}")),
        Some(42.5),
        "gauge of {job}"
    );
    for (le, n) in [("1", 1.0), ("5", 2.0), ("10", 3.0), ("+Inf", 4.0)] {
        assert_eq!(
            value(
                c,
                &format!("app_latency_seconds_bucket{{{sel},route=\"/a\",le=\"{le}\"}}")
            ),
            Some(n),
            "bucket le={le} of {job}"
        );
    }
    assert_eq!(
        value(c, &format!("app_latency_seconds_sum{{{sel}}}")),
        Some(30.5)
    );
    assert_eq!(
        value(c, &format!("app_latency_seconds_count{{{sel}}}")),
        Some(4.0)
    );
    // The median of 0.5, 3, 7, 20 by the buckets: the 2nd observation is the
    // upper end of (1, 5].
    assert_eq!(
        value(
            c,
            &format!("histogram_quantile(0.5, app_latency_seconds_bucket{{{sel}}})")
        ),
        Some(5.0)
    );
    // The rest of the resource is target_info, as Prometheus writes it.
    assert_eq!(
        value(
            c,
            &format!("target_info{{{sel},telemetry_sdk_language=\"python\"}}")
        ),
        Some(1.0)
    );
    // The metadata carries the OTLP type, help and unit.
    let meta = c
        .get_json("/api/v1/metadata?metric=app_latency_seconds")
        .expect("metadata");
    assert_eq!(meta["data"]["app_latency_seconds"][0]["type"], "histogram");
    assert_eq!(meta["data"]["app_latency_seconds"][0]["unit"], "seconds");
}

#[test]
fn python_sdk_exports_to_the_collector_over_http_gzip_and_grpc() {
    ensure_python_sdk();
    let dir = tempfile::tempdir().expect("tempdir");
    let grpc = free_port();
    let c = start_collector(dir.path(), grpc, Some("s3cret"));
    let http = c.url("/v1/metrics");
    let grpc_endpoint = format!("127.0.0.1:{grpc}");

    assert_eq!(
        python_export("http", &http, "http-app", "s3cret", "classic"),
        "SUCCESS\nSUCCESS"
    );
    assert_eq!(
        python_export("grpc", &grpc_endpoint, "grpc-app", "s3cret", "classic"),
        "SUCCESS\nSUCCESS"
    );
    assert_translated(&c, "http-app");
    assert_translated(&c, "grpc-app");

    // The ingest token guards both doors.
    for (transport, endpoint, token) in [
        ("http", &http, "-"),
        ("http", &http, "wrong"),
        ("grpc", &grpc_endpoint, "-"),
        ("grpc", &grpc_endpoint, "wrong"),
    ] {
        assert_eq!(
            python_export(transport, endpoint, "intruder", token, "classic"),
            "FAILURE\nFAILURE",
            "{transport} with token {token}"
        );
    }
    assert!(query(&c, "{job=\"intruder\"}").is_empty());
}

fn post(c: &Collector, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut r = reqwest::blocking::Client::new()
        .post(c.url("/v1/metrics"))
        .header("content-type", content_type);
    if let Some(e) = encoding {
        r = r.header("content-encoding", e);
    }
    let r = r.body(body).send().expect("POST");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn now_nanos() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
        .to_string()
}

#[test]
fn refused_requests_get_their_status_and_store_nothing() {
    ensure_python_sdk();
    let dir = tempfile::tempdir().expect("tempdir");
    let grpc = free_port();
    let c = start_collector(dir.path(), grpc, None);
    let t = now_nanos();
    let resource = r#"{"attributes":[{"key":"service.name","value":{"stringValue":"refused"}}]}"#;
    let exp = format!(
        r#"{{"name":"app.latency","unit":"s","exponentialHistogram":{{"aggregationTemporality":2,"dataPoints":[
          {{"timeUnixNano":"{t}","count":"2","sum":1.5,"scale":3,"zeroCount":"0","positive":{{"offset":0,"bucketCounts":["1","1"]}}}}]}}}}"#
    );
    let body = |metrics: &str| {
        format!(r#"{{"resourceMetrics":[{{"resource":{resource},"scopeMetrics":[{{"metrics":[{metrics}]}}]}}]}}"#)
            .into_bytes()
    };

    // An exponential histogram alone: 400 naming it, nothing stored.
    let (status, text) = post(&c, "application/json", None, body(&exp));
    assert_eq!(status, 400, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("a google.rpc.Status as JSON");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("app.latency") && message.contains("exponential histogram"),
        "{answer}"
    );
    assert_eq!(answer["details"][0]["rejectedDataPoints"], "1", "{answer}");
    assert_eq!(rejected(&c, "exponential_histogram"), 1.0);

    // A delta sum: refused as Prometheus refuses it.
    let delta = format!(
        r#"{{"name":"app.requests","sum":{{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[{{"asInt":"3","timeUnixNano":"{t}"}}]}}}}"#
    );
    let (status, text) = post(&c, "application/json", None, body(&delta));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("delta temporality"), "{text}");
    assert_eq!(rejected(&c, "delta_temporality"), 1.0);

    // Bodies that are not what they claim to be.
    let (status, text) = post(&c, "application/x-protobuf", None, vec![0xff; 16]);
    assert_eq!(status, 400, "garbage protobuf: {text}");
    let (status, text) = post(
        &c,
        "application/json",
        Some("gzip"),
        b"not gzip at all".to_vec(),
    );
    assert_eq!(status, 400, "bad gzip: {text}");
    assert!(text.contains("gzip"), "{text}");
    let (status, _) = post(&c, "application/json", Some("br"), body(&delta));
    assert_eq!(status, 415, "unknown encoding");
    let (status, _) = post(&c, "text/plain", None, body(&delta));
    assert_eq!(status, 415, "unknown content type");
    assert!(
        query(&c, "{job=\"refused\"}").is_empty(),
        "a refused request stored something"
    );

    // A gauge beside the exponential histogram: the gauge is stored, the
    // histogram named and counted.
    let gauge = format!(
        r#"{{"name":"queue.size","gauge":{{"dataPoints":[{{"asInt":"7","timeUnixNano":"{t}"}}]}}}}"#
    );
    let (status, text) = post(
        &c,
        "application/json",
        None,
        body(&format!("{gauge},{exp}")),
    );
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("1 data points accepted, 1 refused") && text.contains("app.latency"),
        "{text}"
    );
    assert_eq!(value(&c, "queue_size{job=\"refused\"}"), Some(7.0));
    assert_eq!(rejected(&c, "exponential_histogram"), 2.0);

    // Over gRPC: INVALID_ARGUMENT, which the SDK does not retry.
    assert_eq!(
        python_export(
            "grpc",
            &format!("127.0.0.1:{grpc}"),
            "grpc-exp",
            "-",
            "exponential"
        ),
        "FAILURE\nFAILURE"
    );
    assert_eq!(rejected(&c, "exponential_histogram"), 4.0);
    // The points of the same requests that could be stored were.
    assert_eq!(value(&c, "app_requests_total{job=\"grpc-exp\"}"), Some(7.0));
    assert!(query(&c, "{__name__=~\"app_latency.*\",job=\"grpc-exp\"}").is_empty());
}

fn agent_metrics(port: u16) -> String {
    reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
        .and_then(|r| r.text())
        .expect("agent /metrics")
}

/// The value of the exposition line of `name` carrying every `labels` pair.
fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn python_sdk_exports_to_the_agent_over_grpc_and_http_gzip() {
    ensure_python_sdk();
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, grpc) = (free_port(), free_port());
    let cfg = dir.path().join("agent.yml");
    // Nothing to ship to: the agent's own /metrics shows what it took.
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\ninterval: 1s\notlp:\n  grpc_listen: 127.0.0.1:{grpc}\n\
             remote_write:\n  url: http://127.0.0.1:{}/api/v1/write\n",
            dir.path().join("agent-data").display(),
            free_port()
        ),
    )
    .expect("agent config");
    let _agent = Proc::spawn(
        "vigil-agent",
        Command::new(binary("vigil-agent").expect("binary"))
            .arg("--config")
            .arg(&cfg)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ),
    )
    .expect("agent starts");
    wait_ready(
        &format!("http://127.0.0.1:{port}/-/healthy"),
        Duration::from_secs(30),
    )
    .expect("agent ready");
    assert_eq!(
        python_export(
            "grpc",
            &format!("127.0.0.1:{grpc}"),
            "grpc-app",
            "-",
            "classic"
        ),
        "SUCCESS\nSUCCESS"
    );
    assert_eq!(
        python_export(
            "http",
            &format!("http://127.0.0.1:{port}/v1/metrics"),
            "http-app",
            "-",
            "classic"
        ),
        "SUCCESS\nSUCCESS"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = agent_metrics(port);
        let found = ["grpc-app", "http-app"].iter().all(|job| {
            let sel = [("instance", "pod-1"), ("job", job), ("route", "/a")];
            let bucket = [("job", *job), ("le", "5")];
            metric_value(&text, "app_requests_total", &sel) == Some(7.0)
                && metric_value(&text, "app_latency_seconds_bucket", &bucket) == Some(2.0)
        });
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "series never appeared:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The gRPC port: a configured address that is taken stops the start with
/// the address named; the default 4317 gives way (the collector serves
/// HTTP) when something else holds it.
#[test]
fn a_taken_grpc_port_fails_when_configured_and_gives_way_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Port 0: the kernel picks a port nobody holds, where a port that was
    // free a moment ago can be taken by another test process first.
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let addr = taken.local_addr().expect("addr");
    let cfg = dir.path().join("vigil.yml");
    std::fs::write(&cfg, format!("otlp:\n  grpc_listen: {addr}\n")).expect("config");
    let out = Command::new(binary("vigil").expect("vigil"))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("vigil runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started with a taken gRPC port: {stderr}"
    );
    assert!(stderr.contains(&addr.to_string()), "{stderr}");

    // Holding 4317 (unless another process already does): the default
    // gives way and HTTP OTLP still works.
    let _hold = std::net::TcpListener::bind("127.0.0.1:4317");
    let c = Collector::start(&dir.path().join("data2"), &[]).expect("collector starts");
    let (status, text) = post(
        &c,
        "application/json",
        None,
        br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"up.ish","gauge":{"dataPoints":[{"asInt":"1"}]}}]}]}]}"#
            .to_vec(),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(value(&c, "up_ish"), Some(1.0));
}
