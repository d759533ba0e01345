//! `vigil check rules FILE…`: promtool's `check rules` command.
//!
//! Output, per file: `Checking FILE`, then `  SUCCESS: N rules found` or
//! `  FAILED:` followed by one error per line (file, line:column, reason),
//! then a blank line; duplicate rules (same name and labels) are a lint
//! error as promtool reports it (`--lint`, default `duplicate-rules`). Exit
//! code 1 when a file is invalid, 3 for lint findings with `--lint-fatal`,
//! else 0 — promtool's codes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::file::{GroupSpec, parse_rule_file};

/// promtool's `--lint` / `--lint-fatal` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lint {
    /// Report rules with the same name and labels (`duplicate-rules`).
    pub duplicates: bool,
    /// A lint finding makes the exit code 3.
    pub fatal: bool,
}

impl Default for Lint {
    /// promtool's defaults: `--lint=duplicate-rules`, not fatal.
    fn default() -> Self {
        Self {
            duplicates: true,
            fatal: false,
        }
    }
}

impl Lint {
    /// Reads promtool's `--lint` value (`all`, `duplicate-rules`, `none`,
    /// comma-separated); unknown options are warned about on `warn`, as
    /// promtool does, and ignored.
    pub fn parse(value: &str, fatal: bool, warn: &mut dyn Write) -> Self {
        let mut duplicates = false;
        for opt in value.split(',') {
            match opt {
                "all" | "duplicate-rules" => duplicates = true,
                "none" => {}
                other => {
                    let _ = writeln!(warn, "WARNING: unknown lint option {other}");
                }
            }
        }
        Self { duplicates, fatal }
    }
}

/// Exit code for lint findings under `--lint-fatal` (promtool's 3).
pub const LINT_ERROR_EXIT: i32 = 3;

/// Checks each file with promtool's default lint; writes promtool's report
/// to `out`; returns the exit code.
pub fn check_rules<P: AsRef<Path>>(files: &[P], out: &mut dyn Write) -> i32 {
    check_rules_with(files, out, Lint::default())
}

/// [`check_rules`] with explicit lint settings: 1 when a file is invalid,
/// else 3 when lint found something and `fatal`, else 0.
pub fn check_rules_with<P: AsRef<Path>>(files: &[P], out: &mut dyn Write, lint: Lint) -> i32 {
    let mut invalid = false;
    let mut linted = false;
    for f in files {
        let f = f.as_ref();
        let _ = writeln!(out, "Checking {}", f.display());
        match parse_rule_file(f) {
            Ok(groups) => {
                let n: usize = groups.iter().map(|g| g.rules.len()).sum();
                match lint
                    .duplicates
                    .then(|| duplicates_report(&groups))
                    .flatten()
                {
                    Some(report) => {
                        linted = true;
                        let _ = writeln!(out, "  FAILED:");
                        let _ = writeln!(out, "{report}");
                    }
                    None => {
                        let _ = writeln!(out, "  SUCCESS: {n} rules found");
                    }
                }
            }
            Err(errs) => {
                invalid = true;
                let _ = writeln!(out, "  FAILED:");
                for e in errs {
                    let _ = writeln!(out, "{e}");
                }
            }
        }
        let _ = writeln!(out);
    }
    if invalid {
        1
    } else if linted && lint.fatal {
        LINT_ERROR_EXIT
    } else {
        0
    }
}

