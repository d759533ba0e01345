//! End-to-end tests of the collector's spine through the real `vigil`
//! binary: ingestion, the metadata API, bad input, crash safety.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use vigil_e2e::{Collector, now_ms, post_remote_write, series_request};
use vigil_wire::remote_write as rw;

fn series_set(c: &Collector, selector: &str) -> BTreeSet<String> {
    let v = c
        .get_json(&format!("/api/v1/series?match[]={}", urlencode(selector)))
        .expect("series answers");
    assert_eq!(v["status"], "success", "{v}");
    v["data"]
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Every sample of `metric` over the last `window`, as (ms, value).
fn raw_samples(c: &Collector, metric: &str, at_ms: i64) -> Vec<(i64, f64)> {
    let q = urlencode(&format!("{metric}[1d]"));
    let v = c
        .get_json(&format!(
            "/api/v1/query?query={q}&time={}",
            at_ms as f64 / 1000.0
        ))
        .expect("query answers");
    assert_eq!(v["status"], "success", "{v}");
    let mut out = Vec::new();
    for series in v["data"]["result"].as_array().expect("matrix") {
        for pair in series["values"].as_array().expect("values") {
            let t = (pair[0].as_f64().expect("ts") * 1000.0).round() as i64;
            let val: f64 = pair[1]
                .as_str()
                .expect("value string")
                .parse()
                .expect("float");
            out.push((t, val));
        }
    }
    out
}

#[test]
fn remote_write_then_metadata_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(dir.path(), &[]).expect("collector starts");
    let now = now_ms();
    let mut req = series_request(
        &[
            ("__name__", "node_load1"),
            ("instance", "h1:9100"),
            ("job", "node"),
        ],
        &[(now - 2000, 0.5), (now - 1000, 0.75)],
    );
    req.timeseries.push(
        series_request(
            &[
                ("__name__", "node_load1"),
                ("instance", "h2:9100"),
                ("job", "node"),
            ],
            &[(now - 1000, 1.5)],
        )
        .timeseries
        .remove(0),
    );
    req.metadata.push(rw::MetricMetadata {
        r#type: rw::MetricType::Gauge as i32,
        metric_family_name: "node_load1".into(),
        help: "1m load average.".into(),
        unit: String::new(),
    });
    let (status, body) = c.remote_write(&req).expect("write");
    assert_eq!(status, 204, "{body}");

    let series = series_set(&c, "node_load1");
    assert_eq!(series.len(), 2, "{series:?}");
    let labels = c.get_json("/api/v1/labels").expect("labels");
    assert_eq!(
        labels["data"],
        serde_json::json!(["__name__", "instance", "job"])
    );
    let values = c.get_json("/api/v1/label/instance/values").expect("values");
    assert_eq!(values["data"], serde_json::json!(["h1:9100", "h2:9100"]));
    let meta = c
        .get_json("/api/v1/metadata?metric=node_load1")
        .expect("metadata");
    assert_eq!(meta["data"]["node_load1"][0]["type"], "gauge");
    let q = c
        .get_json(&format!(
            "/api/v1/query?query=sum(node_load1)&time={}",
            now as f64 / 1000.0
        ))
        .expect("query");
    assert_eq!(q["data"]["result"][0]["value"][1], "2.25", "{q}");

    // Form POST, as Grafana sends it.
    let client = reqwest::blocking::Client::new();
    let r: Value = client
        .post(c.url("/api/v1/query"))
        .form(&[("query", "1+1")])
        .send()
        .expect("post")
        .json()
        .expect("json");
    assert_eq!(
        r["data"],
        serde_json::json!({"resultType": "scalar", "result": [r["data"]["result"][0], "2"]})
    );

    // Text exposition import.
    let body = format!(
        "# HELP api_requests_total Requests.\n# TYPE api_requests_total counter\napi_requests_total{{code=\"200\"}} 10 {}\n",
        now - 500
    );
    let r = client
        .post(c.url("/api/v1/import/prometheus"))
        .body(body)
        .send()
        .expect("import");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(series_set(&c, "api_requests_total").len(), 1);

    let metrics = reqwest::blocking::get(c.url("/metrics"))
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics.contains("vigil_samples_ingested_total 4"),
        "{metrics}"
    );
    assert!(metrics.contains("vigil_tsdb_series 3"), "{metrics}");
    assert!(
        metrics.contains("vigil_wal_fsync_duration_seconds_count"),
        "{metrics}"
    );
}

