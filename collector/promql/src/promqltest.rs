//! Prometheus's `.test` golden-file format, and the series notation shared
//! with promtool's rule unit tests.
//!
//! A script is a sequence of commands:
//!
//! ```text
//! # comment
//! load 5m
//!   http_requests{job="api"} 0+10x10 _ stale
//! clear
//! eval instant at 10m sum(http_requests)
//!   {} 20
//! eval_ordered instant at 10m sort(http_requests)
//!   http_requests{job="api"} 20
//! eval_fail instant at 0 1 + "a"
//! eval range from 0 to 10m step 5m http_requests
//!   http_requests{job="api"} 0 10 20
//! ```
//!
//! Series values use promtool's expanding notation: `1 2 3`, `1+2x3`
//! (`1 3 5 7`), `1-2x3`, `1x3`, `_` (no sample), `_x3`, `stale`, `Inf`,
//! `-Inf`, `NaN` and scientific notation.

use std::path::Path;

use vigil_wire::{Labels, METRIC_NAME_LABEL, Sample, stale_nan};

use crate::engine::{Engine, EngineOptions, QueryContext};
use crate::storage::MemStorage;
use crate::value::{Value, format_float};

/// One expanded element of a series' values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeriesValue {
    Value(f64),
    /// `_`: no sample at this step.
    Missing,
    /// `stale`: a stale marker.
    Stale,
}

/// Parses a float as Go's `strconv.ParseFloat` would for test files.
fn parse_number(s: &str) -> Result<f64, String> {
    let t = s.strip_prefix('+').unwrap_or(s);
    t.parse::<f64>()
        .ok()
        .or_else(|| {
            // Go accepts hexadecimal integers in PromQL number literals.
            let (neg, h) = match t.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, t),
            };
            let h = h.strip_prefix("0x").or_else(|| h.strip_prefix("0X"))?;
            let v = i64::from_str_radix(h, 16).ok()? as f64;
            Some(if neg { -v } else { v })
        })
        .ok_or_else(|| format!("invalid number {s:?}"))
}

/// A number in promtool's series notation, read as Prometheus's lexer and
/// `strconv` read it: decimal or float, `Inf`/`NaN`, a sign applied after
/// parsing (`-0` is negative zero), and a leading-zero integer is octal
/// (`010` is 8). Hexadecimal (`0x1F`), binary (`0b11`), `0o17` and digit
/// separators (`1_000`) are syntax errors there.
fn series_number(s: &str) -> Result<f64, String> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let v = if lower == "inf" || lower == "nan" {
        if lower == "inf" {
            f64::INFINITY
        } else {
            f64::NAN
        }
    } else {
        let bad = || format!("bad number syntax: {s:?}");
        if body.is_empty()
            || !body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
            || !body
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        {
            return Err(bad());
        }
        let octal = body.len() > 1
            && body.starts_with('0')
            && body.bytes().all(|b| (b'0'..=b'7').contains(&b));
        if octal {
            i64::from_str_radix(&body[1..], 8).map_err(|_| bad())? as f64
        } else {
            body.parse::<f64>().map_err(|_| bad())?
        }
    };
    Ok(if neg { -v } else { v })
}

/// Splits `a+b` / `a-b` into its two numbers, ignoring exponent signs.
fn split_increment(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    for i in (1..b.len()).rev() {
        if (b[i] == b'+' || b[i] == b'-') && !matches!(b[i - 1], b'e' | b'E') {
            return Some((&s[..i], &s[i..]));
        }
    }
    None
}

