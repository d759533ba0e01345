//! Built-in functions: Go's `text/template` builtins plus the string and
//! number helpers Prometheus (`template/template.go`) and Alertmanager
//! (`template/template.go`) register for rule and receiver templates.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use regex::Regex;

use crate::printf::{format_float_g, sprint, sprintf, sprintln};
use crate::value::Value;
use crate::{Func, Funcs};

fn f4(v: f64) -> String {
    format_float_g(v, Some(4), false)
}

/// Converts a number or numeric string to a float, as Prometheus's
/// `convertToFloat` does.
pub fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::String(s) => parse_go_float(s)
            .ok_or_else(|| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

fn parse_go_float(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Prometheus's `humanize`: SI prefixes, 4 significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return f4(v);
    }
    if v.abs() >= 1.0 {
        let mut prefix = "";
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
        return format!("{}{prefix}", f4(v));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}", f4(v))
}

/// Prometheus's `humanize1024`: binary prefixes.
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return f4(v);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", f4(v))
}

/// Prometheus's `humanizeDuration` (seconds in).
pub fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return f4(v);
    }
    if v == 0.0 {
        return format!("{}s", f4(v));
    }
    if v.abs() >= 1.0 {
        let mut sign = "";
        if v < 0.0 {
            sign = "-";
            v = -v;
        }
        let d = v as i64;
        let seconds = d % 60;
        let minutes = (d / 60) % 60;
        let hours = (d / 3600) % 24;
        let days = d / 86400;
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", f4(v));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", f4(v))
}

/// Prometheus's `humanizePercentage` (ratio in).
pub fn humanize_percentage(v: f64) -> String {
    format!("{}%", f4(v * 100.0))
}

/// Days since 1970-01-01 to a civil (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Prometheus's `humanizeTimestamp`: Go's `time.Time.String()` in UTC at
/// millisecond precision, e.g. `2023-01-02 03:04:05.678 +0000 UTC`.
pub fn humanize_timestamp(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return f4(v);
    }
    let ms = (v * 1000.0).trunc() as i64;
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut s = format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:03}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

/// Go's `strings.Title`: upper-cases the first letter of each word.
pub fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        // Go's isSeparator: ASCII other than alphanumerics and `_`, and
        // Unicode white space; other letters and digits join words.
        prev_sep = (c.is_whitespace() || c.is_ascii()) && c != '_' && !c.is_alphanumeric();
    }
    out
}

/// Go's `template.HTMLEscapeString`.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
pub fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `net.SplitHostPort` host part, or the input when it has no port.
pub fn strip_port(s: &str) -> String {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((host, _)) = rest
            .split_once(']')
            .filter(|(_, after)| after.starts_with(':'))
        {
            return host.to_string();
        }
        return s.to_string();
    }
    match s.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host.to_string(),
        _ => s.to_string(),
    }
}

fn arity(args: &[Value], n: usize, name: &str) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn str_arg<'a>(v: &'a Value, name: &str) -> Result<&'a str, String> {
    v.as_str()
        .ok_or_else(|| format!("{name}: expected string, got {}", v.type_name()))
}

/// Go's `fmt.Sprint` of the args, which `html`, `js` and `urlquery` escape.
fn eval_args(args: &[Value]) -> String {
    match args {
        [Value::String(s)] => s.clone(),
        _ => sprint(args),
    }
}

fn compare(a: &Value, b: &Value) -> Result<Ordering, String> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        (x, y) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x
                .partial_cmp(&y)
                .ok_or_else(|| "comparison with NaN".to_string()),
            _ => Err(format!(
                "incompatible types for comparison: {} and {}",
                x.type_name(),
                y.type_name()
            )),
        },
    }
}

fn equal(a: &Value, b: &Value) -> Result<bool, String> {
    match (a, b) {
        (Value::Nil, Value::Nil) => Ok(true),
        (Value::Nil, _) | (_, Value::Nil) => Ok(false),
        (Value::Float(x), Value::Float(y)) => Ok(x == y),
        (Value::Array(_) | Value::Map(_), _) | (_, Value::Array(_) | Value::Map(_)) => {
            Err("non-comparable type".into())
        }
        _ => Ok(compare(a, b)? == Ordering::Equal),
    }
}

