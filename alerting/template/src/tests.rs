//! Behaviour tests: expectations come from Go's `text/template`
//! documentation and Prometheus's `template_test.go`.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn run(text: &str, data: serde_json::Value) -> String {
    match Template::new("t").parse(text) {
        Ok(t) => match t.execute_json(&data) {
            Ok(s) => s,
            Err(e) => panic!("exec {text:?}: {e}"),
        },
        Err(e) => panic!("parse {text:?}: {e}"),
    }
}

fn exec_err(text: &str, data: serde_json::Value) -> ExecError {
    match Template::new("t").parse(text) {
        Ok(t) => match t.execute_json(&data) {
            Ok(s) => panic!("expected an error from {text:?}, got {s:?}"),
            Err(e) => e,
        },
        Err(e) => panic!("parse {text:?}: {e}"),
    }
}

/// Prometheus prepends these definitions to every rule template.
const PROM_HEADER: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

fn prom(text: &str, labels: serde_json::Value, value: f64) -> String {
    let t = match Template::new("alert").parse(&format!("{PROM_HEADER}{text}")) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let mut data = match Value::from(
        json!({"Labels": labels, "ExternalLabels": {"cluster": "c1"}, "ExternalURL": "http://vigil"}),
    ) {
        Value::Map(m) => m,
        _ => unreachable!("object converts to a map"),
    };
    data.insert("Value".into(), Value::Float(value));
    match t.execute(&Value::Map(data)) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn text_and_trim_markers() {
    assert_eq!(run("hello", json!(null)), "hello");
    // From the text/template docs: "{{23 -}} < {{- 45}}" prints "23<45".
    assert_eq!(run("{{23 -}} < {{- 45}}", json!(null)), "23<45");
    assert_eq!(run("a {{- /* comment */ -}} b", json!(null)), "ab");
    assert_eq!(run("a{{/* c */}}b", json!(null)), "ab");
    assert_eq!(run("{{-3}}", json!(null)), "-3");
}

#[test]
fn fields_variables_pipelines() {
    let d = json!({"A": {"B": "x"}, "N": 3});
    assert_eq!(run("{{.A.B}}", d.clone()), "x");
    assert_eq!(run("{{ $x := .A }}{{ $x.B }}", d.clone()), "x");
    assert_eq!(run("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", d.clone()), "2");
    assert_eq!(
        run("{{ .N | printf \"%d-%s\" 7 }}", d.clone()),
        "7-%!s(int=3)"
    );
    assert_eq!(
        run("{{ \"output\" | printf \"%q\" }}", d.clone()),
        "\"output\""
    );
    assert_eq!(
        run("{{ printf \"%q\" (print \"out\" \"put\") }}", d.clone()),
        "\"output\""
    );
    assert_eq!(run("{{ range .A }}{{ $.N }}{{ end }}", d.clone()), "3");
    assert_eq!(run("{{ .Missing }}", d.clone()), "");
    assert_eq!(run("{{ (index .A \"B\") }}", d.clone()), "x");
    assert_eq!(run("{{ (.A).B }}", d), "x");
}

#[test]
fn conditionals() {
    let d = json!({"T": true, "F": false, "Z": 0, "S": "", "L": [1]});
    assert_eq!(run("{{if .T}}yes{{else}}no{{end}}", d.clone()), "yes");
    assert_eq!(
        run("{{if .F}}a{{else if .L}}b{{else}}c{{end}}", d.clone()),
        "b"
    );
    assert_eq!(run("{{if or .Z .S}}a{{else}}c{{end}}", d.clone()), "c");
    assert_eq!(run("{{if and .T .L}}a{{end}}", d.clone()), "a");
    assert_eq!(run("{{if not .F}}a{{end}}", d.clone()), "a");
    // Short-circuit: the second operand would fail on a string.
    assert_eq!(run("{{if and .S .S.X}}a{{else}}b{{end}}", d.clone()), "b");
    assert_eq!(run("{{or .T .S.X}}", d.clone()), "true");
    assert_eq!(
        run("{{and 1 0 2}}|{{or 0 \"\" 3}}|{{.Z | or 5}}", d.clone()),
        "0|3|5"
    );
    assert_eq!(
        run("{{with .L}}{{len .}}{{else}}none{{end}}", d.clone()),
        "1"
    );
    assert_eq!(
        run("{{with .S}}x{{else with .T}}{{.}}{{end}}", d.clone()),
        "true"
    );
    assert_eq!(run("{{if eq .Z 1 2 0}}in{{end}}", d.clone()), "in");
    assert_eq!(
        run("{{if lt 1.5 2}}lt{{end}}{{if ge \"b\" \"a\"}}ge{{end}}", d),
        "ltge"
    );
}

#[test]
fn range_forms() {
    let d = json!({"L": ["a", "b", "c"], "M": {"y": 2, "x": 1}, "E": []});
    assert_eq!(run("{{range .L}}{{.}}{{end}}", d.clone()), "abc");
    assert_eq!(
        run("{{range $i, $v := .L}}{{$i}}={{$v}} {{end}}", d.clone()),
        "0=a 1=b 2=c "
    );
    assert_eq!(
        run("{{range $k, $v := .M}}{{$k}}:{{$v}};{{end}}", d.clone()),
        "x:1;y:2;"
    );
    assert_eq!(run("{{range .E}}x{{else}}empty{{end}}", d.clone()), "empty");
    assert_eq!(
        run(
            "{{range .L}}{{if eq . \"b\"}}{{break}}{{end}}{{.}}{{end}}",
            d.clone()
        ),
        "a"
    );
    assert_eq!(
        run(
            "{{range .L}}{{if eq . \"b\"}}{{continue}}{{end}}{{.}}{{end}}",
            d.clone()
        ),
        "ac"
    );
    assert_eq!(run("{{range 3}}{{.}}{{end}}", d.clone()), "012");
    // Variables declared inside a range do not leak.
    assert!(
        Template::new("t")
            .parse("{{range .L}}{{$x := 1}}{{end}}{{$x}}")
            .map(|t| t.execute_json(&d))
            .map(|r| r.is_err())
            .unwrap_or(true)
    );
}

#[test]
fn define_template_block() {
    let t = "{{define \"T1\"}}ONE{{end}}{{define \"T2\"}}TWO {{template \"T1\"}}{{end}}{{template \"T2\"}}";
    assert_eq!(run(t, json!(null)), "TWO ONE");
    assert_eq!(run("{{block \"b\" .}}[{{.}}]{{end}}", json!(5)), "[5]");
    let mut set = match Template::new("root").parse("") {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    if let Err(e) = set.add_parse(
        "file1",
        "{{ define \"slack.title\" }}{{ .Status | toUpper }}{{ end }}",
    ) {
        panic!("{e}");
    }
    assert!(set.has_template("slack.title"));
    let out = set.execute_template("slack.title", &Value::from(json!({"Status": "firing"})));
    assert_eq!(out.ok().as_deref(), Some("FIRING"));
}

#[test]
fn go_number_printing() {
    assert_eq!(run("{{ .V }}", json!({"V": 0.95})), "0.95");
    assert_eq!(run("{{ .V }}", json!({"V": 1000000.0})), "1e+06");
    assert_eq!(run("{{ .V }}", json!({"V": 1000000})), "1000000");
    assert_eq!(
        run("{{ 1.5 }} {{ 0x10 }} {{ 'a' }} {{ 1e3 }}", json!(null)),
        "1.5 16 97 1000"
    );
    assert_eq!(prom("{{ $value }}", json!({}), f64::INFINITY), "+Inf");
    assert_eq!(prom("{{ $value }}", json!({}), f64::NAN), "NaN");
}

#[test]
fn prometheus_rule_templates() {
    let labels = json!({"instance": "host1:9100", "job": "node"});
    assert_eq!(
        prom(
            "{{ $labels.instance }} of job {{ $labels.job }} has been down",
            labels.clone(),
            1.0
        ),
        "host1:9100 of job node has been down"
    );
    assert_eq!(
        prom("{{ $value | humanize }}", labels.clone(), 1234567.0),
        "1.235M"
    );
    assert_eq!(
        prom("{{ humanizePercentage $value }}", labels.clone(), 0.8534),
        "85.34%"
    );
    assert_eq!(
        prom("{{ $value | humanizeDuration }}", labels.clone(), 3725.0),
        "1h 2m 5s"
    );
    assert_eq!(
        prom("{{ printf \"%.2f\" $value }}", labels.clone(), 2.0 / 3.0),
        "0.67"
    );
    assert_eq!(
        prom("{{ $externalLabels.cluster }}", labels.clone(), 0.0),
        "c1"
    );
    assert_eq!(
        prom("{{ $labels.instance | stripPort }}", labels.clone(), 0.0),
        "host1"
    );
    assert_eq!(
        prom(
            "{{ range $k, $v := $labels }}{{ $k }}={{ $v }} {{ end }}",
            labels.clone(),
            0.0
        ),
        "instance=host1:9100 job=node "
    );
    assert_eq!(
        prom(
            "{{ if gt $value 0.9 }}critical{{ else }}warning{{ end }}",
            labels.clone(),
            0.95
        ),
        "critical"
    );
    assert_eq!(
        prom(
            "{{ reReplaceAll \"(.*):(.*)\" \"$1\" $labels.instance }}",
            labels.clone(),
            0.0
        ),
        "host1"
    );
    assert_eq!(
        prom(
            "{{ if match \"^host\" $labels.instance }}ok{{ end }}",
            labels,
            0.0
        ),
        "ok"
    );
}

#[test]
fn escapes_and_strings() {
    assert_eq!(run("{{ html \"<b>\" }}", json!(null)), "&lt;b&gt;");
    assert_eq!(run("{{ \"a b\" | urlquery }}", json!(null)), "a+b");
    assert_eq!(run("{{ js \"it's\" }}", json!(null)), "it\\'s");
    assert_eq!(run("{{ print 1 2 \"x\" }}", json!(null)), "1 2x");
    assert_eq!(run("{{ println \"a\" 1 }}", json!(null)), "a 1\n");
    assert_eq!(
        run("{{ join \", \" .L }}", json!({"L": ["a", "b"]})),
        "a, b"
    );
    assert_eq!(
        run("{{ title \"hello world\" | toUpper }}", json!(null)),
        "HELLO WORLD"
    );
    assert_eq!(run("{{ `raw\\n` }}", json!(null)), "raw\\n");
    assert_eq!(run("{{ \"tab\\there\" }}", json!(null)), "tab\there");
    assert_eq!(run("{{ trimSpace \"  x \" }}", json!(null)), "x");
}

#[test]
fn custom_funcs_and_resolver() {
    let resolver: Resolver = Arc::new(|recv, name, args| {
        match (recv, name) {
        (Value::Array(alerts), "Firing") => Some(Ok(Value::Array(
            alerts
                .iter()
                .filter(|a| matches!(a, Value::Map(m) if m.get("Status") == Some(&Value::from("firing"))))
                .cloned()
                .collect(),
        ))),
        (Value::Map(m), "SortedPairs") => Some(Ok(Value::Array(
            m.iter()
                .map(|(k, v)| Value::from(json!({"Name": k, "Value": v.to_json()})))
                .collect(),
        ))),
        (Value::Map(m), "Remove") => {
            let Some(Value::Array(names)) = args.first() else {
                return Some(Err("Remove needs a list".into()));
            };
            let mut m = m.clone();
            for n in names {
                m.remove(&n.to_go_string());
            }
            Some(Ok(Value::Map(m)))
        }
        _ => None,
    }
    });
    let t = Template::new("t")
        .func("double", |a| {
            Ok(Value::Float(funcs::to_float(&a[0])? * 2.0))
        })
        .resolver(resolver)
        .parse(concat!(
            "{{ len .Alerts.Firing }} firing; ",
            "{{ range .Labels.SortedPairs }}{{ .Name }}={{ .Value }} {{ end }}; ",
            "{{ (.Labels.Remove (stringSlice \"a\")).b }}; {{ 21 | double }}"
        ));
    let t = match t {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let data = json!({"Alerts": [{"Status": "firing"}, {"Status": "resolved"}], "Labels": {"b": "2", "a": "1"}});
    assert_eq!(
        t.execute_json(&data).ok().as_deref(),
        Some("1 firing; a=1 b=2 ; 2; 42")
    );
}

#[test]
fn errors_are_returned() {
    let p = Template::new("t").parse("line1\n{{ nosuchfunc 1 }}");
    match p {
        Err(e) => {
            assert_eq!(e.line, 2);
            assert!(e.message.contains("nosuchfunc"), "{e}");
        }
        Ok(_) => panic!("expected a parse error"),
    }
    let e = match Template::new("t").parse("a\n  {{ if .X }}") {
        Err(e) => e,
        Ok(_) => panic!("unclosed if must fail"),
    };
    assert_eq!((e.line, e.column), (2, 3), "{e}");
    assert!(e.to_string().starts_with("template: t:2: "), "{e}");
    assert!(Template::new("t").parse("{{ \"unterminated }}").is_err());
    assert!(Template::new("t").parse("{{ end }}").is_err());
    assert!(Template::new("t").parse("{{ .A | }}").is_err());
    assert!(
        exec_err("{{ index .L 5 }}", json!({"L": [1]}))
            .message
            .contains("out of range")
    );
    assert!(
        exec_err("{{ .S.Field }}", json!({"S": "str"}))
            .message
            .contains("can't evaluate field")
    );
    assert!(
        exec_err("{{ humanize \"abc\" }}", json!(null))
            .message
            .contains("humanize")
    );
    assert!(
        exec_err("{{ lt 1 \"a\" }}", json!(null))
            .message
            .contains("incompatible")
    );
    assert!(
        exec_err("{{ template \"nope\" }}", json!(null))
            .message
            .contains("no such template")
    );
    // Unbounded recursion stops with an error instead of overflowing.
    assert!(
        exec_err(
            "{{ define \"r\" }}{{ template \"r\" }}{{ end }}{{ template \"r\" }}",
            json!(null)
        )
        .message
        .contains("depth")
    );
}

proptest! {
    #[test]
    fn parser_never_panics(src in "\\PC{0,80}") {
        let _ = Template::new("p").parse(&src);
    }

    #[test]
    fn templateish_input_never_panics(parts in proptest::collection::vec(prop_oneof![
        Just("{{"), Just("}}"), Just("{{- "), Just(" -}}"), Just("if"), Just("else"), Just("end"),
        Just("range"), Just("$x"), Just(":="), Just("."), Just(".A"), Just("|"), Just("("), Just(")"),
        Just("\""), Just("printf"), Just("1"), Just("/*"), Just("*/"), Just(" "), Just("define"), Just("template"),
    ], 0..30)) {
        let src: String = parts.concat();
        if let Ok(t) = Template::new("p").parse(&src) {
            let _ = t.execute_json(&json!({"A": [1, 2]}));
        }
    }

    #[test]
    fn plain_text_round_trips(text in "[^{}]{0,60}") {
        let out = Template::new("p").parse(&text).map(|t| t.execute(&Value::Nil));
        prop_assert_eq!(out.ok().and_then(Result::ok), Some(text));
    }

    #[test]
    fn float_printing_round_trips(v in proptest::num::f64::NORMAL) {
        // Go's %v is the shortest representation that parses back exactly.
        let s = printf::format_float_v(v);
        prop_assert_eq!(s.parse::<f64>().ok(), Some(v));
    }
}
