//! The Grafana dashboards in `dashboards/`: valid JSON with unique uids and
//! panel ids, every query valid PromQL once Grafana's variables are
//! substituted, the provisioning files pointing at the collector, and —
//! against a real collector (default rule pack, LLM budgets) fed by a real
//! `vigil-agent` watching this host, PostgreSQL (127.0.0.1:5432), Redis
//! (127.0.0.1:6379), an instrumented API service it scrapes
//! (`tests/fixtures/api_service.py`) and a stream of LLM usage events with
//! tenants, cached and reasoning tokens, agents and tools — every panel
//! query and variable returning data, unless its description marks it
//! `Event-only:` (alerts and anomalies).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil_e2e::{Collector, Proc, free_port, wait_ready, workspace_root};

/// The marker `dashboards/generate.py` puts in the description of panels and
/// variables that only have data after an event (an alert, a trained model).
const EVENT_ONLY: &str = "Event-only:";

/// What the test substitutes for Grafana's built-in interval variables: the
/// values Grafana would pick for a 5-minute range at a 15 s scrape interval.
const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__range", "5m"),
    ("__range_s", "300"),
    ("__interval_ms", "15000"),
];

struct Dashboard {
    file: String,
    json: Value,
}

fn dashboards() -> Vec<Dashboard> {
    let dir = workspace_root().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dashboards/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "host, postgres, redis, llm and alerts dashboards exist"
    );
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", p.display()));
            Dashboard {
                file: p
                    .file_name()
                    .expect("file name")
                    .to_string_lossy()
                    .into_owned(),
                json,
            }
        })
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels array") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested.iter());
        }
    }
    out
}

/// One PromQL expression of a dashboard, with where it came from.
struct Query {
    origin: String,
    expr: String,
    instant: bool,
    event_only: bool,
}

fn queries(d: &Dashboard) -> Vec<Query> {
    let mut out = Vec::new();
    for p in panels(&d.json) {
        if p["type"] == "row" {
            continue;
        }
        let event_only = p["description"]
            .as_str()
            .is_some_and(|s| s.contains(EVENT_ONLY));
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                origin: format!(
                    "{} panel {} {:?} {}",
                    d.file,
                    p["id"],
                    p["title"].as_str().unwrap_or(""),
                    t["refId"].as_str().unwrap_or("")
                ),
                expr: t["expr"].as_str().unwrap_or_default().to_string(),
                instant: t["instant"].as_bool().unwrap_or(false),
                event_only,
            });
        }
    }
    out
}

/// A `label_values(SELECTOR, LABEL)` variable.
struct LabelValues {
    origin: String,
    selector: String,
    label: String,
    event_only: bool,
}

fn label_values_vars(d: &Dashboard) -> Vec<LabelValues> {
    let mut out = Vec::new();
    for v in d.json["templating"]["list"]
        .as_array()
        .expect("templating.list")
    {
        if v["type"] != "query" {
            continue;
        }
        let q = v["definition"]
            .as_str()
            .expect("query variable has a definition");
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| {
                panic!(
                    "{}: variable {}: only label_values(...) is used: {q}",
                    d.file, v["name"]
                )
            });
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        out.push(LabelValues {
            origin: format!("{} variable ${}", d.file, v["name"].as_str().unwrap_or("")),
            selector: selector.trim().to_string(),
            label: label.trim().to_string(),
            event_only: v["description"]
                .as_str()
                .is_some_and(|s| s.contains(EVENT_ONLY)),
        });
    }
    out
}

