//! `check_rules` against `promtool check rules` on the same files: same
//! exit code and the same set of reasons; wherever promtool gives a single
//! real position (`line:col`, not its `0:0` for absent nodes or its double
//! position for record+alert), ours is the same. Wording that comes from a
//! parser (after "could not parse expression:", "template:", "yaml:") may
//! differ.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// Splits `file: 5:17: reason` into the positions and the reason.
fn split(line: &str, file: &str) -> (Vec<String>, String) {
    let mut rest = line
        .strip_prefix(file)
        .and_then(|r| r.strip_prefix(": "))
        .unwrap_or(line);
    let mut positions = Vec::new();
    while let Some((head, tail)) = rest.split_once(": ") {
        let is_pos = head.split_once(':').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
        if !is_pos {
            break;
        }
        positions.push(head.to_string());
        rest = tail;
    }
    (positions, comparable(rest))
}

fn comparable(line: &str) -> String {
    let mut l = line.to_string();
    for cut in [
        "could not parse expression:",
        "template:",
        "yaml:",
        "not a valid duration string",
    ] {
        if let Some(i) = l.find(cut) {
            l.truncate(i + cut.len());
        }
    }
    l
}

#[test]
fn same_report_as_promtool_check_rules() {
    let mut positions_compared = 0;
    for f in fixtures() {
        let out = Command::new("promtool")
            .args(["check", "rules"])
            .arg(&f)
            .output()
            .unwrap_or_else(|e| panic!("promtool must be installed: {e}"));
        let theirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
            .filter(|l| !l.trim().is_empty())
            .map(comparable)
            .collect();
        let mut buf = Vec::new();
        let code = vigil_rules::check_rules(&[&f], &mut buf);
        let ours: Vec<String> = String::from_utf8_lossy(&buf)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(comparable)
            .collect();
        assert_eq!(code, out.status.code().unwrap_or(-1), "{}", f.display());
        let file = f.display().to_string();
        let mut t: Vec<(Vec<String>, String)> = theirs.iter().map(|l| split(l, &file)).collect();
        let mut o: Vec<(Vec<String>, String)> = ours.iter().map(|l| split(l, &file)).collect();
        t.sort_by(|a, b| a.1.cmp(&b.1));
        o.sort_by(|a, b| a.1.cmp(&b.1));
        let reasons =
            |v: &[(Vec<String>, String)]| v.iter().map(|x| x.1.clone()).collect::<Vec<_>>();
        assert_eq!(
            reasons(&o),
            reasons(&t),
            "{}\nours: {ours:#?}\ntheirs: {theirs:#?}",
            f.display()
        );
        for ((op, reason), (tp, _)) in o.iter().zip(&t) {
            if tp.len() == 1 && tp[0] != "0:0" {
                assert_eq!(op, tp, "{}: position of {reason:?}", f.display());
                positions_compared += 1;
            }
        }
    }
    assert!(
        positions_compared >= 5,
        "only {positions_compared} positions compared"
    );
}
