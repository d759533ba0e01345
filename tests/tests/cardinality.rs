//! Cardinality budgets through the real binary: series over a per-metric,
//! per-agent or total budget are refused with 400 and a message naming the
//! budget and the metric, the in-budget part of the request is stored,
//! existing series keep taking samples, the refusals are counted on
//! `/metrics`, and `/api/v1/status/tsdb` answers in Prometheus's shape.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use vigil_e2e::{Proc, free_port, now_ms, spawn_vigil_serve, wait_ready};
use vigil_wire::remote_write as rw;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write file");
}

/// A request with one sample at `t` for each `(metric, id)`.
fn request(series: &[(&str, usize)], t: i64) -> rw::WriteRequest {
    rw::WriteRequest {
        timeseries: series
            .iter()
            .map(|(name, id)| rw::TimeSeries {
                labels: vec![
                    rw::Label {
                        name: "__name__".into(),
                        value: name.to_string(),
                    },
                    rw::Label {
                        name: "id".into(),
                        value: id.to_string(),
                    },
                ],
                samples: vec![rw::Sample {
                    value: 1.0,
                    timestamp: t,
                }],
                exemplars: vec![],
            })
            .collect(),
        metadata: vec![],
    }
}

struct Vigil {
    base: String,
    client: reqwest::blocking::Client,
    _proc: Proc,
}

impl Vigil {
    fn push(&self, token: &str, req: &rw::WriteRequest) -> (u16, String) {
        let r = self
            .client
            .post(format!("{}/api/v1/write", self.base))
            .bearer_auth(token)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(rw::encode_write_request(req))
            .send()
            .expect("send");
        (r.status().as_u16(), r.text().unwrap_or_default())
    }

    fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .expect("send")
            .json()
            .expect("json")
    }

    fn series_count(&self, metric: &str) -> usize {
        let v = self.get(&format!("/api/v1/series?match[]={metric}"));
        v["data"].as_array().map_or(0, Vec::len)
    }

    fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .expect("send")
            .text()
            .expect("text")
    }
}

fn start(d: &Path) -> Vigil {
    write(&d.join("agent-a.token"), "token-a\n");
    write(&d.join("agent-b.token"), "token-b\n");
    let cfg = d.join("vigil.yml");
    write(
        &cfg,
        &format!(
            "limits:\n  max_series_per_metric: 3\n  max_series_per_metric_overrides: {{roomy: 10}}\n  \
             max_series_per_agent: 5\n  max_series_total: 9\n\
             auth:\n  ingest_token_files: [{}, {}]\n",
            d.join("agent-a.token").display(),
            d.join("agent-b.token").display(),
        ),
    );
    let port = free_port();
    let proc = spawn_vigil_serve(&cfg, port, &d.join("data")).expect("starts");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/-/ready"), Duration::from_secs(60)).expect("ready");
    Vigil {
        base,
        client: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        _proc: proc,
    }
}

#[test]
fn budgets_refuse_new_series_and_keep_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = start(dir.path());
    let t = now_ms() - 60_000;

    // Per metric: 3 of 5 `explode` series and the lone `calm` are stored.
    let (status, body) = v.push(
        "token-a",
        &request(
            &[
                ("explode", 0),
                ("explode", 1),
                ("explode", 2),
                ("explode", 3),
                ("explode", 4),
                ("calm", 0),
            ],
            t,
        ),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        "4 samples stored, 2 rejected (series_limit_per_metric=2)\n\
         per-metric series limit of 3 exceeded: 2 new series of \"explode\" refused\n"
    );
    assert_eq!(v.series_count("explode"), 3);
    assert_eq!(v.series_count("calm"), 1);

    // Existing series always take samples, at the budget.
    let (status, body) = v.push(
        "token-a",
        &request(&[("explode", 0), ("explode", 1), ("explode", 2)], t + 1000),
    );
    assert_eq!(status, 204, "{body}");
    let q = v.get(&format!(
        "/api/v1/query?query=count_over_time(explode{{id=\"0\"}}[5m])&time={}",
        (t + 1000) as f64 / 1000.0
    ));
    assert_eq!(q["data"]["result"][0]["value"][1], json!("2"), "{q}");

    // Per agent: agent-a owns 4 series, so one more `roomy` series fits.
    let (status, body) = v.push(
        "token-a",
        &request(&[("roomy", 0), ("roomy", 1), ("roomy", 2)], t),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(
            "per-agent series limit of 5 exceeded for agent \"agent-a\": 2 new series of \"roomy\" refused"
        ),
        "{body}"
    );
    // agent-b has its own budget; the total (9) stops it after 4 more.
    let (status, body) = v.push(
        "token-b",
        &request(
            &[
                ("roomy", 3),
                ("roomy", 4),
                ("roomy", 5),
                ("roomy", 6),
                ("roomy", 7),
            ],
            t,
        ),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.starts_with("4 samples stored, 1 rejected (series_limit_total=1)\n"),
        "{body}"
    );
    assert!(
        body.contains("total series limit of 9 exceeded: 1 new series of \"roomy\" refused"),
        "{body}"
    );
    assert_eq!(v.series_count("roomy"), 5);

    let metrics = v.metrics();
    for line in [
        "vigil_cardinality_rejected_series_total{limit=\"per_metric\"} 2",
        "vigil_cardinality_rejected_series_total{limit=\"per_agent\"} 2",
        "vigil_cardinality_rejected_series_total{limit=\"total\"} 1",
        "vigil_samples_rejected_total{reason=\"series_limit_per_metric\"} 2",
        "vigil_cardinality_series_limit{limit=\"total\"} 9",
        "vigil_tsdb_series 9",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }

    // Prometheus's /api/v1/status/tsdb.
    let s = v.get("/api/v1/status/tsdb");
    assert_eq!(s["status"], "success");
    let data = s["data"].as_object().expect("data");
    let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "headStats",
            "labelValueCountByLabelName",
            "memoryInBytesByLabelName",
            "seriesCountByLabelValuePair",
            "seriesCountByMetricName"
        ]
    );
    let head = &data["headStats"];
    assert_eq!(head["numSeries"], json!(9));
    // __name__ × 3 metrics, id 0..=6.
    assert_eq!(head["numLabelPairs"], json!(10));
    assert_eq!(head["minTime"], json!(t));
    assert_eq!(head["maxTime"], json!(t + 1000));
    assert_eq!(
        data["seriesCountByMetricName"],
        json!([
            {"name": "roomy", "value": 5},
            {"name": "explode", "value": 3},
            {"name": "calm", "value": 1}
        ])
    );
    assert_eq!(
        data["labelValueCountByLabelName"],
        json!([{"name": "id", "value": 7}, {"name": "__name__", "value": 3}])
    );
    let s = v.get("/api/v1/status/tsdb?limit=1");
    assert_eq!(
        s["data"]["seriesCountByMetricName"],
        json!([{"name": "roomy", "value": 5}])
    );

    // The limits page names the agents and the metrics refused.
    let l = v.get("/api/v1/status/limits");
    assert_eq!(
        l["data"]["seriesCountByAgent"],
        json!([{"name": "agent-a", "value": 5}, {"name": "agent-b", "value": 4}])
    );
    let top = l["data"]["topRejected"].as_array().expect("topRejected");
    assert!(
        top.iter().any(|o| o["limit"] == "per_metric"
            && o["metric"] == "explode"
            && o["agent"] == "agent-a"
            && o["rejectedSeries"] == 2
            && o["budget"] == 3),
        "{top:?}"
    );
    assert_eq!(l["data"]["limits"]["maxSeriesPerAgent"], json!(5));
}