/// The dashboard's own variables (all multi-value with All = `.*`).
fn variable_names(d: &Dashboard) -> BTreeSet<String> {
    d.json["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect()
}

/// Replaces `$name`, `${name}` and `[[name]]` with the variable's value.
/// Fails on a variable that is neither the dashboard's nor a builtin, so a
/// typo in a query cannot hide behind the substitution.
fn substitute(expr: &str, vars: &BTreeSet<String>) -> Result<String, String> {
    let value_of = |name: &str| -> Result<String, String> {
        if let Some((_, v)) = BUILTINS.iter().find(|(n, _)| *n == name) {
            Ok((*v).to_string())
        } else if vars.contains(name) && name != "datasource" {
            Ok(".*".to_string())
        } else {
            Err(format!("unknown variable ${name}"))
        }
    };
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(i) = rest.find(['$', '[']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or("unclosed ${")?;
            // ${var:format} — the format does not matter for a regex of .*
            let name = after[..end].split(':').next().unwrap_or("");
            out.push_str(&value_of(name)?);
            rest = &after[end + 1..];
        } else if let Some(after) = tail.strip_prefix("[[") {
            let end = after.find("]]").ok_or("unclosed [[")?;
            out.push_str(&value_of(&after[..end])?);
            rest = &after[end + 2..];
        } else if let Some(after) = tail.strip_prefix('$') {
            let len = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(&value_of(&after[..len])?);
            }
            rest = &after[len..];
        } else {
            out.push('[');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[test]
fn dashboards_are_valid_with_unique_uids_and_panel_ids() {
    let all = dashboards();
    let mut uids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for d in &all {
        let j = &d.json;
        let uid = j["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: uid", d.file));
        assert!(
            !uid.is_empty() && uid.len() <= 40,
            "{}: uid {uid:?} (Grafana allows 40 characters)",
            d.file
        );
        assert!(
            uids.insert(uid.to_string()),
            "{}: duplicate uid {uid}",
            d.file
        );
        assert!(
            titles.insert(j["title"].as_str().expect("title").to_string()),
            "{}: duplicate title",
            d.file
        );
        let schema = j["schemaVersion"].as_i64().expect("schemaVersion");
        assert!(
            (36..=41).contains(&schema),
            "{}: schemaVersion {schema}",
            d.file
        );

        let vars = j["templating"]["list"].as_array().expect("templating.list");
        let ds = vars
            .iter()
            .find(|v| v["name"] == "datasource")
            .expect("datasource variable");
        assert_eq!(ds["type"], "datasource", "{}", d.file);
        assert_eq!(ds["query"], "prometheus", "{}", d.file);
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(
                v["datasource"]["uid"], "${datasource}",
                "{}: variable {}",
                d.file, v["name"]
            );
        }

        let mut ids = BTreeSet::new();
        for p in panels(j) {
            let id = p["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("{}: panel without id: {}", d.file, p["title"]));
            assert!(ids.insert(id), "{}: duplicate panel id {id}", d.file);
            let pos = &p["gridPos"];
            for k in ["h", "w", "x", "y"] {
                assert!(pos[k].is_u64(), "{}: panel {id} gridPos.{k}", d.file);
            }
            assert!(
                pos["x"].as_u64().unwrap_or(0) + pos["w"].as_u64().unwrap_or(0) <= 24,
                "{}: panel {id} wider than the grid",
                d.file
            );
            if p["type"] == "row" {
                continue;
            }
            assert!(
                !p["title"].as_str().unwrap_or("").is_empty(),
                "{}: panel {id} has a title",
                d.file
            );
            assert!(
                !p["description"].as_str().unwrap_or("").is_empty(),
                "{}: panel {id} has a description",
                d.file
            );
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{}: panel {id} uses the datasource variable",
                d.file
            );
            let targets = p["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("{}: panel {id} has targets", d.file));
            assert!(!targets.is_empty(), "{}: panel {id} has no query", d.file);
            let mut refs = BTreeSet::new();
            for t in targets {
                assert!(
                    refs.insert(t["refId"].as_str().expect("refId").to_string()),
                    "{}: panel {id}: duplicate refId",
                    d.file
                );
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{}: panel {id} target",
                    d.file
                );
                assert!(
                    !t["expr"].as_str().unwrap_or("").trim().is_empty(),
                    "{}: panel {id}: empty expr",
                    d.file
                );
            }
        }
        println!("{}: uid {uid}, {} panels", d.file, ids.len());
    }
    for uid in [
        "vigil-host",
        "vigil-postgres",
        "vigil-redis",
        "vigil-llm",
        "vigil-llm-agents",
        "vigil-api",
        "vigil-alerts",
    ] {
        assert!(uids.contains(uid), "dashboard {uid} exists");
    }
}

