//! State-machine tests for [`AlertingRule`], driven with hand-made query
//! results so each Prometheus transition is checked in isolation.

use super::*;
use crate::file::parse_rules;
use vigil_template::Value;

fn rule(yaml_rule: &str) -> AlertingRule {
    let text = format!("groups:\n  - name: g\n    rules:\n{yaml_rule}");
    let groups = match parse_rules("t.yml", &text) {
        Ok(g) => g,
        Err(e) => panic!("{e:?}"),
    };
    let mut r = AlertingRule::new(groups[0].rules[0].clone());
    r.restored = true;
    r
}

fn env() -> (Value, String) {
    (Value::Map(Default::default()), "http://vigil".to_string())
}

fn eval(r: &mut AlertingRule, ts_s: i64, elements: &[(&str, f64)]) -> Vec<(Labels, Sample)> {
    let (ext, url) = env();
    let tenv = TemplateEnv {
        external_labels: &ext,
        external_url: &url,
    };
    let els = elements
        .iter()
        .map(|(inst, v)| {
            (
                Labels::from_pairs([("__name__", "up"), ("instance", *inst)]),
                *v,
            )
        })
        .collect();
    match r.eval(ts_s * 1000, els, &tenv, 0) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn state_of(r: &AlertingRule, inst: &str) -> Option<AlertState> {
    r.active
        .values()
        .find(|a| a.labels.get("instance") == Some(inst))
        .map(|a| a.state)
}

const DOWN_5M: &str = "      - alert: Down\n        expr: up == 0\n        for: 5m\n        labels: {severity: page}\n        annotations:\n          summary: '{{ $labels.instance }} is {{ $value }}'\n";

#[test]
fn pending_then_firing_then_resolved() {
    let mut r = rule(DOWN_5M);
    let out = eval(&mut r, 0, &[("a", 0.0)]);
    assert_eq!(state_of(&r, "a"), Some(AlertState::Pending));
    // ALERTS{alertstate="pending"} and ALERTS_FOR_STATE with activeAt.
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].0.get("alertstate"), Some("pending"));
    assert_eq!(out[0].0.get("__name__"), Some("ALERTS"));
    assert_eq!(out[0].0.get("severity"), Some("page"));
    assert_eq!(out[1].0.get("__name__"), Some("ALERTS_FOR_STATE"));
    assert_eq!(out[1].1.value, 0.0);
    eval(&mut r, 240, &[("a", 0.0)]);
    assert_eq!(state_of(&r, "a"), Some(AlertState::Pending));
    let out = eval(&mut r, 300, &[("a", 0.0)]);
    assert_eq!(state_of(&r, "a"), Some(AlertState::Firing));
    assert_eq!(out[0].0.get("alertstate"), Some("firing"));
    let a = r.active.values().next().cloned();
    let a = a.as_ref();
    assert_eq!(a.map(|a| a.fired_at_ms), Some(Some(300_000)));
    assert_eq!(
        a.map(|a| a.annotations.clone()),
        Some(vec![("summary".to_string(), "a is 0".to_string())])
    );
    // Condition clears: inactive, resolved, kept for re-sending.
    let out = eval(&mut r, 360, &[]);
    assert!(out.is_empty());
    assert_eq!(state_of(&r, "a"), Some(AlertState::Inactive));
    assert_eq!(
        r.active.values().next().and_then(|a| a.resolved_at_ms),
        Some(360_000)
    );
    // Kept until 15 minutes after resolution, then dropped.
    eval(&mut r, 360 + 15 * 60, &[]);
    assert!(r.active.len() == 1);
    eval(&mut r, 360 + 15 * 60 + 60, &[]);
    assert!(r.active.is_empty());
}

#[test]
fn pending_alert_that_clears_is_dropped() {
    let mut r = rule(DOWN_5M);
    eval(&mut r, 0, &[("a", 0.0)]);
    eval(&mut r, 60, &[]);
    assert!(r.active.is_empty());
    // Coming back starts a new pending period.
    eval(&mut r, 120, &[("a", 0.0)]);
    assert_eq!(
        r.active.values().next().map(|a| a.active_at_ms),
        Some(120_000)
    );
}

#[test]
fn for_zero_fires_immediately() {
    let mut r = rule("      - alert: Now\n        expr: up == 0\n");
    eval(&mut r, 10, &[("a", 0.0)]);
    assert_eq!(state_of(&r, "a"), Some(AlertState::Firing));
}

