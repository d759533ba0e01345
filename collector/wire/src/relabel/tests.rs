//! The cases of Prometheus's `model/relabel/relabel_test.go` (`TestRelabel`,
//! `TestRelabelValidate`, `TestTargetLabelValidity`) with their expected
//! outputs, the YAML reading, and properties over random label sets.

use proptest::prelude::*;

use super::*;

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn steps(yaml: &str) -> Vec<Relabel> {
    let cfgs: Vec<RelabelConfig> = serde_saphyr::from_str(yaml).expect("yaml");
    Relabel::compile_all("relabel_configs", &cfgs).expect("compiles")
}

fn run(input: &[(&str, &str)], yaml: &str) -> Option<Labels> {
    process(l(input), &steps(yaml))
}

fn refused(yaml: &str) -> String {
    let cfgs: Vec<RelabelConfig> = match serde_saphyr::from_str(yaml) {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    match Relabel::compile_all("relabel_configs", &cfgs) {
        Ok(_) => panic!("accepted: {yaml}"),
        Err(e) => e,
    }
}

const ABC: &[(&str, &str)] = &[("a", "foo"), ("b", "bar"), ("c", "baz")];

#[test]
fn replace_expands_groups_into_the_target() {
    assert_eq!(
        run(
            ABC,
            "- source_labels: [a]\n  regex: f(.*)\n  target_label: d\n  replacement: ch${1}-ch${1}\n"
        ),
        Some(l(&[
            ("a", "foo"),
            ("b", "bar"),
            ("c", "baz"),
            ("d", "choo-choo")
        ]))
    );
    // Two steps, the second reading what the first wrote.
    assert_eq!(
        run(
            ABC,
            "- source_labels: [a, b]\n  regex: f(.*);(.*)r\n  target_label: a\n  replacement: b${1}${2}m\n\
             - source_labels: [c, a]\n  regex: (b).*b(.*)ba(.*)\n  target_label: d\n  replacement: $1$2$2$3\n"
        ),
        Some(l(&[
            ("a", "boobam"),
            ("b", "bar"),
            ("c", "baz"),
            ("d", "boooom")
        ]))
    );
    assert_eq!(
        run(
            &[("a", "abc")],
            "- source_labels: [a]\n  regex: .*(b).*\n  target_label: d\n"
        ),
        Some(l(&[("a", "abc"), ("d", "b")]))
    );
    // No match, no replacement.
    assert_eq!(
        run(
            &[("a", "boo")],
            "- source_labels: [a]\n  regex: f\n  target_label: b\n  replacement: bar\n"
        ),
        Some(l(&[("a", "boo")]))
    );
}

#[test]
fn replace_with_groups_in_the_target_label() {
    let re = "some-([^-]+)-([^,]+)";
    assert_eq!(
        run(
            &[("a", "some-name-value")],
            &format!(
                "- source_labels: [a]\n  regex: '{re}'\n  replacement: '${{2}}'\n  target_label: '${{1}}'\n"
            )
        ),
        Some(l(&[("a", "some-name-value"), ("name", "value")]))
    );
    // A replacement expanding to "" deletes (here: an absent label).
    assert_eq!(
        run(
            &[("a", "some-name-value")],
            &format!(
                "- source_labels: [a]\n  regex: '{re}'\n  replacement: '${{3}}'\n  target_label: '${{1}}'\n"
            )
        ),
        Some(l(&[("a", "some-name-value")]))
    );
    // Targets expanding to invalid names ("", "0") are skipped.
    assert_eq!(
        run(
            &[("a", "some-name-0")],
            &format!(
                "- source_labels: [a]\n  regex: '{re}'\n  replacement: '${{1}}'\n  target_label: '${{3}}'\n\
                 - source_labels: [a]\n  regex: 'some-([^-]+)(-[^,]+)'\n  replacement: '${{1}}'\n  target_label: '${{3}}'\n\
                 - source_labels: [a]\n  regex: 'some-([^-]+)-([^,]+)'\n  replacement: x\n  target_label: '${{2}}'\n"
            )
        ),
        Some(l(&[("a", "some-name-0")]))
    );
}

#[test]
fn replace_real_life_tags() {
    let out = run(
        &[("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar")],
        "- source_labels: [__meta_sd_tags]\n  regex: '(?:.+,|^)path:(/[^,]+).*'\n  target_label: __metrics_path__\n  replacement: '${1}'\n\
         - source_labels: [__meta_sd_tags]\n  regex: '(?:.+,|^)job:([^,]+).*'\n  target_label: job\n  replacement: '${1}'\n\
         - source_labels: [__meta_sd_tags]\n  regex: '(?:.+,|^)label:([^=]+)=([^,]+).*'\n  target_label: '${1}'\n  replacement: '${2}'\n",
    );
    assert_eq!(
        out,
        Some(l(&[
            ("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar"),
            ("__metrics_path__", "/secret"),
            ("foo", "bar"),
            ("job", "some-job"),
        ]))
    );
}

#[test]
fn replace_of_an_empty_value_sets_or_deletes() {
    // Default regex, absent source: the replacement itself (fast path).
    assert_eq!(
        run(&[("a", "x")], "- target_label: env\n  replacement: prod\n"),
        Some(l(&[("a", "x"), ("env", "prod")]))
    );
    // Default replacement `$1` of an empty source deletes the target.
    assert_eq!(
        run(
            &[("a", "x"), ("b", "y")],
            "- source_labels: [missing]\n  target_label: b\n"
        ),
        Some(l(&[("a", "x")]))
    );
    // `$1x` is the group named "1x" (absent, so empty), as in Go.
    assert_eq!(
        run(
            &[("a", "v")],
            "- source_labels: [a]\n  target_label: b\n  replacement: $1x\n"
        ),
        Some(l(&[("a", "v")]))
    );
    assert_eq!(
        run(
            &[("a", "v")],
            "- source_labels: [a]\n  target_label: b\n  replacement: ${1}x$$\n"
        ),
        Some(l(&[("a", "v"), ("b", "vx$")]))
    );
    // Named groups.
    assert_eq!(
        run(
            &[("a", "db1:9100")],
            "- source_labels: [a]\n  regex: '(?P<host>[^:]+):(?P<port>[0-9]+)'\n  target_label: host\n  replacement: $host-${port}\n"
        ),
        Some(l(&[("a", "db1:9100"), ("host", "db1-9100")]))
    );
}

#[test]
fn keep_and_drop_match_the_whole_value() {
    let drop_foo = "- source_labels: [a]\n  regex: .*o.*\n  action: drop\n";
    assert_eq!(run(&[("a", "foo")], drop_foo), None);
    assert_eq!(run(&[("a", "foo"), ("b", "bar")], drop_foo), None);
    // Anchored: "f|o" matches neither all of "foo"...
    assert_eq!(
        run(
            &[("a", "foo")],
            "- source_labels: [a]\n  regex: f|o\n  action: drop\n"
        ),
        Some(l(&[("a", "foo")]))
    );
    assert_eq!(
        run(
            &[("a", "foo")],
            "- source_labels: [a]\n  regex: no-match\n  action: drop\n"
        ),
        Some(l(&[("a", "foo")]))
    );
    assert_eq!(
        run(
            &[("a", "foo")],
            "- source_labels: [a]\n  regex: no-match\n  action: keep\n"
        ),
        None
    );
    assert_eq!(
        run(
            &[("a", "foo")],
            "- source_labels: [a]\n  regex: f.*\n  action: keep\n"
        ),
        Some(l(&[("a", "foo")]))
    );
    // A dropped set stops the chain.
    assert_eq!(
        run(
            &[("a", "foo")],
            &format!("{drop_foo}- source_labels: [a]\n  regex: f(.*)\n  target_label: d\n")
        ),
        None
    );
    // `.` matches a newline: the regex is `^(?s:…)$`.
    assert_eq!(
        run(
            &[("a", "foo\nbar")],
            "- source_labels: [a]\n  regex: foo.bar\n  action: drop\n"
        ),
        None
    );
}

#[test]
fn keepequal_and_dropequal_compare_with_the_target() {
    let ports = &[
        ("__tmp_port", "1234"),
        ("__port1", "1234"),
        ("__port2", "5678"),
    ];
    let cfg = |action: &str, target: &str| {
        format!("- source_labels: [__tmp_port]\n  action: {action}\n  target_label: {target}\n")
    };
    assert_eq!(run(ports, &cfg("keepequal", "__port1")), Some(l(ports)));
    assert_eq!(run(ports, &cfg("dropequal", "__port1")), None);
    assert_eq!(run(ports, &cfg("dropequal", "__port2")), Some(l(ports)));
    assert_eq!(run(ports, &cfg("keepequal", "__port2")), None);
}

#[test]
fn hashmod_is_md5_tail_big_endian_modulo() {
    // Prometheus's expected values.
    assert_eq!(
        run(
            ABC,
            "- source_labels: [c]\n  target_label: d\n  action: hashmod\n  modulus: 1000\n"
        ),
        Some(l(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "976")]))
    );
    assert_eq!(
        run(
            &[("a", "foo\nbar")],
            "- source_labels: [a]\n  target_label: b\n  action: hashmod\n  modulus: 1000\n"
        ),
        Some(l(&[("a", "foo\nbar"), ("b", "734")]))
    );
}