#[test]
fn every_query_parses_as_promql() {
    let mut n = 0;
    let mut failures = Vec::new();
    for d in dashboards() {
        let vars = variable_names(&d);
        let mut exprs: Vec<(String, String)> = queries(&d)
            .into_iter()
            .map(|q| (q.origin, q.expr))
            .collect();
        exprs.extend(
            label_values_vars(&d)
                .into_iter()
                .map(|v| (v.origin, v.selector)),
        );
        for a in d.json["annotations"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(e) = a["expr"].as_str() {
                exprs.push((
                    format!("{} annotation {}", d.file, a["name"]),
                    e.to_string(),
                ));
            }
        }
        for (origin, expr) in exprs {
            n += 1;
            match substitute(&expr, &vars) {
                Ok(concrete) => {
                    if let Err(e) = vigil_promql::parse(&concrete) {
                        failures.push(format!("{origin}: {e}\n    {concrete}"));
                    }
                }
                Err(e) => failures.push(format!("{origin}: {e}\n    {expr}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "queries that do not parse:\n{}",
        failures.join("\n")
    );
    // Without queries nothing above was checked.
    assert!(n >= 20, "only {n} dashboard queries found");
    println!("{n} queries parse");
}

/// The JSON is generated by `dashboards/generate.py`; an edit to one
/// without the other would be lost at the next regeneration.
#[test]
fn dashboards_match_their_generator() {
    let out = match Command::new("python3")
        .arg(workspace_root().join("dashboards/generate.py"))
        .arg("--check")
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("python3 is needed to run dashboards/generate.py --check ({e})"),
    };
    assert!(
        out.status.success(),
        "dashboards/*.json differ from dashboards/generate.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn substitution_handles_grafana_forms() {
    let vars: BTreeSet<String> = ["instance", "job", "datasource"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        substitute(
            r#"rate(x{instance=~"$instance",job=~"${job}"}[$__rate_interval]) + y{a=~"[[job]]"}[5m]"#,
            &vars
        ),
        Ok(r#"rate(x{instance=~".*",job=~".*"}[1m]) + y{a=~".*"}[5m]"#.to_string())
    );
    assert_eq!(
        substitute("x{a=~\"${job:regex}\"}", &vars),
        Ok("x{a=~\".*\"}".to_string())
    );
    assert!(
        substitute("x{a=~\"$instnace\"}", &vars).is_err(),
        "a misspelt variable is caught"
    );
    assert!(
        substitute("x{a=\"$datasource\"}", &vars).is_err(),
        "the datasource variable is not a label value"
    );
}

#[test]
fn provisioning_points_grafana_at_the_collector() {
    let root = workspace_root().join("dashboards/provisioning");
    let ds = std::fs::read_to_string(root.join("datasources/vigil.yml"))
        .expect("datasource provisioning");
    let setting = |key: &str| -> Option<String> {
        ds.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                l.strip_prefix(&format!("{key}:"))
                    .map(|v| v.trim().to_string())
            })
    };
    assert_eq!(setting("apiVersion").as_deref(), Some("1"));
    assert_eq!(setting("type").as_deref(), Some("prometheus"));
    assert_eq!(
        setting("url").as_deref(),
        Some("http://127.0.0.1:9800"),
        "the collector's default listen address"
    );
    assert_eq!(setting("httpMethod").as_deref(), Some("POST"));
    assert_eq!(setting("httpHeaderName1").as_deref(), Some("Authorization"));
    let header = setting("httpHeaderValue1").expect("read token header");
    assert!(
        header.starts_with("Bearer $"),
        "token from the environment, never inline: {header}"
    );
    let uid = setting("uid").expect("datasource uid");
    assert!(!uid.is_empty());

    let provider =
        std::fs::read_to_string(root.join("dashboards/vigil.yml")).expect("dashboard provisioning");
    assert!(provider.contains("type: file"));
    assert!(
        provider.contains("path: /usr/share/vigil/grafana/dashboards"),
        "the provider reads where install.sh puts the dashboards"
    );
}

// ---------------------------------------------------------------- live data

/// Sends one RESP command to Redis and returns the raw reply.
fn redis_cmd(addr: &str, args: &[&str]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes())?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A round of LLM usage events covering every series the LLM and agents
/// dashboards read: successes, an error, a 429, durations, tokens (cached
/// and reasoning too), time to first token, tenants, queue depth, a priced
/// and an unpriced model, agent runs (one failing) and tool calls (one
/// timing out).
fn usage_events(round: u32) -> Value {
    let d = 0.2 + f64::from(round % 5) * 0.3;
    json!([
        {"provider": "openai", "model": "gpt-4o", "operation": "chat", "input_tokens": 1200 + round, "cached_input_tokens": 800, "output_tokens": 300, "duration_seconds": d, "time_to_first_token_seconds": d / 4.0, "status": "ok", "queue_depth": 3 + round % 4, "tenant": "acme", "agent": "planner"},
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 800, "output_tokens": 150, "reasoning_output_tokens": 100, "duration_seconds": d * 2.0, "status": 200, "tenant": "globex"},
        {"provider": "anthropic", "model": "claude-sonnet", "input_tokens": 2000, "cached_input_tokens": 1500, "output_tokens": 500, "duration_seconds": d * 3.0, "time_to_first_token_seconds": 0.4, "status": "ok", "queue_depth": 1, "tenant": "acme"},
        {"provider": "anthropic", "model": "claude-sonnet", "input_tokens": 100, "output_tokens": 0, "duration_seconds": 0.05, "status": 429},
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 50, "output_tokens": 0, "duration_seconds": 30.0, "status": "timeout"},
        {"provider": "local", "model": "llama-unpriced", "input_tokens": 10, "output_tokens": 20, "duration_seconds": 0.4, "status": "ok"},
        {"operation": "invoke_agent", "agent": "planner", "duration_seconds": d * 5.0},
        {"operation": "invoke_agent", "agent": "researcher", "duration_seconds": 2.0, "status": "error"},
        {"operation": "execute_tool", "tool": "web_search", "duration_seconds": d},
        {"operation": "execute_tool", "tool": "sql", "duration_seconds": 5.0, "status": "timeout"}
    ])
}

/// The agent's configuration: a fast interval so 20 s of data holds enough
/// points for rate(), the instance the dashboards' variables select on
/// (job is the default, vigil-agent), prices so llm_cost_usd_total exists,
/// and the API service scraped as job `api`.
fn agent_config(api_port: u16) -> String {
    format!(
        "\
# Written by tests/tests/dashboards.rs.
interval: 1s
instance: dashboards-e2e
llm:
  prices:
    gpt-4o: {{input: 2.5, output: 10, cached_input: 1.25}}
    anthropic/claude-sonnet: {{input: 3, output: 15, cached_input: 0.3}}
scrape:
  - job: api
    targets: [127.0.0.1:{api_port}]
"
    )
}

/// The collector's configuration: rules evaluated every second (so the SLO
/// recording rules have data within the test) and an LLM budget.
const COLLECTOR_CONFIG: &str = "\
# Written by tests/tests/dashboards.rs.
rules:
  evaluation_interval: 1s
llm:
  budgets:
    - name: acme
      labels: { tenant: acme }
      monthly_usd: 50
    - name: everything
      monthly_usd: 500
";

/// Starts `tests/fixtures/api_service.py` (the Prometheus Python client
/// must be installed: tests/run.sh does it).
fn start_api_service(port: u16, pg_dsn: &str) -> Proc {
    let ok = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 with prometheus_client is needed (tests/run.sh installs it: pip install prometheus-client)"
    );
    let mut cmd = Command::new("python3");
    cmd.arg(workspace_root().join("tests/fixtures/api_service.py"))
        .args(["--port", &port.to_string(), "--pg", pg_dsn]);
    Proc::spawn("api_service.py", &mut cmd).expect("API service starts")
}

