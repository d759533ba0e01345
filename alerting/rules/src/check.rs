//! `vigil check rules FILE…`: promtool's `check rules` command.
//!
//! Output, per file: `Checking FILE`, then `  SUCCESS: N rules found` or
//! `  FAILED:` followed by one error per line (file, line:column, reason),
//! then a blank line; duplicate rules (same name and labels) are reported
//! as promtool's lint does. Exit code 0 when every file is valid, else 1.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::file::{GroupSpec, parse_rule_file};

/// Checks each file; writes promtool's report to `out`; returns the exit
/// code.
pub fn check_rules<P: AsRef<Path>>(files: &[P], out: &mut dyn Write) -> i32 {
    let mut failed = false;
    for f in files {
        let f = f.as_ref();
        let _ = writeln!(out, "Checking {}", f.display());
        match parse_rule_file(f) {
            Ok(groups) => {
                let n: usize = groups.iter().map(|g| g.rules.len()).sum();
                report_duplicates(&groups, out);
                let _ = writeln!(out, "  SUCCESS: {n} rules found");
            }
            Err(errs) => {
                failed = true;
                let _ = writeln!(out, "  FAILED:");
                for e in errs {
                    let _ = writeln!(out, "{e}");
                }
            }
        }
        let _ = writeln!(out);
    }
    i32::from(failed)
}

fn report_duplicates(groups: &[GroupSpec], out: &mut dyn Write) {
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
        return;
    }
    let _ = writeln!(out, "{} duplicate rule(s) found.", dups.len());
    for (metric, labels) in dups {
        let _ = writeln!(out, "Metric: {metric}\nLabel(s):");
        for (k, v) in labels {
            let _ = writeln!(out, "\t{k}: {v}");
        }
    }
    let _ = writeln!(
        out,
        "Might cause inconsistency while recording expressions."
    );
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

    #[test]
    fn duplicates_are_reported_not_fatal() {
        let dup = "groups:\n  - name: g\n    rules:\n      - record: a:b\n        expr: up\n      - record: a:b\n        expr: up\n";
        let (code, text) = run(&[("dup.yml", dup)]);
        assert_eq!(code, 0);
        assert!(
            text.contains("1 duplicate rule(s) found.\nMetric: a:b\nLabel(s):\n"),
            "{text}"
        );
    }
}