fn index(args: &[Value]) -> Result<Value, String> {
    let Some((first, keys)) = args.split_first() else {
        return Err("wrong number of args for index: want at least 1 got 0".into());
    };
    let mut v = first.clone();
    for k in keys {
        v = match (&v, k) {
            (Value::Map(m), Value::String(s)) => m.get(s).cloned().unwrap_or_default(),
            (Value::Array(a), Value::Int(i)) => a
                .get(usize::try_from(*i).map_err(|_| format!("index out of range: {i}"))?)
                .cloned()
                .ok_or_else(|| format!("index out of range: {i}"))?,
            (Value::String(s), Value::Int(i)) => s
                .as_bytes()
                .get(usize::try_from(*i).map_err(|_| format!("index out of range: {i}"))?)
                .map(|b| Value::Int(*b as i64))
                .ok_or_else(|| format!("index out of range: {i}"))?,
            (Value::Nil, _) => return Err("index of untyped nil".into()),
            (c, k) => {
                return Err(format!(
                    "can't index item of type {} with {}",
                    c.type_name(),
                    k.type_name()
                ));
            }
        };
    }
    Ok(v)
}

fn labels_of(v: &Value) -> BTreeMap<String, Value> {
    match v {
        Value::Map(m) => match m.get("Labels") {
            Some(Value::Map(l)) => l.clone(),
            _ => BTreeMap::new(),
        },
        _ => BTreeMap::new(),
    }
}

fn f<F>(func: F) -> Func
where
    F: Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static,
{
    Arc::new(func)
}

fn float_fn(name: &'static str, g: fn(f64) -> String) -> Func {
    f(move |a| {
        arity(a, 1, name)?;
        Ok(Value::String(g(to_float(&a[0])?)))
    })
}

fn str_fn(name: &'static str, g: fn(&str) -> String) -> Func {
    f(move |a| {
        arity(a, 1, name)?;
        Ok(Value::String(g(str_arg(&a[0], name)?)))
    })
}

