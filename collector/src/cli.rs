//! The offline commands: `vigil check config`, `vigil check rules` and
//! `vigil test rules`. Each writes a promtool-like report to stdout/stderr
//! and returns the process exit code.

use std::io::Write as _;
use std::path::PathBuf;

use crate::config::Config;

pub enum Check {
    Config(PathBuf),
    /// Files, promtool's `--lint` value and `--lint-fatal`.
    Rules(Vec<PathBuf>, String, bool),
}

/// `vigil check config FILE` accepts either a Vigil configuration file or an
/// Alertmanager configuration file. The rule: a file with a top-level
/// `route:` or `receivers:` key is an Alertmanager file and gets exactly the
/// checks `vigil serve --alerting-config` runs at start (parse, validation,
/// receivers built, templates read); anything else is a Vigil file. An empty
/// file is neither and fails.
pub fn check(what: Check) -> i32 {
    match what {
        Check::Config(path) => check_config(&path),
        Check::Rules(files, lint, fatal) => {
            let lint = vigil_rules::Lint::parse(&lint, fatal, &mut std::io::stderr());
            let mut out = std::io::stdout().lock();
            let code = check_rules(&files, &mut out, lint);
            let _ = out.flush();
            code
        }
    }
}

/// `vigil check rules FILE…`: every file `serve` would load, each with the
/// loader's verdict. Prometheus rule files get promtool's report unchanged;
/// anomaly rule files (recognised by their content, as `serve` tells them
/// apart) are parsed and validated by the same code as at load, and the
/// anomaly names must be unique across the files given, as `serve`
/// requires. The report has promtool's shape.
pub fn check_rules(
    files: &[PathBuf],
    out: &mut dyn std::io::Write,
    lint: vigil_rules::Lint,
) -> i32 {
    let mut failed = false;
    let mut linted = false;
    // Anomaly name → the file defining it first.
    let mut names: std::collections::BTreeMap<String, String> = Default::default();
    for f in files {
        let text = std::fs::read_to_string(f).ok();
        if !text
            .as_deref()
            .is_some_and(crate::anomaly::is_anomaly_rule_text)
        {
            // promtool's codes: 1 for an invalid file, 3 for lint findings
            // under --lint-fatal.
            match vigil_rules::check_rules_with(std::slice::from_ref(f), out, lint) {
                0 => {}
                3 => linted = true,
                _ => failed = true,
            }
            continue;
        }
        let name = f.display().to_string();
        let _ = writeln!(out, "Checking {name}");
        let mut errors = Vec::new();
        let mut count = 0usize;
        match crate::anomaly::parse_anomaly_rules(&name, text.as_deref().unwrap_or_default()) {
            Ok(parsed) => {
                for rule in parsed.groups.iter().flat_map(|g| &g.rules) {
                    count += 1;
                    if let Some(first) = names.insert(rule.anomaly.clone(), name.clone()) {
                        errors.push(format!(
                            "{name}: anomaly {:?} is also defined in {first}; anomaly names must be unique",
                            rule.anomaly
                        ));
                    }
                }
            }
            Err(e) => errors.push(e),
        }
        if errors.is_empty() {
            let _ = writeln!(out, "  SUCCESS: {count} anomaly rules found");
        } else {
            failed = true;
            let _ = writeln!(out, "  FAILED:");
            for e in errors {
                let _ = writeln!(out, "{e}");
            }
        }
        let _ = writeln!(out);
    }
    if failed {
        1
    } else if linted {
        3
    } else {
        0
    }
}