/// Expands promtool's series notation (`input_series.values`).
pub fn expand_series_values(notation: &str) -> Result<Vec<SeriesValue>, String> {
    let mut out = Vec::new();
    for tok in notation.split_whitespace() {
        if tok == "_" {
            out.push(SeriesValue::Missing);
            continue;
        }
        if tok == "stale" {
            out.push(SeriesValue::Stale);
            continue;
        }
        // `...xN` repetition; `0xN` too is "0 repeated N times" (promtool
        // 2.42 reads it so, not as a hexadecimal number).
        let rep = tok.rfind('x').filter(|&i| i > 0);
        let rep = match rep {
            Some(i) if tok[i + 1..].chars().all(|c| c.is_ascii_digit()) && i + 1 < tok.len() => {
                Some(i)
            }
            _ => None,
        };
        let Some(xi) = rep else {
            out.push(SeriesValue::Value(series_number(tok)?));
            continue;
        };
        let times: u64 = tok[xi + 1..]
            .parse()
            .map_err(|_| format!("invalid repetition count in {tok:?}"))?;
        let head = &tok[..xi];
        if head == "_" {
            out.extend(std::iter::repeat_n(SeriesValue::Missing, times as usize));
            continue;
        }
        if head == "stale" {
            out.extend(std::iter::repeat_n(SeriesValue::Stale, times as usize + 1));
            continue;
        }
        let (start, inc) = match series_number(head) {
            Ok(v) => (v, 0.0),
            Err(_) => match split_increment(head) {
                Some((a, b)) => (series_number(a)?, series_number(b)?),
                None => return Err(format!("invalid series value {tok:?}")),
            },
        };
        // Repeated addition, exactly as promtool accumulates.
        let mut v = start;
        out.push(SeriesValue::Value(v));
        for _ in 0..times {
            v += inc;
            out.push(SeriesValue::Value(v));
        }
    }
    Ok(out)
}

/// Reads a quoted label value starting at `s[0]` (a quote); returns the
/// value and the remaining input.
fn read_quoted(s: &str) -> Result<(String, &str), String> {
    let mut chars = s.char_indices();
    let Some((_, q)) = chars.next() else {
        return Err("expected a quoted string".into());
    };
    if !matches!(q, '"' | '\'' | '`') {
        return Err(format!("expected a quoted string at {s:?}"));
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        if c == q {
            return Ok((out, &s[i + c.len_utf8()..]));
        }
        if c == '\\' && q != '`' {
            let Some((_, e)) = chars.next() else { break };
            out.push(match e {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                other => other,
            });
        } else {
            out.push(c);
        }
    }
    Err(format!("unterminated string in {s:?}"))
}

fn take_ident(s: &str, metric: bool) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|(i, c)| {
            !(c.is_ascii_alphabetic()
                || *c == '_'
                || (metric && *c == ':')
                || (*i > 0 && c.is_ascii_digit()))
        })
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// Parses a series selector with equality matchers only (`metric{a="b"}`,
/// `{__name__="m"}`), returning the rest of the input too.
fn parse_selector_prefix(s: &str) -> Result<(Labels, &str), String> {
    let s = s.trim_start();
    let (name, mut rest) = take_ident(s, true);
    let mut pairs: Vec<(String, String)> = Vec::new();
    if !name.is_empty() {
        pairs.push((METRIC_NAME_LABEL.to_string(), name.to_string()));
    }
    if let Some(r) = rest.strip_prefix('{') {
        rest = r.trim_start();
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let (lname, r) = take_ident(rest, false);
            if lname.is_empty() {
                return Err(format!("expected a label name in {s:?}"));
            }
            let r = r.trim_start();
            let Some(r) = r.strip_prefix('=') else {
                return Err(format!("only '=' matchers are allowed in series {s:?}"));
            };
            if r.starts_with('=') || r.starts_with('~') {
                return Err(format!("only '=' matchers are allowed in series {s:?}"));
            }
            let (value, r) = read_quoted(r.trim_start())?;
            if pairs.iter().any(|(n, _)| n == lname) {
                return Err(format!("duplicate label {lname:?} in {s:?}"));
            }
            pairs.push((lname.to_string(), value));
            rest = r.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r.trim_start();
            } else if !rest.starts_with('}') {
                return Err(format!("expected ',' or '}}' in {s:?}"));
            }
        }
    } else if name.is_empty() {
        return Err(format!("invalid series selector {s:?}"));
    }
    Ok((Labels::from_pairs(pairs), rest))
}

/// Parses `metric{a="b"}` or `{__name__="m"}` into a label set.
pub fn parse_series_selector(s: &str) -> Result<Labels, String> {
    let (l, rest) = parse_selector_prefix(s)?;
    if !rest.trim().is_empty() {
        return Err(format!(
            "unexpected {:?} after series selector",
            rest.trim()
        ));
    }
    Ok(l)
}