/// Every built-in function, keyed by name.
pub fn builtins() -> Funcs {
    let mut m: Funcs = Funcs::new();
    m.insert(
        "and".into(),
        f(|a| {
            if a.is_empty() {
                return Err("wrong number of args for and: want at least 1 got 0".into());
            }
            Ok(a.iter()
                .find(|v| !v.truthy())
                .unwrap_or(&a[a.len() - 1])
                .clone())
        }),
    );
    m.insert(
        "or".into(),
        f(|a| {
            if a.is_empty() {
                return Err("wrong number of args for or: want at least 1 got 0".into());
            }
            Ok(a.iter()
                .find(|v| v.truthy())
                .unwrap_or(&a[a.len() - 1])
                .clone())
        }),
    );
    m.insert(
        "not".into(),
        f(|a| {
            arity(a, 1, "not")?;
            Ok(Value::Bool(!a[0].truthy()))
        }),
    );
    m.insert(
        "len".into(),
        f(|a| {
            arity(a, 1, "len")?;
            Ok(Value::Int(match &a[0] {
                Value::String(s) => s.len(),
                Value::Array(x) => x.len(),
                Value::Map(x) => x.len(),
                other => return Err(format!("len of type {}", other.type_name())),
            } as i64))
        }),
    );
    m.insert("index".into(), f(index));
    m.insert("print".into(), f(|a| Ok(Value::String(sprint(a)))));
    m.insert("println".into(), f(|a| Ok(Value::String(sprintln(a)))));
    m.insert(
        "printf".into(),
        f(|a| {
            let Some((fmt, rest)) = a.split_first() else {
                return Err("wrong number of args for printf: want at least 1 got 0".into());
            };
            Ok(Value::String(sprintf(str_arg(fmt, "printf")?, rest)))
        }),
    );
    m.insert(
        "html".into(),
        f(|a| Ok(Value::String(html_escape(&eval_args(a))))),
    );
    m.insert(
        "js".into(),
        f(|a| Ok(Value::String(js_escape(&eval_args(a))))),
    );
    m.insert(
        "urlquery".into(),
        f(|a| Ok(Value::String(query_escape(&eval_args(a))))),
    );
    m.insert(
        "eq".into(),
        f(|a| {
            let Some((first, rest)) = a.split_first() else {
                return Err("missing argument for comparison".into());
            };
            if rest.is_empty() {
                return Err("missing argument for comparison".into());
            }
            for r in rest {
                if equal(first, r)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }),
    );
    m.insert(
        "ne".into(),
        f(|a| {
            arity(a, 2, "ne")?;
            Ok(Value::Bool(!equal(&a[0], &a[1])?))
        }),
    );
    for (name, want) in [
        ("lt", &[Ordering::Less][..]),
        ("le", &[Ordering::Less, Ordering::Equal][..]),
        ("gt", &[Ordering::Greater][..]),
        ("ge", &[Ordering::Greater, Ordering::Equal][..]),
    ] {
        m.insert(
            name.into(),
            f(move |a| {
                arity(a, 2, name)?;
                Ok(Value::Bool(want.contains(&compare(&a[0], &a[1])?)))
            }),
        );
    }
    m.insert(
        "slice".into(),
        f(|a| {
            let Some((first, idx)) = a.split_first() else {
                return Err("wrong number of args for slice".into());
            };
            let ints: Vec<usize> = idx
                .iter()
                .map(|v| match v {
                    Value::Int(i) if *i >= 0 => Ok(*i as usize),
                    _ => Err("slice: index must be a non-negative int".to_string()),
                })
                .collect::<Result<_, _>>()?;
            match first {
                Value::String(s) => {
                    let lo = ints.first().copied().unwrap_or(0);
                    let hi = ints.get(1).copied().unwrap_or(s.len());
                    s.get(lo..hi)
                        .map(Value::from)
                        .ok_or_else(|| "slice: index out of range".into())
                }
                Value::Array(v) => {
                    let lo = ints.first().copied().unwrap_or(0);
                    let hi = ints.get(1).copied().unwrap_or(v.len());
                    v.get(lo..hi)
                        .map(|s| Value::Array(s.to_vec()))
                        .ok_or_else(|| "slice: index out of range".into())
                }
                other => Err(format!("can't slice item of type {}", other.type_name())),
            }
        }),
    );

    // Prometheus and Alertmanager helpers.
    m.insert("humanize".into(), float_fn("humanize", humanize));
    m.insert(
        "humanize1024".into(),
        float_fn("humanize1024", humanize1024),
    );
    m.insert(
        "humanizeDuration".into(),
        float_fn("humanizeDuration", humanize_duration),
    );
    m.insert(
        "humanizePercentage".into(),
        float_fn("humanizePercentage", humanize_percentage),
    );
    m.insert(
        "humanizeTimestamp".into(),
        float_fn("humanizeTimestamp", humanize_timestamp),
    );
    m.insert("toUpper".into(), str_fn("toUpper", |s| s.to_uppercase()));
    m.insert("toLower".into(), str_fn("toLower", |s| s.to_lowercase()));
    m.insert("title".into(), str_fn("title", title));
    m.insert(
        "trimSpace".into(),
        str_fn("trimSpace", |s| s.trim().to_string()),
    );
    m.insert("safeHtml".into(), str_fn("safeHtml", |s| s.to_string()));
    m.insert("stripPort".into(), str_fn("stripPort", strip_port));
    m.insert(
        "match".into(),
        f(|a| {
            arity(a, 2, "match")?;
            let re = Regex::new(str_arg(&a[0], "match")?).map_err(|e| e.to_string())?;
            Ok(Value::Bool(re.is_match(str_arg(&a[1], "match")?)))
        }),
    );
    m.insert(
        "reReplaceAll".into(),
        f(|a| {
            arity(a, 3, "reReplaceAll")?;
            let re = Regex::new(str_arg(&a[0], "reReplaceAll")?).map_err(|e| e.to_string())?;
            let repl = str_arg(&a[1], "reReplaceAll")?;
            Ok(Value::String(
                re.replace_all(str_arg(&a[2], "reReplaceAll")?, repl)
                    .into_owned(),
            ))
        }),
    );
    m.insert(
        "join".into(),
        f(|a| {
            arity(a, 2, "join")?;
            let sep = str_arg(&a[0], "join")?;
            let Value::Array(items) = &a[1] else {
                return Err(format!("join: expected a list, got {}", a[1].type_name()));
            };
            Ok(Value::String(
                items
                    .iter()
                    .map(Value::to_go_string)
                    .collect::<Vec<_>>()
                    .join(sep),
            ))
        }),
    );
    m.insert("stringSlice".into(), f(|a| Ok(Value::Array(a.to_vec()))));
    // Query-result helpers over `[{Labels: {...}, Value: v}]` lists.
    m.insert(
        "first".into(),
        f(|a| {
            arity(a, 1, "first")?;
            match &a[0] {
                Value::Array(v) => v
                    .first()
                    .cloned()
                    .ok_or_else(|| "first() called on vector with no elements".into()),
                other => Err(format!("first: expected a list, got {}", other.type_name())),
            }
        }),
    );
    m.insert(
        "label".into(),
        f(|a| {
            arity(a, 2, "label")?;
            let name = str_arg(&a[0], "label")?;
            Ok(labels_of(&a[1])
                .get(name)
                .cloned()
                .unwrap_or_else(|| Value::String(String::new())))
        }),
    );
    m.insert(
        "value".into(),
        f(|a| {
            arity(a, 1, "value")?;
            match &a[0] {
                Value::Map(m) => Ok(m.get("Value").cloned().unwrap_or_default()),
                other => Err(format!(
                    "value: expected a sample, got {}",
                    other.type_name()
                )),
            }
        }),
    );
    m.insert(
        "sortByLabel".into(),
        f(|a| {
            arity(a, 2, "sortByLabel")?;
            let name = str_arg(&a[0], "sortByLabel")?.to_string();
            let Value::Array(mut v) = a[1].clone() else {
                return Err(format!(
                    "sortByLabel: expected a list, got {}",
                    a[1].type_name()
                ));
            };
            v.sort_by(|x, y| {
                let lx = labels_of(x)
                    .get(&name)
                    .map(Value::to_go_string)
                    .unwrap_or_default();
                let ly = labels_of(y)
                    .get(&name)
                    .map(Value::to_go_string)
                    .unwrap_or_default();
                lx.cmp(&ly)
            });
            Ok(Value::Array(v))
        }),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_like_prometheus() {
        // Expectations from Prometheus's template_test.go.
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(1234567.0), "1.235M");
        assert_eq!(humanize(12345.0), "12.35k");
        assert_eq!(humanize(0.001234), "1.234m");
        assert_eq!(humanize(1.0e-20), "10z");
        assert_eq!(humanize(f64::INFINITY), "+Inf");
        assert_eq!(humanize1024(0.0), "0");
        assert_eq!(humanize1024(1048576.0), "1Mi");
        assert_eq!(humanize1024(1.0), "1");
        assert_eq!(humanize1024(1024.0 * 1024.0 * 1024.0 * 3.5), "3.5Gi");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(humanize_duration(1.0), "1s");
        assert_eq!(humanize_duration(60.0), "1m 0s");
        assert_eq!(humanize_duration(3600.0), "1h 0m 0s");
        assert_eq!(humanize_duration(86400.0), "1d 0h 0m 0s");
        assert_eq!(
            humanize_duration(86400.0 + 3600.0 + 60.0 + 1.0),
            "1d 1h 1m 1s"
        );
        assert_eq!(humanize_duration(0.1), "100ms");
        assert_eq!(humanize_duration(0.0001), "100us");
        assert_eq!(humanize_duration(0.003), "3ms");
        assert_eq!(humanize_duration(1.23456), "1.235s");
        assert_eq!(humanize_duration(-3601.0), "-1h 0m 1s");
        assert_eq!(humanize_percentage(0.0), "0%");
        assert_eq!(humanize_percentage(0.1234567), "12.35%");
        assert_eq!(humanize_percentage(1.0), "100%");
        assert_eq!(humanize_percentage(-0.22222), "-22.22%");
        assert_eq!(
            humanize_timestamp(1435065584.128),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(humanize_timestamp(0.0), "1970-01-01 00:00:00 +0000 UTC");
    }

    #[test]
    fn string_helpers() {
        assert_eq!(title("aa bb CC"), "Aa Bb CC");
        assert_eq!(strip_port("foo.com:8080"), "foo.com");
        assert_eq!(strip_port("foo.com"), "foo.com");
        assert_eq!(strip_port("[::1]:9090"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&#34;x&#34;&gt;&amp;&#39;"
        );
        assert_eq!(js_escape("a'b<c"), "a\\'b\\u003Cc");
        assert_eq!(query_escape("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