#[test]
fn bad_input_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(dir.path(), &[]).expect("collector starts");
    let now = now_ms();
    let good = series_request(
        &[("__name__", "keep_me"), ("job", "x")],
        &[(now - 1000, 1.0)],
    );
    assert_eq!(c.remote_write(&good).expect("write").0, 204);
    let before = series_set(&c, "{__name__=~\".+\"}");

    let url = c.url("/api/v1/write");
    let valid_body =
        rw::encode_write_request(&series_request(&[("__name__", "new_one")], &[(now, 1.0)]));
    let bad_bodies: Vec<(&str, Vec<u8>)> = vec![
        (
            "truncated snappy",
            valid_body[..valid_body.len() / 2].to_vec(),
        ),
        ("not snappy at all", b"hello world".to_vec()),
        (
            "wrong protobuf",
            snap::raw::Encoder::new()
                .compress_vec(b"\x0a\xff\xff\xff\xff\x0fgarbage")
                .expect("compress"),
        ),
        (
            "invalid label name",
            rw::encode_write_request(&series_request(
                &[("__name__", "new_one"), ("bad-name", "x")],
                &[(now, 1.0)],
            )),
        ),
        (
            "duplicate labels",
            rw::encode_write_request(&series_request(
                &[("__name__", "new_one"), ("a", "1"), ("a", "2")],
                &[(now, 1.0)],
            )),
        ),
        (
            "empty metric name",
            rw::encode_write_request(&series_request(
                &[("__name__", ""), ("a", "1")],
                &[(now, 1.0)],
            )),
        ),
        (
            "far future",
            rw::encode_write_request(&series_request(
                &[("__name__", "new_one")],
                &[(now + 86_400_000, 1.0)],
            )),
        ),
    ];
    for (what, body) in bad_bodies {
        let (status, msg) = post_remote_write(&url, body).expect("post");
        assert_eq!(status, 400, "{what}: {msg}");
        assert!(!msg.trim().is_empty(), "{what}: the 400 must say why");
    }
    // A mixed request: one valid series and one with a bad label is refused whole.
    let mut mixed = series_request(&[("__name__", "new_one")], &[(now, 1.0)]);
    mixed.timeseries.extend(
        series_request(&[("__name__", "new_two"), ("0bad", "x")], &[(now, 1.0)]).timeseries,
    );
    assert_eq!(c.remote_write(&mixed).expect("post").0, 400);

    let client = reqwest::blocking::Client::new();
    let r = client
        .post(c.url("/api/v1/import/prometheus"))
        .body("ok_metric 1\nbroken{a=\"1\" 2\n")
        .send()
        .expect("import");
    assert_eq!(r.status().as_u16(), 400);
    let msg = r.text().expect("text");
    assert!(msg.contains("line 2"), "{msg}");

    // Oversized bodies are refused with 413.
    assert_eq!(
        oversized_import_status(&c),
        "HTTP/1.1 413",
        "an oversized body is refused"
    );

    assert_eq!(
        series_set(&c, "{__name__=~\".+\"}"),
        before,
        "the store changed after refused writes"
    );
    assert_eq!(raw_samples(&c, "keep_me", now), vec![(now - 1000, 1.0)]);
}

#[test]
fn out_of_order_and_duplicates_are_counted_not_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(dir.path(), &[]).expect("collector starts");
    let now = now_ms();
    let lbl = [("__name__", "ooo_metric")];
    assert_eq!(
        c.remote_write(&series_request(&lbl, &[(now - 1000, 1.0)]))
            .expect("w")
            .0,
        204
    );
    // Same timestamp, same value: an idempotent re-send.
    assert_eq!(
        c.remote_write(&series_request(&lbl, &[(now - 1000, 1.0)]))
            .expect("w")
            .0,
        204
    );
    // Same timestamp, different value; and an older sample.
    let (status, msg) = c
        .remote_write(&series_request(&lbl, &[(now - 1000, 2.0)]))
        .expect("w");
    assert_eq!(status, 400, "{msg}");
    let (status, msg) = c
        .remote_write(&series_request(&lbl, &[(now - 5000, 3.0)]))
        .expect("w");
    assert_eq!(status, 400, "{msg}");
    assert_eq!(raw_samples(&c, "ooo_metric", now), vec![(now - 1000, 1.0)]);
    let metrics = reqwest::blocking::get(c.url("/metrics"))
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vigil_tsdb_samples_rejected_total{reason=\"out_of_order\"} 1")),
        "{metrics}"
    );
}