#[test]
fn keep_firing_for_holds_a_cleared_alert() {
    let mut r = rule("      - alert: Flappy\n        expr: up == 0\n        keep_firing_for: 2m\n");
    eval(&mut r, 0, &[("a", 0.0)]);
    assert_eq!(state_of(&r, "a"), Some(AlertState::Firing));
    let out = eval(&mut r, 60, &[]);
    assert_eq!(state_of(&r, "a"), Some(AlertState::Firing));
    assert_eq!(out.len(), 2, "a kept alert still writes ALERTS");
    eval(&mut r, 120, &[]);
    assert_eq!(state_of(&r, "a"), Some(AlertState::Firing));
    // 2 minutes after it first cleared (at 60 s): resolved.
    eval(&mut r, 180, &[]);
    assert_eq!(state_of(&r, "a"), Some(AlertState::Inactive));
}

#[test]
fn keep_firing_resets_when_condition_returns() {
    let mut r = rule("      - alert: Flappy\n        expr: up == 0\n        keep_firing_for: 2m\n");
    eval(&mut r, 0, &[("a", 0.0)]);
    eval(&mut r, 60, &[]);
    eval(&mut r, 120, &[("a", 0.0)]);
    eval(&mut r, 180, &[]);
    eval(&mut r, 240, &[]);
    assert_eq!(state_of(&r, "a"), Some(AlertState::Firing));
}

#[test]
fn resolved_alert_comes_back_as_new_pending() {
    let mut r = rule(DOWN_5M);
    eval(&mut r, 0, &[("a", 0.0)]);
    eval(&mut r, 300, &[("a", 0.0)]);
    eval(&mut r, 360, &[]);
    eval(&mut r, 420, &[("a", 0.0)]);
    let a = r.active.values().next().cloned();
    assert_eq!(a.as_ref().map(|a| a.state), Some(AlertState::Pending));
    assert_eq!(a.map(|a| a.active_at_ms), Some(420_000));
}

#[test]
fn not_restored_writes_no_series() {
    let mut r = rule(DOWN_5M);
    r.restored = false;
    assert!(eval(&mut r, 0, &[("a", 0.0)]).is_empty());
}

#[test]
fn limit_drops_state_and_fails() {
    let mut r = rule(DOWN_5M);
    let (ext, url) = env();
    let tenv = TemplateEnv {
        external_labels: &ext,
        external_url: &url,
    };
    let els = (0..3)
        .map(|i| (Labels::from_pairs([("instance", format!("i{i}"))]), 0.0))
        .collect();
    let err = r.eval(0, els, &tenv, 2);
    assert_eq!(err, Err("exceeded limit of 2 with 3 alerts".to_string()));
    assert!(r.active.is_empty());
}

#[test]
fn duplicate_labelsets_after_labels_fail() {
    // The `instance` label template overwrites the distinguishing label.
    let mut r =
        rule("      - alert: Dup\n        expr: up == 0\n        labels: {instance: same}\n");
    let (ext, url) = env();
    let tenv = TemplateEnv {
        external_labels: &ext,
        external_url: &url,
    };
    let els = vec![
        (Labels::from_pairs([("instance", "a")]), 0.0),
        (Labels::from_pairs([("instance", "b")]), 0.0),
    ];
    assert!(
        r.eval(0, els, &tenv, 0)
            .is_err_and(|e| e.contains("same labelset"))
    );
}

#[test]
fn sending_follows_the_notifier_rules() {
    let mut r = rule(DOWN_5M);
    let resend = Duration::from_secs(60);
    let iv = Duration::from_secs(30);
    eval(&mut r, 0, &[("a", 0.0)]);
    assert!(
        r.alerts_to_send(0, resend, iv).is_empty(),
        "pending alerts are not sent"
    );
    eval(&mut r, 300, &[("a", 0.0)]);
    let sent = r.alerts_to_send(300_000, resend, iv);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].valid_until_ms, 300_000 + 4 * 60_000);
    eval(&mut r, 330, &[("a", 0.0)]);
    assert!(
        r.alerts_to_send(330_000, resend, iv).is_empty(),
        "not again within resend_delay"
    );
    eval(&mut r, 390, &[("a", 0.0)]);
    assert_eq!(r.alerts_to_send(390_000, resend, iv).len(), 1);
    eval(&mut r, 400, &[]);
    let resolved = r.alerts_to_send(400_000, resend, iv);
    assert_eq!(resolved.len(), 1, "resolution is sent at once");
    assert_eq!(resolved[0].resolved_at_ms, Some(400_000));
    assert!(r.alerts_to_send(420_000, resend, iv).is_empty());
    assert_eq!(
        r.alerts_to_send(470_000, resend, iv).len(),
        1,
        "resolved alerts are re-sent"
    );
}