#[test]
fn labelmap_labeldrop_labelkeep() {
    let b = &[("a", "foo"), ("b1", "bar"), ("b2", "baz")];
    assert_eq!(
        run(
            b,
            "- regex: (b.*)\n  replacement: bar_${1}\n  action: labelmap\n"
        ),
        Some(l(&[
            ("a", "foo"),
            ("b1", "bar"),
            ("b2", "baz"),
            ("bar_b1", "bar"),
            ("bar_b2", "baz"),
        ]))
    );
    assert_eq!(
        run(
            &[
                ("a", "foo"),
                ("__meta_my_bar", "aaa"),
                ("__meta_my_baz", "bbb"),
                ("__meta_other", "ccc"),
            ],
            "- regex: __meta_(my.*)\n  replacement: ${1}\n  action: labelmap\n"
        ),
        Some(l(&[
            ("__meta_my_bar", "aaa"),
            ("__meta_my_baz", "bbb"),
            ("__meta_other", "ccc"),
            ("a", "foo"),
            ("my_bar", "aaa"),
            ("my_baz", "bbb"),
        ]))
    );
    assert_eq!(
        run(b, "- regex: (b.*)\n  action: labelkeep\n"),
        Some(l(&[("b1", "bar"), ("b2", "baz")]))
    );
    assert_eq!(
        run(b, "- regex: (b.*)\n  action: labeldrop\n"),
        Some(l(&[("a", "foo")]))
    );
}

