//! Differential test of `test_rules` against promtool 2.42 (installed at
//! /usr/bin/promtool): every fixture under `tests/fixtures/unittest` must get
//! the same verdict, and where the failure text does not depend on PromQL
//! parser wording, the same `FAILED:` report line for line.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unittest");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yml"))
        .collect();
    v.sort();
    v
}

/// promtool prints the report on stdout and the failures on stderr; the
/// comparable part is the non-blank stderr lines.
fn promtool(file: &Path) -> (i32, Vec<String>) {
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("promtool must be installed (/usr/bin/promtool): {e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        err.lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
    )
}

fn ours(file: &Path) -> (i32, Vec<String>) {
    let mut buf = Vec::new();
    let code = vigil_rules::test_rules(&[file], &mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !l.starts_with("Unit Testing:") && *l != "  SUCCESS" && !l.starts_with("  WARNING:")
        })
        .map(str::to_string)
        .collect();
    (code, lines)
}

#[test]
fn same_verdicts_and_reports_as_promtool() {
    let files = fixtures();
    assert!(files.len() >= 6, "fixtures missing");
    let mut passing = 0;
    for f in &files {
        let (pcode, plines) = promtool(f);
        let (ocode, olines) = ours(f);
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        assert_eq!(
            ocode, pcode,
            "{name}: exit code differs\npromtool: {plines:#?}\nours: {olines:#?}"
        );
        assert_eq!(
            pcode == 0,
            name.starts_with("pass_"),
            "{name}: fixture naming says the verdict"
        );
        if pcode == 0 {
            passing += 1;
            continue;
        }
        // Parse-error wording comes from the PromQL parser, not from us.
        if name == "fail_bad_rules.test.yml" {
            assert_eq!(
                olines.len(),
                plines.len(),
                "{name}\npromtool: {plines:#?}\nours: {olines:#?}"
            );
            let prefix = |l: &str| {
                l.split("could not parse expression")
                    .next()
                    .unwrap_or("")
                    .to_string()
            };
            assert_eq!(
                olines.iter().map(|l| prefix(l)).collect::<Vec<_>>(),
                plines.iter().map(|l| prefix(l)).collect::<Vec<_>>()
            );
            continue;
        }
        assert_eq!(olines, plines, "{name}: report differs");
    }
    assert!(passing >= 2);
}