#[test]
fn every_panel_returns_data_from_a_real_agent() {
    let redis = "127.0.0.1:6379";
    let pg_dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test";
    redis_cmd(redis, &["PING"]).expect("Redis on 127.0.0.1:6379 (tests/run.sh starts it)");
    TcpStream::connect("127.0.0.1:5432")
        .expect("PostgreSQL on 127.0.0.1:5432 (tests/run.sh starts it)");

    let dir = tempfile::tempdir().expect("tempdir");
    // The default rule pack runs as in production, so the alert panels can
    // show what the pack makes of this traffic (they stay event-only: an
    // alert needs its `for` to pass, or at least one evaluation).
    let rule_glob = workspace_root().join("rules/*.rules.yml");
    let collector_config = dir.path().join("vigil.yml");
    std::fs::write(&collector_config, COLLECTOR_CONFIG).expect("collector config");
    let collector = Collector::start(
        &dir.path().join("collector"),
        &[
            "--config",
            &collector_config.to_string_lossy(),
            "--rule-file",
            &rule_glob.to_string_lossy(),
        ],
    )
    .expect("collector starts with the default rule pack");
    let api_port = free_port();
    let _api = start_api_service(api_port, pg_dsn);
    let api_url = format!("http://127.0.0.1:{api_port}");
    wait_ready(&format!("{api_url}/metrics"), Duration::from_secs(30)).expect("API service up");
    let agent_port = free_port();
    let agent_url = format!("http://127.0.0.1:{agent_port}");
    let config = dir.path().join("agent.yml");
    std::fs::write(&config, agent_config(api_port)).expect("agent config");
    let mut cmd = Command::new(vigil_e2e::binary("vigil-agent").expect("vigil-agent binary"));
    cmd.arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{agent_port}")])
        .args(["--remote-write", &collector.url("/api/v1/write")])
        .args(["--postgres", pg_dsn])
        .args(["--redis", &format!("redis://{redis}")])
        .arg("--data-dir")
        .arg(dir.path().join("agent"))
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    let _agent = Proc::spawn("vigil-agent", &mut cmd).expect("agent starts");
    wait_ready(&format!("{agent_url}/-/healthy"), Duration::from_secs(30)).expect("agent healthy");

    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    // A key so INFO lists a keyspace, with expiry so nothing is left behind.
    let key = format!("vigil:e2e:dashboards:{agent_port}");
    redis_cmd(redis, &["SET", &key, "1", "EX", "300"]).expect("redis SET");

    // Sessions opened on the API service.
    for _ in 0..7 {
        let r = http
            .post(format!("{api_url}/api/sessions"))
            .send()
            .expect("open a session");
        assert_eq!(r.status().as_u16(), 201);
    }

    // ~20 s of traffic: usage events, API requests, Redis hits and misses.
    let start = Instant::now();
    let mut round = 0;
    while start.elapsed() < Duration::from_secs(20) {
        let r = http
            .post(format!("{agent_url}/v1/llm/usage"))
            .json(&usage_events(round))
            .send()
            .expect("usage events accepted");
        assert!(
            r.status().is_success(),
            "POST /v1/llm/usage: {}",
            r.status()
        );
        let _ = redis_cmd(redis, &["GET", &key]);
        let _ = redis_cmd(redis, &["GET", "vigil:e2e:dashboards:missing"]);
        for (path, want) in [
            ("/api/chat", 200),
            ("/api/chat", 200),
            ("/api/chat", 200),
            ("/api/fail", 500),
            ("/api/timeout", 504),
        ] {
            let r = http
                .get(format!("{api_url}{path}"))
                .send()
                .expect("API request");
            assert_eq!(r.status().as_u16(), want, "{path}");
        }
        round += 1;
        std::thread::sleep(Duration::from_secs(2));
    }
    // Let the last collection be shipped and stored.
    let deadline = Instant::now() + Duration::from_secs(15);
    let end = loop {
        let now = vigil_e2e::now_ms() as f64 / 1000.0;
        let r: Value = http
            .post(collector.url("/api/v1/query"))
            .form(&[("query", "count(llm_requests_total) and count(node_load1) and count(pg_up) and count(redis_up) \
                and count(http_requests_total) and count(slo:period_error_budget_remaining:ratio) \
                and count(slo:current_burn_rate:ratio) and count(llm_spend_month_to_date_usd)"), ("time", &now.to_string())])
            .send()
            .and_then(|r| r.json())
            .expect("query answers");
        if r["data"]["result"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "agent data never reached the collector: {r}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let start_s = end - 300.0;

    let mut empty_event_only = Vec::new();
    let mut failures = Vec::new();
    let mut with_data = 0;
    let mut event_only_with_data = Vec::new();
    for d in dashboards() {
        let vars = variable_names(&d);
        for q in queries(&d) {
            let concrete = match substitute(&q.expr, &vars) {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{}: {e}", q.origin));
                    continue;
                }
            };
            // As Grafana sends them: form POST, range queries for graphs.
            let form: Vec<(&str, String)> = if q.instant {
                vec![("query", concrete.clone()), ("time", end.to_string())]
            } else {
                vec![
                    ("query", concrete.clone()),
                    ("start", start_s.to_string()),
                    ("end", end.to_string()),
                    ("step", "15".to_string()),
                ]
            };
            let path = if q.instant {
                "/api/v1/query"
            } else {
                "/api/v1/query_range"
            };
            let r: Value = match http
                .post(collector.url(path))
                .form(&form)
                .send()
                .and_then(|r| r.json())
            {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{}: request failed: {e}", q.origin));
                    continue;
                }
            };
            if r["status"] != "success" {
                failures.push(format!(
                    "{}: {}: {}\n    {concrete}",
                    q.origin, r["errorType"], r["error"]
                ));
                continue;
            }
            let has_data = match r["data"]["resultType"].as_str() {
                Some("scalar") => r["data"]["result"][1].as_str().is_some_and(|v| v != "NaN"),
                _ => r["data"]["result"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty()),
            };
            if has_data {
                with_data += 1;
                if q.event_only {
                    event_only_with_data.push(q.origin.clone());
                }
            } else if q.event_only {
                empty_event_only.push(format!("{}: {concrete}", q.origin));
            } else {
                failures.push(format!("{}: no data\n    {concrete}", q.origin));
            }
        }
        // Variables, as Grafana fills them: the label's values on the
        // series the selector matches.
        for v in label_values_vars(&d) {
            let selector = match substitute(&v.selector, &vars) {
                Ok(s) => s,
                Err(e) => {
                    failures.push(format!("{}: {e}", v.origin));
                    continue;
                }
            };
            let r: Value = http
                .post(collector.url("/api/v1/series"))
                .form(&[
                    ("match[]", selector.clone()),
                    ("start", start_s.to_string()),
                    ("end", end.to_string()),
                ])
                .send()
                .and_then(|r| r.json())
                .unwrap_or_else(|e| json!({"status": "error", "error": e.to_string()}));
            let values: BTreeSet<&str> = r["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s[&v.label].as_str())
                .collect();
            if r["status"] != "success" {
                failures.push(format!("{}: {}", v.origin, r["error"]));
            } else if values.is_empty() && !v.event_only {
                failures.push(format!(
                    "{}: label_values({selector}, {}) is empty",
                    v.origin, v.label
                ));
            } else if values.is_empty() {
                empty_event_only.push(format!(
                    "{}: label_values({selector}, {})",
                    v.origin, v.label
                ));
            }
        }
    }
    // The loop must have asked something: every non-event-only query
    // (and there are many) must have answered with data.
    assert!(
        with_data >= 20,
        "only {with_data} panel queries returned data"
    );
    println!("{with_data} panel queries returned data");
    println!(
        "event-only, with data in this run ({}):",
        event_only_with_data.len()
    );
    for e in &event_only_with_data {
        println!("  {e}");
    }
    println!(
        "event-only, empty in this run ({}):",
        empty_event_only.len()
    );
    for e in &empty_event_only {
        println!("  {e}");
    }
    let by_file: BTreeMap<&str, usize> = failures.iter().fold(BTreeMap::new(), |mut m, f| {
        *m.entry(f.split(' ').next().unwrap_or("")).or_default() += 1;
        m
    });
    assert!(
        failures.is_empty(),
        "panels without data or with errors {by_file:?}:\n{}",
        failures.join("\n")
    );
}

// ------------------------------------------------------------ cost panels

/// One OTLP/JSON export of GenAI histograms, cumulative since `start`, as an
/// OpenTelemetry SDK sends them: token usage per type and call durations.
fn genai_export(model: &str, input: u64, output: u64, calls: u64) -> Value {
    let attrs = |extra: &[(&str, &str)]| -> Value {
        let mut a = vec![
            json!({"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}),
            json!({"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}}),
            json!({"key": "gen_ai.request.model", "value": {"stringValue": model}}),
        ];
        for (k, v) in extra {
            a.push(json!({"key": k, "value": {"stringValue": v}}));
        }
        Value::Array(a)
    };
    let point = |attributes: Value, count: u64, sum: f64| {
        json!({
            "attributes": attributes,
            "startTimeUnixNano": "1",
            "timeUnixNano": format!("{}", vigil_e2e::now_ms() * 1_000_000),
            "count": count.to_string(),
            "sum": sum,
            "bucketCounts": [count.to_string(), "0"],
            "explicitBounds": [100000000.0]
        })
    };
    json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "otel-app"}}]},
        "scopeMetrics": [{"metrics": [
            {"name": "gen_ai.client.token.usage", "unit": "{token}", "histogram": {
                "aggregationTemporality": 2,
                "dataPoints": [
                    point(attrs(&[("gen_ai.token.type", "input")]), calls, input as f64),
                    point(attrs(&[("gen_ai.token.type", "output")]), calls, output as f64)
                ]}},
            {"name": "gen_ai.client.operation.duration", "unit": "s", "histogram": {
                "aggregationTemporality": 2,
                "dataPoints": [point(attrs(&[]), calls, 0.5 * calls as f64)]}}
        ]}]
    }]})
}