#[test]
fn prometheus_issue_12283_labeldrop_then_replace_then_keep() {
    assert_eq!(
        run(
            &[
                ("__meta_kubernetes_pod_container_port_name", "foo"),
                ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
            ],
            "- regex: ^__meta_kubernetes_pod_container_port_name$\n  action: labeldrop\n\
             - source_labels: [__meta_kubernetes_pod_annotation_XXX_metrics_port]\n  regex: (.+)\n  action: replace\n  replacement: metrics\n  target_label: __meta_kubernetes_pod_container_port_name\n\
             - source_labels: [__meta_kubernetes_pod_container_port_name]\n  regex: ^metrics$\n  action: keep\n"
        ),
        Some(l(&[
            ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
            ("__meta_kubernetes_pod_container_port_name", "metrics"),
        ]))
    );
}

#[test]
fn lowercase_and_uppercase() {
    assert_eq!(
        run(
            &[("foo", "bAr123Foo")],
            "- source_labels: [foo]\n  action: Uppercase\n  target_label: foo_uppercase\n\
             - source_labels: [foo]\n  action: LOWERCASE\n  target_label: foo_lowercase\n"
        ),
        Some(l(&[
            ("foo", "bAr123Foo"),
            ("foo_lowercase", "bar123foo"),
            ("foo_uppercase", "BAR123FOO"),
        ]))
    );
}

