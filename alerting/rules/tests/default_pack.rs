//! The default rule pack in `rules/` (repository root): every rule file is
//! accepted by `promtool check rules` and by our `check_rules`; every test
//! file passes under `promtool test rules` and our `test_rules`; every file
//! in `rules/tests/failing/` fails under both; and every alert of the pack
//! is exercised by some test.

use std::path::{Path, PathBuf};
use std::process::Command;

fn pack_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn promtool(args: &[&str], file: &Path) -> (i32, String) {
    let out = Command::new("promtool")
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("promtool must be installed (/usr/bin/promtool): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn ours_check(file: &Path) -> (i32, String) {
    let mut buf = Vec::new();
    let code = vigil_rules::check_rules(&[file], &mut buf);
    (code, String::from_utf8_lossy(&buf).to_string())
}

fn ours_test(file: &Path) -> (i32, String) {
    let mut buf = Vec::new();
    let code = vigil_rules::test_rules(&[file], &mut buf);
    (code, String::from_utf8_lossy(&buf).to_string())
}

#[test]
fn rule_files_pass_promtool_and_check_rules() {
    let files = files_in(&pack_dir(), ".rules.yml");
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name())
        .map(|n| n.to_string_lossy().to_string())
        .collect();
    for expected in [
        "api.rules.yml",
        "llm.rules.yml",
        "postgres.rules.yml",
        "redis.rules.yml",
        "system.rules.yml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from rules/"
        );
    }
    for f in &files {
        let (code, text) = promtool(&["check", "rules"], f);
        assert_eq!(code, 0, "promtool rejects {}:\n{text}", f.display());
        let (code, text) = ours_check(f);
        assert_eq!(code, 0, "check_rules rejects {}:\n{text}", f.display());
        assert!(text.contains("  SUCCESS: "), "{text}");
    }
    // The whole pack also loads as one rule set.
    let pattern = format!("{}/*.rules.yml", pack_dir().display());
    match vigil_rules::load_rule_files(&[pattern]) {
        Ok(set) => assert!(set.rule_count() >= 30, "{} rules", set.rule_count()),
        Err(e) => panic!("{e:?}"),
    }
}

#[test]
fn unit_tests_pass_under_promtool_and_test_rules() {
    let files = files_in(&pack_dir().join("tests"), ".test.yml");
    assert!(files.len() >= 5);
    for f in &files {
        let (code, text) = promtool(&["test", "rules"], f);
        assert_eq!(code, 0, "promtool fails {}:\n{text}", f.display());
        let (code, text) = ours_test(f);
        assert_eq!(code, 0, "test_rules fails {}:\n{text}", f.display());
    }
}

#[test]
fn failing_tests_fail_under_both() {
    let files = files_in(&pack_dir().join("tests/failing"), ".test.yml");
    assert!(files.len() >= 5);
    for f in &files {
        let (code, text) = promtool(&["test", "rules"], f);
        assert_eq!(code, 1, "promtool passes {}:\n{text}", f.display());
        let (code, text) = ours_test(f);
        assert_eq!(code, 1, "test_rules passes {}:\n{text}", f.display());
        assert!(text.contains("  FAILED:"), "{text}");
    }
}

#[test]
fn every_alert_of_the_pack_is_tested() {
    let tests: String = files_in(&pack_dir().join("tests"), ".test.yml")
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    let pattern = format!("{}/*.rules.yml", pack_dir().display());
    let set = match vigil_rules::load_rule_files(&[pattern]) {
        Ok(s) => s,
        Err(e) => panic!("{e:?}"),
    };
    for g in &set.groups {
        for r in &g.rules {
            if matches!(r.kind, vigil_rules::RuleKind::Alerting(_)) {
                let needle = format!("alertname: {}\n", r.name);
                let cases = tests.matches(&needle).count();
                // At least one case where it fires and one where it is quiet.
                assert!(cases >= 2, "alert {} has {cases} test cases", r.name);
            } else {
                assert!(
                    tests.contains(&r.name)
                        || set
                            .groups
                            .iter()
                            .flat_map(|g| &g.rules)
                            .any(|a| a.expr_text.contains(&r.name)),
                    "recording rule {} unused and untested",
                    r.name
                );
            }
        }
    }
}