/// Acknowledged samples survive `kill -9` at arbitrary points.
#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = vigil_e2e::free_port();
    let base = now_ms() - 3_600_000;
    let mut acked: Vec<(i64, f64)> = Vec::new();
    let mut next = 0i64;
    for round in 0..6u64 {
        let mut c = Collector::start_on(dir.path(), port, &[]).expect("collector starts");
        // Verify everything acknowledged so far is there.
        let got = raw_samples(&c, "crash_metric", now_ms());
        let got: BTreeSet<i64> = got.iter().map(|(t, _)| *t).collect();
        for (t, _) in &acked {
            assert!(
                got.contains(t),
                "round {round}: acknowledged sample at {t} lost"
            );
        }
        // Write from a thread and kill the process after a varying delay.
        let url = c.url("/api/v1/write");
        let start = next;
        let writer = std::thread::spawn(move || {
            let mut ok = Vec::new();
            let mut i = start;
            let deadline = std::time::Instant::now() + Duration::from_millis(400 + round * 150);
            while std::time::Instant::now() < deadline {
                let samples: Vec<(i64, f64)> = (0..50)
                    .map(|k| (base + (i + k) * 10, (i + k) as f64))
                    .collect();
                let body = rw::encode_write_request(&series_request(
                    &[("__name__", "crash_metric"), ("job", "crash")],
                    &samples,
                ));
                match post_remote_write(&url, body) {
                    Ok((204, _)) => ok.extend(samples),
                    _ => break,
                }
                i += 50;
            }
            (ok, i)
        });
        std::thread::sleep(Duration::from_millis(200 + round * 120));
        c.proc.kill9();
        let (ok, last) = writer.join().expect("writer");
        acked.extend(ok);
        next = last + 50;
    }
    let c = Collector::start_on(dir.path(), port, &[]).expect("collector restarts");
    let got: BTreeSet<i64> = raw_samples(&c, "crash_metric", now_ms())
        .iter()
        .map(|(t, _)| *t)
        .collect();
    assert!(!acked.is_empty());
    for (t, _) in &acked {
        assert!(got.contains(t), "acknowledged sample at {t} lost");
    }
}

#[test]
fn graceful_shutdown_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = now_ms();
    let mut c = Collector::start(dir.path(), &[]).expect("collector starts");
    let samples: Vec<(i64, f64)> = (0..500)
        .map(|i| (now - 600_000 + i * 1000, i as f64))
        .collect();
    assert_eq!(
        c.remote_write(&series_request(
            &[("__name__", "shutdown_metric")],
            &samples
        ))
        .expect("w")
        .0,
        204
    );
    let status = c.proc.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{status:?}");
    let c = Collector::start(dir.path(), &[]).expect("restarts");
    assert_eq!(raw_samples(&c, "shutdown_metric", now), samples);
}

/// POSTs a 40 MiB body (over the 32 MiB limit) and returns the status line's
/// start. The server answers 413 and closes once the limit is passed, while
/// the rest of the body is still being sent: an HTTP client that stops at
/// the write error (reqwest does) would report a broken pipe instead of the
/// answer, depending on timing. So a raw socket writes from one thread and
/// reads the answer from another.
fn oversized_import_status(c: &Collector) -> String {
    use std::io::{Read, Write};
    let huge_len = 40usize << 20;
    let mut reader = std::net::TcpStream::connect(c.addr).expect("connect");
    reader
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let mut writer = reader.try_clone().expect("clone the socket");
    let head = format!(
        "POST /api/v1/import/prometheus HTTP/1.1\r\nHost: {}\r\nContent-Length: {huge_len}\r\nConnection: close\r\n\r\n",
        c.addr
    );
    let sender = std::thread::spawn(move || {
        // Errors are expected once the server has answered and closed.
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&vec![b'a'; huge_len]);
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < 12 {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer to the oversized body: {e}"),
        }
    }
    let _ = reader.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    String::from_utf8_lossy(&got[..got.len().min(12)]).into_owned()
}
