use super::*;

/// A configuration using most of Alertmanager 0.25's schema, as an
/// operator would write it.
const FULL: &str = r#"
global:
  resolve_timeout: 2m
  smtp_smarthost: 'localhost:25'
  smtp_from: 'alertmanager@example.org'
  smtp_require_tls: false
  slack_api_url: 'http://127.0.0.1:1/slack'
templates:
  - '/nonexistent/*.tmpl'
route:
  receiver: team-x-mails
  group_by: ['alertname', 'cluster', 'service']
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 3h
  routes:
    - matchers:
        - service=~"foo1|foo2|baz"
      receiver: team-x-mails
      routes:
        - matchers: [severity="critical"]
          receiver: team-x-pager
    - match:
        service: files
      receiver: team-y-mails
      continue: true
      mute_time_intervals: [offhours]
    - match_re:
        service: ^(db|cache)$
      receiver: team-db
      group_by: ['...']
      active_time_intervals: [offhours]
inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [alertname, cluster, service]
  - source_match: {severity: page}
    target_match_re: {severity: "warn|info"}
receivers:
  - name: team-x-mails
    email_configs:
      - to: 'team-x+alerts@example.org'
        headers: {Subject: 'hi {{ .Status }}'}
  - name: team-x-pager
    pagerduty_configs:
      - routing_key: abc
    slack_configs:
      - channel: '#pager'
        send_resolved: true
  - name: team-y-mails
    webhook_configs:
      - url: http://127.0.0.1:1/hook
        max_alerts: 10
        http_config:
          basic_auth: {username: u, password: p}
  - name: team-db
    opsgenie_configs:
      - api_key: xyz
time_intervals:
  - name: offhours
    time_intervals:
      - times: [{start_time: '18:00', end_time: '24:00'}]
        weekdays: ['monday:friday']
"#;

fn err(text: &str) -> ConfigError {
    match parse_config(text, "am.yml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn loads_a_full_alertmanager_file() {
    let cfg = parse_config(FULL, "am.yml").expect("valid configuration");
    let s = cfg.summary();
    assert_eq!(s.receivers, 4);
    assert_eq!(s.routes, 5);
    assert_eq!(s.inhibit_rules, 2);
    assert_eq!(s.time_intervals, 1);
    assert_eq!(cfg.receivers[3].opsgenie_configs.len(), 1);
    assert_eq!(
        cfg.global.resolve_timeout.0,
        std::time::Duration::from_secs(120)
    );
    assert!(cfg.receivers[2].webhook_configs[0].send_resolved);
    assert!(!cfg.receivers[0].email_configs[0].send_resolved);
}

#[test]
fn unknown_field_is_rejected_with_its_line() {
    let e = err("route:\n  receiver: a\n  group_wiat: 1s\nreceivers:\n  - name: a\n");
    assert_eq!((e.line, e.column), (3, 3));
    assert!(e.reason.contains("group_wiat"), "{}", e.reason);
    assert!(e.to_string().starts_with("am.yml:3:3: "), "{e}");
}

#[test]
fn bad_values_are_located() {
    let e = err("route:\n  receiver: a\n  group_wait: 5 minutes\nreceivers:\n  - name: a\n");
    assert_eq!(e.line, 3);
    assert!(e.reason.contains("duration"), "{}", e.reason);
    let e = err("route:\n  receiver: a\n  matchers: ['foo=~\"(\"']\nreceivers:\n  - name: a\n");
    assert_eq!(e.line, 3);
    let e =
        err("route:\n  receiver: a\n  routes:\n    - receiver: nope\nreceivers:\n  - name: a\n");
    assert_eq!(e.line, 4);
    assert!(
        e.reason.contains("undefined receiver \"nope\""),
        "{}",
        e.reason
    );
    let e = err("route:\n  receiver: a\nreceivers:\n  - name: a\n  - name: a\n");
    assert_eq!(e.line, 5);
    assert!(e.reason.contains("not unique"));
    let e = err(
        "route:\n  receiver: a\nreceivers:\n  - name: a\n    webhook_configs:\n      - url_file: /x\n        url: http://a\n",
    );
    assert_eq!(e.line, 4);
    let e = err(
        "route:\n  receiver: a\n  routes:\n    - mute_time_intervals: [never]\nreceivers:\n  - name: a\n",
    );
    assert!(e.reason.contains("undefined time interval"), "{}", e.reason);
    let e = err("route:\n  receiver: a\n  group_by: ['...', 'x']\nreceivers:\n  - name: a\n");
    assert!(e.reason.contains("wildcard"), "{}", e.reason);
}

#[test]
fn root_route_needs_a_receiver() {
    let e = err("route:\n  group_by: [a]\nreceivers:\n  - name: a\n");
    assert!(e.reason.contains("default receiver"));
}

#[test]
fn durations_follow_prometheus() {
    let d = |s: &str| PromDuration::parse(s).map(|d| d.0.as_millis());
    assert_eq!(d("1h30m"), Ok(5_400_000));
    assert_eq!(d("0"), Ok(0));
    assert_eq!(d("1w2d"), Ok(9 * 86_400_000));
    assert_eq!(d("250ms"), Ok(250));
    assert!(d("1m1h").is_err());
    assert!(d("1.5h").is_err());
    assert!(d("").is_err());
    assert_eq!(
        PromDuration::parse("90m").map(|d| d.to_string()),
        Ok("1h30m".to_string())
    );
}

#[test]
fn default_configuration_has_one_silent_receiver() {
    let c = AlertingConfig::default_config();
    assert_eq!(c.receivers.len(), 1);
    assert!(c.receivers[0].webhook_configs.is_empty());
}

#[test]
fn vigil_extensions_are_opt_in() {
    let cfg = parse_config(
        "route:\n  receiver: a\n  vigil_repeat_backoff: {factor: 2, max: 1d}\nreceivers:\n  - name: a\n    vigil_rate_limit: {max_notifications: 3, per: 10m}\n",
        "x.yml",
    )
    .expect("extensions parse");
    assert_eq!(
        cfg.receivers[0]
            .vigil_rate_limit
            .as_ref()
            .map(|r| r.max_notifications),
        Some(3)
    );
    assert!(cfg.route.vigil_repeat_backoff.is_some());
}

#[test]
fn example_file_in_deploy_loads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/alerting.example.yml");
    let s = check_config(&path).expect("the example configuration is valid");
    assert!(s.receivers >= 1);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn duration_display_round_trips(ms in 0u64..(400 * 365 * 86_400_000)) {
            let d = PromDuration(std::time::Duration::from_millis(ms));
            prop_assert_eq!(PromDuration::parse(&d.to_string()), Ok(d));
        }

        #[test]
        fn duration_parser_never_panics(s in "[0-9a-z]{0,12}") {
            let _ = PromDuration::parse(&s);
        }
    }
}