#[test]
fn configurations_are_refused_with_prometheus_messages() {
    for (yaml, want) in [
        ("- {}\n", "requires 'target_label' value"),
        ("- action: lowercase\n", "requires 'target_label' value"),
        (
            "- action: lowercase\n  target_label: '${3}'\n",
            "\"${3}\" is invalid 'target_label'",
        ),
        (
            "- source_labels: [a]\n  target_label: '0${3}'\n",
            "\"0${3}\" is invalid 'target_label'",
        ),
        (
            "- source_labels: [a]\n  target_label: '-${3}'\n",
            "\"-${3}\" is invalid 'target_label' for replace action",
        ),
        (
            "- target_label: a-b\n",
            "\"a-b\" is invalid 'target_label' for replace action",
        ),
        (
            "- source_labels: [a]\n  target_label: b\n  action: hashmod\n",
            "relabel configuration for hashmod requires non-zero modulus",
        ),
        (
            "- action: uppercase\n  target_label: b\n  replacement: x\n",
            "'replacement' can not be set for uppercase action",
        ),
        (
            "- action: labelmap\n  replacement: 'a-$1'\n",
            "\"a-$1\" is invalid 'replacement' for labelmap action",
        ),
        (
            "- action: labeldrop\n  regex: x\n  source_labels: [a]\n",
            "labeldrop action requires only 'regex', and no other fields",
        ),
        (
            "- action: labelkeep\n  target_label: a\n",
            "labelkeep action requires only 'regex', and no other fields",
        ),
        (
            "- action: keepequal\n  source_labels: [a]\n  target_label: b\n  regex: (.*)\n",
            "keepequal action requires only 'source_labels' and `target_label`, and no other fields",
        ),
        (
            "- action: dropequal\n  source_labels: [a]\n  target_label: b\n  separator: ','\n",
            "dropequal action requires only 'source_labels' and `target_label`, and no other fields",
        ),
        (
            "- source_labels: [a-b]\n  target_label: c\n",
            "\"a-b\" is not a valid label name",
        ),
        (
            "- regex: '(unclosed'\n  action: labeldrop\n",
            "invalid regex",
        ),
        ("- action: explode\n", "unknown relabel action \"explode\""),
        ("- target_labels: a\n", "unknown field"),
    ] {
        let e = refused(yaml);
        assert!(e.contains(want), "{yaml}: {e}");
    }
    // The failing entry is named.
    assert!(refused("- target_label: a\n- {}\n").starts_with("relabel_configs[1]: "));
}

#[test]
fn target_label_templates_follow_prometheus() {
    for (s, valid) in [
        ("-label", false),
        ("label", true),
        ("label${1}", true),
        ("${1}label", true),
        ("${1}", true),
        ("${", false),
        ("$", false),
        ("${}", false),
        ("foo${", false),
        ("$1", true),
        ("asd$2asd", true),
        ("-foo${1}bar-", false),
        ("_${1}_", true),
        ("foo${bar}foo", true),
    ] {
        assert_eq!(TARGET_WITH_VARS.is_match(s), valid, "{s}");
    }
}

#[test]
fn defaults_are_prometheus_defaults() {
    let cfg: RelabelConfig = serde_saphyr::from_str("target_label: x\n").expect("yaml");
    assert_eq!(cfg.action, RelabelAction::Replace);
    let r = Relabel::compile(&cfg).expect("valid");
    assert_eq!(r.separator, ";");
    assert_eq!(r.replacement, "$1");
    assert_eq!(r.regex.as_str(), "^(?s:(.*))$");
    for a in RelabelAction::ALL {
        assert_eq!(RelabelAction::parse(a.as_str()), Some(a));
    }
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,6}"
}

fn label_set() -> impl Strategy<Value = Labels> {
    proptest::collection::vec((label_name(), "[a-zA-Z0-9:;._-]{0,8}"), 0..8)
        .prop_map(Labels::from_pairs)
}

/// A regex over label names or values drawn from a small set, so matches
/// happen often.
fn small_regex() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("(.*)".to_string()),
        Just("a.*".to_string()),
        Just("[a-m].*".to_string()),
        Just("(.+)_(.*)".to_string()),
        Just(".*[0-9]".to_string()),
        label_name(),
    ]
}

fn cfg(action: RelabelAction, regex: Option<String>) -> RelabelConfig {
    RelabelConfig {
        regex,
        action,
        ..RelabelConfig::default()
    }
}