/// Parses a Prometheus duration (`5m`, `1h30m`, `10s`, `100ms`, `0`) or a
/// plain number of seconds, into milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1000.0).round() as i64);
    }
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if n_end == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: i64 = rest[..n_end]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return Err(format!("invalid duration unit in {s:?}")),
        };
        total += n * unit;
        rest = &rest[u_end..];
    }
    Ok(total)
}

/// Prometheus's test comparison: relative error below 1e-6, NaN == NaN.
pub fn almost_equal(a: f64, b: f64) -> bool {
    const EPSILON: f64 = 1e-6;
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < MIN_NORMAL {
        return diff < EPSILON * MIN_NORMAL;
    }
    diff / (a.abs() + b.abs()) < EPSILON
}

/// What a script run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub evals: usize,
}

enum EvalKind {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

struct Expected {
    labels: Option<Labels>,
    values: Vec<SeriesValue>,
}

/// Runs a `.test` script; every failing command is reported (with its line
/// number) rather than stopping at the first.
pub fn run_script(script: &str) -> Result<Summary, Vec<String>> {
    run_script_with(script, EngineOptions::default())
}

/// Runs a `.test` file.
pub fn run_file(path: &Path) -> Result<Summary, Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    run_script(&text).map_err(|errs| {
        errs.into_iter()
            .map(|e| format!("{}:{e}", path.display()))
            .collect()
    })
}

/// Runs a script with specific engine options.
pub fn run_script_with(script: &str, opts: EngineOptions) -> Result<Summary, Vec<String>> {
    let engine = Engine::new(opts);
    let mut storage = MemStorage::new();
    let lines: Vec<&str> = script.lines().collect();
    let mut errors = Vec::new();
    let mut summary = Summary::default();
    let mut i = 0;
    // Lines following a command, up to the next blank line or command.
    let block = |i: &mut usize| -> Vec<(usize, &str)> {
        let mut out = Vec::new();
        while *i + 1 < lines.len() {
            let l = lines[*i + 1];
            let t = l.trim();
            if t.is_empty() || (!l.starts_with(char::is_whitespace) && is_command(t)) {
                break;
            }
            *i += 1;
            if !t.starts_with('#') {
                out.push((*i + 1, t));
            }
        }
        out
    };
    while i < lines.len() {
        let line_no = i + 1;
        let line = lines[i].trim();
        if line.is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match cmd {
            "clear" => storage.clear(),
            "load" => {
                let body = block(&mut i);
                match parse_duration(rest) {
                    Err(e) => errors.push(format!("{line_no}: {e}")),
                    Ok(interval) => {
                        for (n, l) in body {
                            if let Err(e) = load_line(&mut storage, l, interval) {
                                errors.push(format!("{n}: {e}"));
                            }
                        }
                    }
                }
            }
            "eval" | "eval_fail" | "eval_ordered" => {
                let body = block(&mut i);
                summary.evals += 1;
                if let Err(e) = run_eval(&engine, &storage, cmd, rest, &body) {
                    errors.push(format!("{line_no}: {line}: {e}"));
                }
            }
            other => errors.push(format!("{line_no}: unknown command {other:?}")),
        }
        i += 1;
    }
    if errors.is_empty() {
        Ok(summary)
    } else {
        Err(errors)
    }
}

fn is_command(t: &str) -> bool {
    let w = t.split_whitespace().next().unwrap_or("");
    matches!(w, "load" | "clear" | "eval" | "eval_fail" | "eval_ordered")
}

fn load_line(storage: &mut MemStorage, line: &str, interval: i64) -> Result<(), String> {
    let (labels, rest) = parse_selector_prefix(line)?;
    let mut samples = Vec::new();
    for (k, v) in expand_series_values(rest)?.into_iter().enumerate() {
        let t = k as i64 * interval;
        match v {
            SeriesValue::Value(x) => samples.push(Sample::new(t, x)),
            SeriesValue::Stale => samples.push(Sample::new(t, stale_nan())),
            SeriesValue::Missing => {}
        }
    }
    storage.add(labels, samples);
    Ok(())
}

