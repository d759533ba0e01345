//! Nothing acknowledged and then dropped, through the real binaries:
//! a remote_write request mixing float samples with a native histogram
//! (encoded as Prometheus 2.42's `prompb` does) and an exemplar stores the
//! floats and answers 400 naming what it refused, counted on `/metrics`;
//! an imported OpenMetrics exemplar likewise; `vigil anomaly score` on a
//! series with a timestamp going back, a duplicate row and a NaN prints a
//! row for every good point and names each skipped line.

use std::process::Command;

use vigil_e2e::{Collector, binary, now_ms, post_remote_write};
use vigil_wire::remote_write as rw;

fn label(name: &str, value: &str) -> rw::Label {
    rw::Label {
        name: name.into(),
        value: value.into(),
    }
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

fn count(c: &Collector, selector: &str) -> usize {
    let v = c
        .get_json(&format!(
            "/api/v1/query?query=count_over_time({selector}[1h])"
        ))
        .expect("query");
    v["data"]["result"]
        .as_array()
        .and_then(|r| r.first())
        .and_then(|s| s["value"][1].as_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn native_histograms_and_exemplars_are_refused_by_name_and_floats_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(&dir.path().join("data"), &[]).expect("collector starts");
    let t = now_ms();
    let req = rw::ReceivedWriteRequest {
        timeseries: vec![
            rw::ReceivedTimeSeries {
                labels: vec![label("__name__", "requests_total"), label("job", "api")],
                samples: vec![
                    rw::Sample {
                        value: 1.0,
                        timestamp: t - 1000,
                    },
                    rw::Sample {
                        value: 2.0,
                        timestamp: t,
                    },
                ],
                exemplars: vec![rw::Exemplar {
                    labels: vec![label("trace_id", "5b8efff798038103")],
                    value: 2.0,
                    timestamp: t,
                }],
                histograms: vec![],
            },
            rw::ReceivedTimeSeries {
                labels: vec![
                    label("__name__", "request_duration_seconds"),
                    label("job", "api"),
                ],
                samples: vec![],
                exemplars: vec![],
                histograms: vec![rw::Histogram {
                    count: Some(rw::HistogramCount::CountInt(3)),
                    sum: 0.75,
                    schema: 3,
                    zero_threshold: 2.938_735_877_055_719e-39,
                    zero_count: Some(rw::HistogramZeroCount::ZeroCountInt(0)),
                    positive_spans: vec![rw::BucketSpan {
                        offset: -10,
                        length: 2,
                    }],
                    positive_deltas: vec![1, 1],
                    timestamp: t,
                    ..Default::default()
                }],
            },
        ],
        metadata: vec![],
    };
    let before = rejected(&c, "native_histogram");
    let (status, body) =
        post_remote_write(&c.url("/api/v1/write"), rw::encode_message(&req)).expect("write");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("2 samples stored"), "{body}");
    assert!(
        body.contains("refused 1 native histogram samples")
            && body.contains("request_duration_seconds"),
        "{body}"
    );
    assert!(
        body.contains("refused 1 exemplars") && body.contains("requests_total"),
        "{body}"
    );
    assert_eq!(count(&c, "requests_total{job=\"api\"}"), 2);
    assert_eq!(rejected(&c, "native_histogram"), before + 1.0);
    assert_eq!(rejected(&c, "exemplar"), 1.0);

    // An OpenMetrics exemplar in an import: the sample is stored, the
    // exemplar refused by name.
    let text = format!(
        "# TYPE jobs_total counter\njobs_total{{queue=\"a\"}} 5 {t} # {{trace_id=\"abc\"}} 1 {}\n",
        t / 1000
    );
    let r = reqwest::blocking::Client::new()
        .post(c.url("/api/v1/import/prometheus"))
        .body(text)
        .send()
        .expect("import");
    let status = r.status().as_u16();
    let body = r.text().unwrap_or_default();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("refused 1 exemplars") && body.contains("jobs_total"),
        "{body}"
    );
    assert_eq!(count(&c, "jobs_total"), 1);
    assert_eq!(rejected(&c, "exemplar"), 2.0);
}

#[test]
fn anomaly_score_skips_bad_lines_and_names_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("series.csv");
    let mut csv = String::from("timestamp,value\n");
    let start = 1_396_310_400i64;
    // 150 good points with three bad rows among them.
    let mut good = 0;
    for i in 0..150i64 {
        csv.push_str(&format!("{},{}\n", start + 300 * i, 10 + i % 7));
        good += 1;
        match i {
            40 => csv.push_str(&format!("{},11\n", start + 300 * i)), // duplicate row
            80 => csv.push_str(&format!("{},12\n", start + 300 * (i - 5))), // clock step back
            120 => csv.push_str(&format!("{},NaN\n", start + 300 * i + 150)),
            _ => {}
        }
    }
    std::fs::write(&input, csv).expect("write csv");
    let out = Command::new(binary("vigil").expect("vigil binary"))
        .args(["anomaly", "score", "--input"])
        .arg(&input)
        .output()
        .expect("run vigil anomaly score");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), good, "a row for every good point\n{stderr}");
    // The header is line 1, point i is on line i + 2 plus the bad rows
    // before it.
    assert!(stderr.contains("line 43: skipped (duplicate)"), "{stderr}");
    assert!(
        stderr.contains("line 84: skipped (out_of_order)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 125: skipped (non_finite)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("150 rows,") && stderr.contains("3 lines skipped"),
        "{stderr}"
    );
    // Scoring went on past every bad line.
    assert!(
        rows.last()
            .is_some_and(|r| r.starts_with(&format!("{},", start + 300 * 149)))
    );
}