proptest! {
    #[test]
    fn keep_and_drop_are_complements(
        labels in label_set(),
        sources in proptest::collection::vec(label_name(), 1..3),
        regex in small_regex(),
    ) {
        let mk = |a| {
            let mut c = cfg(a, Some(regex.clone()));
            c.source_labels = Some(sources.clone());
            Relabel::compile(&c).expect("valid")
        };
        let kept = process(labels.clone(), &[mk(RelabelAction::Keep)]);
        let not_dropped = process(labels.clone(), &[mk(RelabelAction::Drop)]);
        prop_assert_eq!(kept.is_some(), not_dropped.is_none());
        // Neither changes the labels it keeps.
        if let Some(k) = kept.or(not_dropped) {
            prop_assert_eq!(k, labels);
        }
    }

    #[test]
    fn labeldrop_and_labelkeep_partition_the_names(labels in label_set(), regex in small_regex()) {
        let re = anchored(&regex).expect("regex");
        let dropped = process(labels.clone(), &[Relabel::compile(&cfg(RelabelAction::LabelDrop, Some(regex.clone()))).expect("valid")]).expect("kept");
        let kept = process(labels.clone(), &[Relabel::compile(&cfg(RelabelAction::LabelKeep, Some(regex))).expect("valid")]).expect("kept");
        prop_assert!(dropped.iter().all(|l| !re.is_match(&l.name)));
        prop_assert!(kept.iter().all(|l| re.is_match(&l.name)));
        prop_assert_eq!(dropped.len() + kept.len(), labels.len());
        for l in labels.iter() {
            let side = if re.is_match(&l.name) { &kept } else { &dropped };
            prop_assert_eq!(side.get(&l.name), Some(l.value.as_str()));
        }
    }

    #[test]
    fn default_replace_copies_a_label(labels in label_set(), from in label_name(), to in label_name()) {
        let c = RelabelConfig {
            source_labels: Some(vec![from.clone()]),
            target_label: to.clone(),
            ..RelabelConfig::default()
        };
        let out = process(labels.clone(), &[Relabel::compile(&c).expect("valid")]).expect("kept");
        prop_assert_eq!(out.get(&to), labels.get(&from));
        for l in labels.iter().filter(|l| l.name != to) {
            prop_assert_eq!(out.get(&l.name), Some(l.value.as_str()));
        }
        prop_assert_eq!(out.iter().filter(|l| l.name != to).count(), labels.iter().filter(|l| l.name != to).count());
    }

    #[test]
    fn identity_labelmap_changes_nothing(labels in label_set()) {
        let c = cfg(RelabelAction::LabelMap, None);
        prop_assert_eq!(process(labels.clone(), &[Relabel::compile(&c).expect("valid")]), Some(labels));
    }

    #[test]
    fn hashmod_is_below_the_modulus_and_stable(labels in label_set(), sources in proptest::collection::vec(label_name(), 1..3), modulus in 1u64..10_000) {
        let c = RelabelConfig {
            source_labels: Some(sources),
            target_label: "shard".into(),
            modulus,
            action: RelabelAction::HashMod,
            ..RelabelConfig::default()
        };
        let r = Relabel::compile(&c).expect("valid");
        let a = process(labels.clone(), std::slice::from_ref(&r)).expect("kept");
        let b = process(labels, &[r]).expect("kept");
        let v: u64 = a.get("shard").expect("set").parse().expect("number");
        prop_assert!(v < modulus);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn results_are_valid_label_sets(
        labels in label_set(),
        action_i in 0usize..11,
        regex in small_regex(),
        target in label_name(),
        sources in proptest::collection::vec(label_name(), 0..3),
    ) {
        use RelabelAction::*;
        let action = RelabelAction::ALL[action_i];
        let c = RelabelConfig {
            source_labels: (!matches!(action, LabelDrop | LabelKeep)).then_some(sources),
            regex: (!matches!(action, KeepEqual | DropEqual)).then_some(regex),
            target_label: if matches!(action, LabelDrop | LabelKeep | LabelMap | Keep | Drop) { String::new() } else { target },
            modulus: if action == HashMod { 7 } else { 0 },
            replacement: None,
            action,
            ..RelabelConfig::default()
        };
        let r = Relabel::compile(&c).expect("valid");
        if let Some(out) = process(labels, &[r]) {
            let v = out.as_slice();
            prop_assert!(v.windows(2).all(|w| w[0].name < w[1].name));
            prop_assert!(v.iter().all(|l| is_valid_label_name(&l.name) && !l.value.is_empty()));
        }
    }
}
