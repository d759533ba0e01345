//! Runs every `.test` golden file under `testdata/` (Prometheus's
//! `promqltest` format) through [`vigil_promql::promqltest`].

use std::path::Path;

#[test]
fn golden_files() {
    let dir = std::env::var("PROMQL_TEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read testdata")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let mut failures = Vec::new();
    let mut evals = 0;
    for f in &files {
        match vigil_promql::promqltest::run_file(f) {
            Ok(s) => evals += s.evals,
            Err(errs) => failures.extend(errs),
        }
    }
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    eprintln!(
        "{} files, {evals} passing evals, {} failures",
        files.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} golden-file failures",
        failures.len()
    );
}