/// The cost panels of the LLM dashboard against an agent with no price
/// configuration at all (the built-in table prices the models), fed by
/// usage events and by OpenTelemetry GenAI metrics: every panel equals the
/// total computed by hand from the list prices, from the first event on.
#[test]
fn llm_cost_panels_equal_hand_computed_totals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(&dir.path().join("collector"), &[]).expect("collector starts");
    let agent_port = free_port();
    let agent_url = format!("http://127.0.0.1:{agent_port}");
    let config = dir.path().join("agent.yml");
    // No llm.prices: the cost must come from the built-in table.
    std::fs::write(&config, "interval: 1s\nsystem:\n  enabled: false\n").expect("agent config");
    let mut cmd = Command::new(vigil_e2e::binary("vigil-agent").expect("vigil-agent binary"));
    cmd.arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{agent_port}")])
        .args(["--remote-write", &collector.url("/api/v1/write")])
        .arg("--data-dir")
        .arg(dir.path().join("agent"));
    let _agent = Proc::spawn("vigil-agent", &mut cmd).expect("agent starts");
    wait_ready(&format!("{agent_url}/-/healthy"), Duration::from_secs(30)).expect("agent healthy");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");

    // Usage events: a pinned gpt-4o release (priced as gpt-4o, $2.50 / $10
    // per 1M tokens) and claude-sonnet-4 ($3 / $15).
    for _ in 0..3 {
        let r = http
            .post(format!("{agent_url}/v1/llm/usage"))
            .json(&json!([
                {"provider": "openai", "model": "gpt-4o-2024-08-06", "input_tokens": 1000, "output_tokens": 200},
                {"provider": "anthropic", "model": "claude-sonnet-4", "input_tokens": 500, "output_tokens": 100, "status": 429}
            ]))
            .send()
            .expect("usage events");
        assert!(
            r.status().is_success(),
            "POST /v1/llm/usage: {}",
            r.status()
        );
    }
    // OpenTelemetry: gpt-4o-mini ($0.15 / $0.60), two cumulative exports;
    // the second one's totals are what was used.
    for (input, output, calls) in [(4000, 1000, 2), (10_000, 2500, 5)] {
        let r = http
            .post(format!("{agent_url}/v1/metrics"))
            .json(&genai_export("gpt-4o-mini", input, output, calls))
            .send()
            .expect("OTLP export");
        assert!(r.status().is_success(), "POST /v1/metrics: {}", r.status());
    }
    let by_model: BTreeMap<(&str, &str), f64> = [
        (
            ("openai", "gpt-4o-2024-08-06"),
            3.0 * (1000.0 * 2.5 + 200.0 * 10.0) / 1e6,
        ),
        (
            ("anthropic", "claude-sonnet-4"),
            3.0 * (500.0 * 3.0 + 100.0 * 15.0) / 1e6,
        ),
        (
            ("openai", "gpt-4o-mini"),
            (10_000.0 * 0.15 + 2500.0 * 0.6) / 1e6,
        ),
    ]
    .into_iter()
    .collect();
    let total: f64 = by_model.values().sum();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;

    let instant = |expr: &str, at: f64| -> Value {
        let r: Value = http
            .post(collector.url("/api/v1/query"))
            .form(&[("query", expr), ("time", &at.to_string())])
            .send()
            .and_then(|r| r.json())
            .expect("query answers");
        assert_eq!(r["status"], "success", "{expr}: {r}");
        r["data"]["result"].clone()
    };
    let value = |s: &Value| -> f64 {
        s["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("sample value")
    };
    // The last collection shipped and stored: the raw counters add up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let end = loop {
        let now = vigil_e2e::now_ms() as f64 / 1000.0;
        let got = instant("sum(llm_cost_usd_total)", now);
        if got
            .as_array()
            .and_then(|a| a.first())
            .is_some_and(|s| close(value(s), total))
        {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "llm_cost_usd_total never summed to {total}: {got}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    // The OpenTelemetry path feeds the same series as usage events.
    let tokens = instant(
        r#"llm_tokens_total{provider="openai",model="gpt-4o-mini",type="input"}"#,
        end,
    );
    assert_eq!(tokens.as_array().map(Vec::len), Some(1), "{tokens}");
    assert!(close(value(&tokens[0]), 10_000.0), "{tokens}");
    let calls = instant(
        r#"llm_requests_total{provider="openai",model="gpt-4o-mini",status="ok"}"#,
        end,
    );
    assert!(
        calls
            .as_array()
            .and_then(|a| a.first())
            .is_some_and(|s| close(value(s), 5.0)),
        "{calls}"
    );

    let llm = dashboards()
        .into_iter()
        .find(|d| d.file == "llm.json")
        .expect("llm.json");
    let vars = variable_names(&llm);
    let panel = |title: &str| -> String {
        let q = queries(&llm)
            .into_iter()
            .find(|q| q.origin.contains(&format!("{title:?}")))
            .unwrap_or_else(|| panic!("panel {title} exists"));
        substitute(&q.expr, &vars).expect("substitutes")
    };
    let stat = instant(&panel("Cost over the range"), end);
    assert_eq!(stat.as_array().map(Vec::len), Some(1), "{stat}");
    assert!(
        close(value(&stat[0]), total),
        "Cost over the range shows {} instead of {total}",
        value(&stat[0])
    );
    let bars = instant(&panel("Cost by model over the range"), end);
    let shown: BTreeMap<(String, String), f64> = bars
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                (
                    s["metric"]["provider"].as_str().unwrap_or("").to_string(),
                    s["metric"]["model"].as_str().unwrap_or("").to_string(),
                ),
                value(s),
            )
        })
        .collect();
    assert_eq!(shown.len(), by_model.len(), "{bars}");
    for ((provider, model), want) in &by_model {
        let got = shown
            .get(&(provider.to_string(), model.to_string()))
            .unwrap_or_else(|| panic!("{provider}/{model} missing: {bars}"));
        assert!(close(*got, *want), "{provider}/{model}: {got} != {want}");
    }
}
