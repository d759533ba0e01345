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
            let code = vigil_rules::check_rules_with(&files, &mut out, lint);
            let _ = out.flush();
            code
        }
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
        match Config::load(path) {
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
            Ok(f) => {
                vigil_models::score_csv_reporting(&mut det, std::io::BufReader::new(f), out, on_skip)
            }
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