fn check_config(path: &std::path::Path) -> i32 {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("  FAILED: {}: {e}", path.display());
            return 1;
        }
    };
    println!("Checking {}", path.display());
    // An empty file (or only comments) is neither a valid Vigil nor
    // Alertmanager configuration: Alertmanager refuses it too.
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---")
    {
        eprintln!("  FAILED: {}: the file is empty", path.display());
        return 1;
    }
    let looks_like_alertmanager = text
        .lines()
        .any(|l| l.starts_with("route:") || l.starts_with("receivers:"));
    if looks_like_alertmanager {
        match vigil_alerting::check_config(path) {
            Ok(summary) => {
                println!(
                    "  SUCCESS: {} receivers, {} routes, {} inhibit rules, {} time intervals, {} templates",
                    summary.receivers,
                    summary.routes,
                    summary.inhibit_rules,
                    summary.time_intervals,
                    summary.templates
                );
                0
            }
            Err(e) => {
                eprintln!("  FAILED: {e}");
                1
            }
        }
    } else {
        // The escalation rules name receivers of the Alertmanager file, so
        // they are checked against it, as `vigil serve` does at start.
        let loaded = Config::load(path)
            .map_err(|e| e.to_string())
            .and_then(|cfg| {
                if cfg.alerting.escalations.is_empty() {
                    return Ok(cfg);
                }
                let am = match &cfg.alerting_config {
                    Some(p) => vigil_alerting::load_config(p).map_err(|e| e.to_string())?,
                    None => vigil_alerting::AlertingConfig::default_config(),
                };
                cfg.escalations(&am)?;
                Ok(cfg)
            });
        match loaded {
            Ok(_) => {
                println!(
                    "  SUCCESS: {} is a valid Vigil configuration",
                    path.display()
                );
                0
            }
            Err(e) => {
                eprintln!("  FAILED: {e}");
                1
            }
        }
    }
}

/// `vigil test rules FILE…`.
pub fn test_rules(files: &[PathBuf]) -> i32 {
    let mut out = std::io::stdout().lock();
    let code = vigil_rules::test_rules(files, &mut out);
    let _ = out.flush();
    code
}

/// `vigil anomaly score --input SERIES.csv [--rule FILE]`.
pub fn anomaly_score(input: &std::path::Path, rule: Option<&std::path::Path>) -> i32 {
    let cfg = match rule {
        None => vigil_models::DetectorConfig::default(),
        Some(path) => match crate::anomaly::detector_config_from_rule_file(path) {
            Ok(cfg) => cfg,
            Err(e) => {
                eprintln!("vigil: {e}");
                return 1;
            }
        },
    };
    let mut det = match vigil_models::StreamingDetector::new(cfg) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("vigil: {e}");
            return 1;
        }
    };
    let stdout = std::io::stdout().lock();
    let out = std::io::BufWriter::new(stdout);
    // Each skipped line is named (up to a bound, so a file of garbage does
    // not flood the terminal); the summary counts them all.
    const NAMED_SKIPS: usize = 100;
    let mut named = 0usize;
    let source = input.display().to_string();
    let on_skip = |s: &vigil_models::SkippedLine| {
        named += 1;
        if named <= NAMED_SKIPS {
            eprintln!("vigil: {source}: {s}");
        } else if named == NAMED_SKIPS + 1 {
            eprintln!("vigil: {source}: more lines skipped; see the summary");
        }
    };
    let result = if input.as_os_str() == "-" {
        vigil_models::score_csv_reporting(&mut det, std::io::stdin().lock(), out, on_skip)
    } else {
        match std::fs::File::open(input) {
            Ok(f) => vigil_models::score_csv_reporting(
                &mut det,
                std::io::BufReader::new(f),
                out,
                on_skip,
            ),
            Err(e) => {
                eprintln!("vigil: {}: {e}", input.display());
                return 1;
            }
        }
    };
    match result {
        Ok(summary) => {
            let skipped = if summary.skipped.is_empty() {
                String::new()
            } else {
                let parts: Vec<String> = summary
                    .skipped
                    .iter()
                    .map(|(reason, n)| format!("{n} {reason}"))
                    .collect();
                format!(
                    ", {} lines skipped ({})",
                    summary.skipped_total(),
                    parts.join(", ")
                )
            };
            eprintln!(
                "{} rows, {} scored, {} anomalous{skipped}",
                summary.rows, summary.scored, summary.anomalies
            );
            0
        }
        Err(e) => {
            eprintln!("vigil: {}: {e}", input.display());
            1
        }
    }
}

/// `vigil slo generate SPEC`: the rule file on stdout, or the spec's error
/// on stderr and exit code 1.
pub fn slo_generate(spec: &std::path::Path) -> i32 {
    let name = spec.to_string_lossy();
    let text = match std::fs::read_to_string(spec) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vigil slo generate: {name}: {e}");
            return 1;
        }
    };
    match vigil_rules::slo::generate(&name, &text) {
        Ok(rules) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(rules.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("vigil slo generate: writing the rules: {e}");
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("vigil slo generate: {e}");
            1
        }
    }
}