fn parse_eval_header(rest: &str) -> Result<(EvalKind, &str), String> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let skip_words = |n: usize| -> &str {
        let mut r = rest.trim_start();
        for _ in 0..n {
            r = r.trim_start();
            let end = r.find(char::is_whitespace).unwrap_or(r.len());
            r = &r[end..];
        }
        r.trim()
    };
    match words.as_slice() {
        ["instant", "at", t, ..] => Ok((EvalKind::Instant(parse_duration(t)?), skip_words(3))),
        ["range", "from", s, "to", e, "step", st, ..] => Ok((
            EvalKind::Range {
                start: parse_duration(s)?,
                end: parse_duration(e)?,
                step: parse_duration(st)?,
            },
            skip_words(7),
        )),
        _ => Err(format!("invalid eval header {rest:?}")),
    }
}

fn run_eval(
    engine: &Engine,
    storage: &MemStorage,
    cmd: &str,
    rest: &str,
    body: &[(usize, &str)],
) -> Result<(), String> {
    let (kind, query) = parse_eval_header(rest)?;
    let ctx = QueryContext::default();
    let result = match kind {
        EvalKind::Instant(t) => engine.instant(storage, query, t, &ctx),
        EvalKind::Range { start, end, step } => {
            engine.range(storage, query, start, end, step, &ctx)
        }
    };
    if cmd == "eval_fail" {
        return match result {
            Ok(v) => Err(format!("expected an error, got {}", v.to_api_json())),
            Err(e) => {
                for (_, l) in body {
                    if let Some(msg) = l.strip_prefix("expected_fail_message ") {
                        if e.message != msg.trim() {
                            return Err(format!(
                                "expected error {:?}, got {:?}",
                                msg.trim(),
                                e.message
                            ));
                        }
                    } else if let Some(re) = l.strip_prefix("expected_fail_regexp ") {
                        let r = regex::Regex::new(re.trim()).map_err(|e| e.to_string())?;
                        if !r.is_match(&e.message) {
                            return Err(format!("error {:?} does not match {re:?}", e.message));
                        }
                    }
                }
                Ok(())
            }
        };
    }
    let value = result.map_err(|e| format!("unexpected error: {e}"))?;
    let mut expected = Vec::new();
    for (n, l) in body {
        let exp = if let Ok(v) = parse_number(l) {
            Expected {
                labels: None,
                values: vec![SeriesValue::Value(v)],
            }
        } else {
            let (labels, vals) = parse_selector_prefix(l).map_err(|e| format!("line {n}: {e}"))?;
            Expected {
                labels: Some(labels),
                values: expand_series_values(vals).map_err(|e| format!("line {n}: {e}"))?,
            }
        };
        expected.push(exp);
    }
    let ordered = cmd == "eval_ordered";
    compare(&value, &expected, ordered, &kind)?;
    // Like Prometheus's runner, check that the query gives the same answer
    // in range mode: the middle step of [t-1m, t+1m] must equal the instant
    // result. Not for ordered results (range results have no order), range
    // vectors, or `@ start()`/`@ end()` (which differ between the two).
    if let (EvalKind::Instant(t), false) = (&kind, ordered) {
        let t = *t;
        let step_invariant_ok = !query.contains("start()") && !query.contains("end()");
        if matches!(value, Value::Vector(_) | Value::Scalar { .. }) && step_invariant_ok {
            let range = engine
                .range(storage, query, t - 60_000, t + 60_000, 60_000, &ctx)
                .map_err(|e| format!("range-mode check failed: {e}"))?;
            let middle = match range {
                Value::Matrix(m) => m
                    .into_iter()
                    .filter_map(|s| {
                        s.samples.iter().find(|x| x.timestamp_ms == t).map(|x| {
                            crate::value::VectorSample {
                                labels: s.labels.clone(),
                                t_ms: t,
                                v: x.value,
                            }
                        })
                    })
                    .collect::<Vec<_>>(),
                other => return Err(format!("range-mode check returned {}", other.type_name())),
            };
            let as_value = match value {
                Value::Scalar { .. } => match middle.first() {
                    Some(s) => Value::Scalar { t_ms: t, v: s.v },
                    None => return Err("range-mode check lost the scalar".into()),
                },
                _ => Value::Vector(middle),
            };
            compare(&as_value, &expected, false, &kind)
                .map_err(|e| format!("in range mode: {e}"))?;
        }
    }
    Ok(())
}

