//! `vigil slo generate` through the real binary: the shipped spec
//! regenerates exactly the shipped rule file (so the two cannot drift),
//! Prometheus's own `promtool check rules` accepts the output, and a bad
//! spec is refused with its file, position and reason.

use std::process::Command;

use vigil_e2e::{binary, workspace_root};

fn generate(spec: &std::path::Path) -> std::process::Output {
    let vigil = binary("vigil").expect("vigil binary");
    Command::new(vigil)
        .args(["slo", "generate"])
        .arg(spec)
        .output()
        .expect("running vigil slo generate")
}

#[test]
fn shipped_spec_regenerates_the_shipped_rules_and_promtool_accepts_them() {
    let root = workspace_root();
    let specs: Vec<_> = std::fs::read_dir(root.join("rules/slo"))
        .expect("rules/slo")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".slo.yml"))
        .collect();
    assert_eq!(specs.len(), 1, "one spec, rules/slo/api.slo.yml: {specs:?}");
    let out = generate(&specs[0]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shipped = std::fs::read_to_string(root.join("rules/slo.rules.yml")).expect("shipped rules");
    let generated = String::from_utf8(out.stdout).expect("UTF-8 rules");
    assert!(
        generated == shipped,
        "rules/slo.rules.yml is stale: run `vigil slo generate rules/slo/api.slo.yml > rules/slo.rules.yml`"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("slo.rules.yml");
    std::fs::write(&file, &generated).expect("write rules");
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool must be installed (Debian package prometheus)");
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "promtool: {text}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(text.contains("SUCCESS: 30 rules found"), "{text}");
}

#[test]
fn bad_spec_is_refused_with_position_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("bad.slo.yml");
    std::fs::write(
        &spec,
        "service: api\nslos:\n  - name: availability\n    objectve: 99.9\n    sli:\n      total_query: x\n",
    )
    .expect("write spec");
    let out = generate(&spec);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no rules on a refused spec");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.slo.yml:4:"), "{err}");
    assert!(err.contains("objectve"), "{err}");

    std::fs::write(
        &spec,
        "service: api\nslos:\n  - name: availability\n    objective: 100\n    sli:\n      error_query: e[{{.window}}]\n      total_query: t[{{.window}}]\n",
    )
    .expect("write spec");
    let out = generate(&spec);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("slo \"availability\": objective 100"), "{err}");
}