/// A report period's end: `now`, RFC 3339, Unix seconds, or `-DURATION`
/// before now.
pub fn parse_report_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_ms);
    }
    if let Some(ago) = s.strip_prefix('-').filter(|d| {
        d.starts_with(|c: char| c.is_ascii_digit()) && d.contains(|c: char| c.is_ascii_alphabetic())
    }) {
        return crate::params::parse_duration_param(ago)
            .map(|d| now_ms - d)
            .map_err(|e| format!("{s:?}: {e}"));
    }
    crate::params::parse_time(s).map_err(|e| format!("{s:?}: {e}"))
}

/// `vigil report`: the report over `[from, to]` from the API at `url`, on
/// stdout. Exit code 1 when the period or the API is unusable; sections
/// the API cannot answer are listed in the report itself.
pub fn report(
    url: &str,
    token_file: Option<&std::path::Path>,
    from: &str,
    to: &str,
    format: &str,
) -> i32 {
    let fail = |e: String| {
        eprintln!("vigil report: {e}");
        1
    };
    let now = crate::params::now_ms();
    let (from_ms, to_ms) = match (parse_report_time(from, now), parse_report_time(to, now)) {
        (Ok(f), Ok(t)) if f < t => (f, t),
        (Ok(_), Ok(_)) => return fail("--from must be before --to".into()),
        (Err(e), _) => return fail(format!("--from {e}")),
        (_, Err(e)) => return fail(format!("--to {e}")),
    };
    let format = match format.parse::<crate::report::Format>() {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let token = match token_file.map(std::fs::read_to_string).transpose() {
        Ok(t) => t.map(|t| t.trim().to_string()),
        Err(e) => return fail(format!("--token-file: {e}")),
    };
    let source = match crate::report::source::HttpSource::new(
        url,
        token,
        std::time::Duration::from_secs(120),
    ) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // A source that answers nothing at all is a wrong URL, not an empty
    // period.
    if let Err(e) = crate::report::Source::instant(&source, "vector(1)", to_ms) {
        return fail(e);
    }
    let r = crate::report::build(&source, from_ms, to_ms);
    let mut out = std::io::stdout().lock();
    match out
        .write_all(crate::report::render(&r, format).as_bytes())
        .and_then(|()| out.flush())
    {
        Ok(()) => 0,
        Err(e) => fail(format!("writing the report: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(files: &[PathBuf]) -> (i32, String) {
        let mut out = Vec::new();
        let code = check_rules(files, &mut out, vigil_rules::Lint::default());
        (code, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn check_rules_takes_every_file_serve_loads_with_serves_verdict() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let shipped = root.join("rules/anomaly/default.anomaly.yml");
        let (code, text) = run(std::slice::from_ref(&shipped));
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("  SUCCESS: 3 anomaly rules found"), "{text}");

        let dir = tempfile::tempdir().expect("tempdir");
        let threshold = dir.path().join("t.rules.yml");
        std::fs::write(
            &threshold,
            "groups:\n  - name: t\n    rules:\n      - alert: Down\n        expr: up == 0\n",
        )
        .expect("write");
        // Threshold files: promtool's report, unchanged.
        let mut promtool_style = Vec::new();
        vigil_rules::check_rules(std::slice::from_ref(&threshold), &mut promtool_style);
        let (code, text) = run(std::slice::from_ref(&threshold));
        assert_eq!((code, text.as_bytes()), (0, promtool_style.as_slice()));

        // A typo in an anomaly file: refused here as serve refuses it.
        let typo = dir.path().join("typo.anomaly.yml");
        let good = std::fs::read_to_string(&shipped).expect("read");
        std::fs::write(&typo, good.replace("n_estimators", "n_trees")).expect("write");
        let (code, text) = run(&[threshold.clone(), typo.clone()]);
        assert_eq!(code, 1, "{text}");
        let pattern = typo.display().to_string();
        let serve = crate::anomaly::load_rule_files(&[pattern]).expect_err("serve refuses");
        assert!(
            text.contains("  FAILED:\n") && text.contains(&serve),
            "{text}\n{serve}"
        );

        // Names shared between two anomaly files: serve refuses the set.
        let copy = dir.path().join("copy.anomaly.yml");
        std::fs::write(&copy, &good).expect("write");
        let (code, text) = run(&[shipped, copy]);
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("anomaly names must be unique"), "{text}");
    }
}