fn show(vals: &[SeriesValue]) -> String {
    vals.iter()
        .map(|v| match v {
            SeriesValue::Value(x) => format_float(*x),
            SeriesValue::Missing => "_".into(),
            SeriesValue::Stale => "stale".into(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn values_match(exp: &[SeriesValue], got: &[(i64, f64)], kind: &EvalKind) -> bool {
    match kind {
        EvalKind::Range { start, step, .. } => {
            // Expected values are per step; `_` means no point at that step.
            let mut gi = 0;
            for (k, e) in exp.iter().enumerate() {
                let t = start + step * k as i64;
                let point = got.get(gi).filter(|(pt, _)| *pt == t);
                match (e, point) {
                    (SeriesValue::Missing, None) => {}
                    (SeriesValue::Value(x), Some((_, v))) if almost_equal(*x, *v) => gi += 1,
                    _ => return false,
                }
            }
            gi == got.len()
        }
        EvalKind::Instant(_) => {
            let want: Vec<f64> = exp
                .iter()
                .filter_map(|e| match e {
                    SeriesValue::Value(x) => Some(*x),
                    _ => None,
                })
                .collect();
            want.len() == got.len() && want.iter().zip(got).all(|(a, (_, b))| almost_equal(*a, *b))
        }
    }
}

fn compare(
    value: &Value,
    expected: &[Expected],
    ordered: bool,
    kind: &EvalKind,
) -> Result<(), String> {
    let got: Vec<(Labels, Vec<(i64, f64)>)> = match value {
        Value::Scalar { t_ms, v } => {
            return match expected {
                [
                    Expected {
                        labels: None,
                        values,
                    },
                ] if values.len() == 1 => match values[0] {
                    SeriesValue::Value(x) if almost_equal(x, *v) => Ok(()),
                    _ => Err(format!(
                        "expected scalar {}, got {}",
                        show(values),
                        format_float(*v)
                    )),
                },
                _ => Err(format!(
                    "expected {} results, got scalar {} at {t_ms}",
                    expected.len(),
                    format_float(*v)
                )),
            };
        }
        Value::String { s, .. } => return Err(format!("unexpected string result {s:?}")),
        Value::Vector(v) => v
            .iter()
            .map(|s| (s.labels.clone(), vec![(s.t_ms, s.v)]))
            .collect(),
        Value::Matrix(m) => m
            .iter()
            .map(|s| {
                (
                    s.labels.clone(),
                    s.samples
                        .iter()
                        .map(|x| (x.timestamp_ms, x.value))
                        .collect(),
                )
            })
            .collect(),
    };
    if got.len() != expected.len() {
        let shown: Vec<String> = got.iter().map(|(l, v)| format!("{l} {v:?}")).collect();
        return Err(format!(
            "expected {} series, got {}: [{}]",
            expected.len(),
            got.len(),
            shown.join(", ")
        ));
    }
    for (k, e) in expected.iter().enumerate() {
        let Some(want) = &e.labels else {
            return Err("expected a series, got a bare value".into());
        };
        let pos = got.iter().position(|(l, _)| l == want);
        let Some(pos) = pos else {
            return Err(format!("expected series {want} not found"));
        };
        if ordered && pos != k {
            return Err(format!(
                "series {want} expected at position {k}, found at {pos}"
            ));
        }
        if !values_match(&e.values, &got[pos].1, kind) {
            return Err(format!(
                "series {want}: expected {}, got {:?}",
                show(&e.values),
                got[pos]
                    .1
                    .iter()
                    .map(|(_, v)| format_float(*v))
                    .collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use SeriesValue::{Missing, Stale, Value as V};
    use proptest::prelude::*;

    #[test]
    fn notation_expands_like_promtool() {
        assert_eq!(
            expand_series_values("1 2 3").expect("ok"),
            vec![V(1.0), V(2.0), V(3.0)]
        );
        assert_eq!(
            expand_series_values("1+2x3").expect("ok"),
            vec![V(1.0), V(3.0), V(5.0), V(7.0)]
        );
        assert_eq!(
            expand_series_values("1-2x2").expect("ok"),
            vec![V(1.0), V(-1.0), V(-3.0)]
        );
        assert_eq!(
            expand_series_values("-1+1x1").expect("ok"),
            vec![V(-1.0), V(0.0)]
        );
        assert_eq!(
            expand_series_values("5x2").expect("ok"),
            vec![V(5.0), V(5.0), V(5.0)]
        );
        assert_eq!(
            expand_series_values("_x3").expect("ok"),
            vec![Missing, Missing, Missing]
        );
        assert_eq!(
            expand_series_values("_ stale 1e3").expect("ok"),
            vec![Missing, Stale, V(1000.0)]
        );
        assert_eq!(
            expand_series_values("1e-3+1e+3x1").expect("ok"),
            vec![V(0.001), V(1000.001)]
        );
        let inf = expand_series_values("Inf -Inf +Inf NaN").expect("ok");
        assert_eq!(inf[0], V(f64::INFINITY));
        assert_eq!(inf[1], V(f64::NEG_INFINITY));
        assert_eq!(inf[2], V(f64::INFINITY));
        assert!(matches!(inf[3], V(x) if x.is_nan()));
        assert!(expand_series_values("abc").is_err());
        assert!(expand_series_values("1+x3").is_err());
    }

    #[test]
    fn selectors_parse() {
        assert_eq!(
            parse_series_selector(r#"up{job="a\"b", x='y'}"#).expect("ok"),
            Labels::from_pairs([("__name__", "up"), ("job", "a\"b"), ("x", "y")])
        );
        assert_eq!(
            parse_series_selector(r#"{__name__="m"}"#).expect("ok"),
            Labels::from_pairs([("__name__", "m")])
        );
        assert_eq!(
            parse_series_selector("ns:m_total")
                .expect("ok")
                .metric_name(),
            Some("ns:m_total")
        );
        assert!(parse_series_selector(r#"up{a=~"b"}"#).is_err());
        assert!(parse_series_selector(r#"up{a="b""#).is_err());
        assert!(parse_series_selector("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("100ms"), Ok(100));
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn runner_reports_failures() {
        let ok = "load 1m\n  m{a=\"1\"} 0+1x10\n\neval instant at 5m m\n  m{a=\"1\"} 5\n";
        assert_eq!(run_script(ok), Ok(Summary { evals: 1 }));
        let bad = "load 1m\n  m{a=\"1\"} 0+1x10\n\neval instant at 5m m\n  m{a=\"1\"} 6\n";
        assert!(run_script(bad).is_err());
        let fail = "eval_fail instant at 0 sum(\n";
        assert!(run_script(fail).is_ok());
    }

    proptest! {
        #[test]
        fn expansion_length(start in -1000i32..1000, inc in -50i32..50, n in 0u64..40) {
            let s = format!("{start}{inc:+}x{n}");
            let v = expand_series_values(&s).expect("valid notation");
            prop_assert_eq!(v.len() as u64, n + 1);
            prop_assert_eq!(v[n as usize], V(f64::from(start) + f64::from(inc) * n as f64));
        }

        #[test]
        fn expansion_never_panics(s in "[-+_0-9xeINaf. ]{0,20}") {
            let _ = expand_series_values(&s);
        }

        #[test]
        fn selector_round_trip(name in "[a-z_][a-z0-9_:]{0,8}", lv in "[ -~]{1,10}") {
            let l = Labels::from_pairs([("__name__", name.as_str()), ("lbl", lv.as_str())]);
            let text = format!("{name}{{lbl=\"{}\"}}", lv.replace('\\', "\\\\").replace('"', "\\\""));
            prop_assert_eq!(parse_series_selector(&text).expect("valid"), l);
        }
    }
}