/// promtool's duplicate-rules lint error, or `None` without duplicates.
fn duplicates_report(groups: &[GroupSpec]) -> Option<String> {
    let mut counts: BTreeMap<(String, Vec<(String, String)>), usize> = BTreeMap::new();
    for g in groups {
        for r in &g.rules {
            *counts
                .entry((r.name.clone(), r.labels.clone()))
                .or_default() += 1;
        }
    }
    let dups: Vec<_> = counts
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k)
        .collect();
    if dups.is_empty() {
        return None;
    }
    let mut s = format!("lint error {} duplicate rule(s) found.\n", dups.len());
    for (metric, labels) in dups {
        s.push_str(&format!("Metric: {metric}\nLabel(s):\n"));
        for (k, v) in labels {
            s.push_str(&format!("\t{k}: {v}\n"));
        }
    }
    s.push_str("Might cause inconsistency while recording expressions");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(files: &[(&str, &str)]) -> (i32, String) {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let paths: Vec<_> = files
            .iter()
            .map(|(name, text)| {
                let p = dir.path().join(name);
                if let Err(e) = std::fs::write(&p, text) {
                    panic!("{e}");
                }
                p
            })
            .collect();
        let mut out = Vec::new();
        let code = check_rules(&paths, &mut out);
        let text = String::from_utf8_lossy(&out).replace(&format!("{}/", dir.path().display()), "");
        (code, text)
    }

    #[test]
    fn success_and_failure_reports() {
        let good = "groups:\n  - name: g\n    rules:\n      - record: a:b\n        expr: up\n      - alert: X\n        expr: up == 0\n";
        let bad = "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: up ==\n";
        let (code, text) = run(&[("good.yml", good)]);
        assert_eq!(code, 0);
        assert_eq!(text, "Checking good.yml\n  SUCCESS: 2 rules found\n\n");
        let (code, text) = run(&[("good.yml", good), ("bad.yml", bad)]);
        assert_eq!(code, 1);
        assert!(text.starts_with("Checking good.yml\n  SUCCESS: 2 rules found\n\nChecking bad.yml\n  FAILED:\nbad.yml: 5:15: group \"g\", rule 1, \"X\": could not parse expression: "), "{text}");
    }

    #[test]
    fn missing_file_fails() {
        let mut out = Vec::new();
        assert_eq!(check_rules(&["/nonexistent/rules.yml"], &mut out), 1);
        assert!(String::from_utf8_lossy(&out).contains("FAILED"));
    }

    /// `--lint` / `--lint-fatal` give promtool 2.42's exit codes, checked
    /// against the real promtool.
    #[test]
    fn lint_exit_codes_match_promtool() {
        if std::process::Command::new("promtool")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("promtool not installed; skipping the comparison");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let dup = dir.path().join("dup.yml");
        std::fs::write(&dup, "groups:\n  - name: g\n    rules:\n      - record: a:b\n        expr: up\n      - record: a:b\n        expr: up\n").expect("write");
        let bad = dir.path().join("bad.yml");
        std::fs::write(
            &bad,
            "groups:\n  - name: g\n    rules:\n      - record: a:b\n        expr: up ==\n",
        )
        .expect("write");
        let cases: &[(&[&str], &[&std::path::Path])] = &[
            (&[], &[&dup]),
            (&["--lint-fatal"], &[&dup]),
            (&["--lint=none", "--lint-fatal"], &[&dup]),
            (&["--lint=all", "--lint-fatal"], &[&dup]),
            (&["--lint=duplicate-rules"], &[&dup]),
            (&["--lint-fatal"], &[&dup, &bad]),
            (&["--lint=bogus", "--lint-fatal"], &[&dup]),
        ];
        for (flags, files) in cases {
            let out = std::process::Command::new("promtool")
                .args(["check", "rules"])
                .args(*flags)
                .args(*files)
                .output()
                .expect("promtool runs");
            let value = flags
                .iter()
                .find_map(|f| f.strip_prefix("--lint="))
                .unwrap_or("duplicate-rules");
            let fatal = flags.contains(&"--lint-fatal");
            let mut sink = Vec::new();
            let lint = Lint::parse(value, fatal, &mut sink);
            let code = check_rules_with(files, &mut sink, lint);
            assert_eq!(Some(code), out.status.code(), "{flags:?} {files:?}");
        }
    }

    #[test]
    fn duplicates_are_reported_not_fatal() {
        let dup = "groups:\n  - name: g\n    rules:\n      - record: a:b\n        expr: up\n      - record: a:b\n        expr: up\n";
        let (code, text) = run(&[("dup.yml", dup)]);
        assert_eq!(code, 0);
        assert!(
            text.contains(
                "  FAILED:\nlint error 1 duplicate rule(s) found.\nMetric: a:b\nLabel(s):\n"
            ),
            "{text}"
        );
    }
}
