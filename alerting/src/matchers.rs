//! Alertmanager's matcher syntax: `alertname="X"`, `severity=~"warn|crit"`,
//! `team!=ops`, optionally several separated by commas and wrapped in braces
//! (`{a="b", c=~"d"}`), as written in `matchers:` lists, inhibition rules,
//! `amtool` and the `filter` query parameter of the v2 API.
//!
//! Matching itself is [`vigil_wire::Matcher`] (anchored regexes, a missing
//! label matches as the empty string), which is what Alertmanager does too.
//! This module adds the parser and the Go-style rendering used in group keys.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use thiserror::Error;
use vigil_wire::{MatchOp, Matcher};

/// A label set as alerts carry it: sorted names, no duplicates.
pub type LabelSet = BTreeMap<String, String>;

/// Why a matcher string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("bad matcher {input:?}: {reason}")]
pub struct ParseError {
    pub input: String,
    pub reason: String,
}

fn err(input: &str, reason: impl Into<String>) -> ParseError {
    ParseError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// Parses one or more comma-separated matchers, optionally inside `{}`.
///
/// Values may be double-quoted (with Go escapes `\"`, `\\`, `\n`, `\t`) or
/// bare; a bare value runs to the next comma and is trimmed.
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, ParseError> {
    let mut s = input.trim();
    if let Some(rest) = s.strip_prefix('{') {
        s = rest
            .strip_suffix('}')
            .ok_or_else(|| err(input, "missing closing '}'"))?;
    } else if s.ends_with('}') {
        return Err(err(input, "missing opening '{'"));
    }
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            break;
        }
        // Label name.
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
        {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(err(
                input,
                format!("expected a label name at offset {start}"),
            ));
        }
        skip_ws(&mut i);
        let op = match (chars.get(i), chars.get(i + 1)) {
            (Some('='), Some('~')) => {
                i += 2;
                MatchOp::RegexMatch
            }
            (Some('!'), Some('~')) => {
                i += 2;
                MatchOp::RegexNoMatch
            }
            (Some('!'), Some('=')) => {
                i += 2;
                MatchOp::NotEqual
            }
            (Some('='), _) => {
                i += 1;
                MatchOp::Equal
            }
            _ => {
                return Err(err(
                    input,
                    format!("expected one of =, !=, =~, !~ after {name:?}"),
                ));
            }
        };
        skip_ws(&mut i);
        let value = if chars.get(i) == Some(&'"') {
            i += 1;
            let mut v = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(err(input, "unterminated quoted value")),
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let c = chars
                            .get(i + 1)
                            .ok_or_else(|| err(input, "dangling escape"))?;
                        v.push(match c {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => *other,
                        });
                        i += 2;
                    }
                    Some(c) => {
                        v.push(*c);
                        i += 1;
                    }
                }
            }
            v
        } else {
            let start = i;
            while i < chars.len() && chars[i] != ',' {
                if chars[i] == '"' {
                    return Err(err(input, "unexpected '\"' inside an unquoted value"));
                }
                i += 1;
            }
            chars[start..i]
                .iter()
                .collect::<String>()
                .trim()
                .to_string()
        };
        let m = Matcher::new(name, op, value).map_err(|e| err(input, e.to_string()))?;
        out.push(m);
        skip_ws(&mut i);
        match chars.get(i) {
            None => break,
            Some(',') => i += 1,
            Some(c) => return Err(err(input, format!("expected ',' but found {c:?}"))),
        }
    }
    Ok(out)
}

/// Whether one matcher matches a label set (a missing label is "").
pub fn matches(m: &Matcher, labels: &LabelSet) -> bool {
    m.matches_value(labels.get(&m.name).map(String::as_str).unwrap_or(""))
}

/// Whether every matcher matches.
pub fn matches_all(ms: &[Matcher], labels: &LabelSet) -> bool {
    ms.iter().all(|m| matches(m, labels))
}

/// Go's `%q` for the strings that appear in label values.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Alertmanager's `Matcher.String()`: `name="value"` with Go quoting.
pub fn matcher_string(m: &Matcher) -> String {
    format!("{}{}{}", m.name, m.op.as_str(), go_quote(&m.value))
}

/// Alertmanager's `Matchers.String()`: `{a="b",c=~"d"}` (no spaces).
pub fn matchers_string(ms: &[Matcher]) -> String {
    let parts: Vec<String> = ms.iter().map(matcher_string).collect();
    format!("{{{}}}", parts.join(","))
}

/// Sorts matchers as Alertmanager does (name, then value, then operator) so
/// route keys are stable whatever order the file lists them in.
pub fn sort_matchers(ms: &mut [Matcher]) {
    fn op_rank(op: MatchOp) -> u8 {
        match op {
            MatchOp::Equal => 0,
            MatchOp::NotEqual => 1,
            MatchOp::RegexMatch => 2,
            MatchOp::RegexNoMatch => 3,
        }
    }
    ms.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| a.value.cmp(&b.value))
            .then_with(|| op_rank(a.op).cmp(&op_rank(b.op)))
    });
}

/// Prometheus `model.LabelSet.String()`: `{a="b", c="d"}`.
pub fn labelset_string(ls: &LabelSet) -> String {
    let parts: Vec<String> = ls
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Alertmanager's alert fingerprint: FNV-1a 64 over the sorted label names
/// and values, each followed by a 0xff byte (`model.LabelSet.Fingerprint`).
/// Delegates to [`vigil_wire::Labels::stable_hash`], which implements it.
pub fn fingerprint(ls: &LabelSet) -> u64 {
    vigil_wire::Labels::from_pairs(ls.iter().map(|(k, v)| (k.as_str(), v.as_str()))).stable_hash()
}

/// The 16-digit hex form Alertmanager prints.
pub fn fingerprint_hex(fp: u64) -> String {
    format!("{fp:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_quoted_bare_and_braced_forms() {
        let ms = parse_matchers(r#"{alertname="X", severity=~"warn|crit",team!=ops}"#)
            .expect("valid matchers");
        assert_eq!(ms.len(), 3);
        assert_eq!(ms[0].name, "alertname");
        assert_eq!(ms[0].op, MatchOp::Equal);
        assert_eq!(ms[1].op, MatchOp::RegexMatch);
        assert_eq!(ms[2].value, "ops");
        assert_eq!(ms[2].op, MatchOp::NotEqual);
        let one = parse_matchers("foo = bar baz ").expect("bare value");
        assert_eq!(one[0].value, "bar baz");
        let esc = parse_matchers(r#"a="x\"y\\z""#).expect("escapes");
        assert_eq!(esc[0].value, "x\"y\\z");
    }

    #[test]
    fn rejects_malformed_matchers() {
        for bad in [
            "a",
            "=b",
            "{a=b",
            "a=\"b",
            "a=~\"(\"",
            "1a=b",
            "a=\"b\" c=d",
        ] {
            assert!(parse_matchers(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn regex_matching_is_anchored_and_missing_is_empty() {
        let ms = parse_matchers(r#"severity=~"warn|crit""#).expect("valid");
        assert!(matches_all(&ms, &ls(&[("severity", "crit")])));
        assert!(!matches_all(&ms, &ls(&[("severity", "critical")])));
        let empty = parse_matchers(r#"team="""#).expect("valid");
        assert!(matches_all(&empty, &ls(&[("a", "b")])));
    }

    #[test]
    fn fingerprint_matches_alertmanager() {
        // Computed with Go: model.LabelSet{"alertname":"TestAlert","instance":"a"}.Fingerprint()
        // using FNV-1a 64 with 0xff separators; an empty set hashes to the offset basis.
        assert_eq!(fingerprint(&LabelSet::new()), 0xcbf2_9ce4_8422_2325);
        let fp = fingerprint(&ls(&[("a", "b")]));
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in [b'a', 0xff, b'b', 0xff] {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(fp, h);
        assert_eq!(fingerprint_hex(1), "0000000000000001");
    }

    #[test]
    fn renders_like_go() {
        let ms = parse_matchers(r#"b=~"x", a="q\"""#).expect("valid");
        let mut ms = ms;
        sort_matchers(&mut ms);
        assert_eq!(matchers_string(&ms), r#"{a="q\"",b=~"x"}"#);
        assert_eq!(
            labelset_string(&ls(&[("b", "2"), ("a", "1")])),
            r#"{a="1", b="2"}"#
        );
    }

    fn arb_op() -> impl Strategy<Value = MatchOp> {
        prop_oneof![
            Just(MatchOp::Equal),
            Just(MatchOp::NotEqual),
            Just(MatchOp::RegexMatch),
            Just(MatchOp::RegexNoMatch),
        ]
    }

    proptest! {
        #[test]
        fn quoted_matchers_round_trip(
            items in proptest::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,8}", arb_op(), "[a-zA-Z0-9 ,{}=!~\"\\\\]{0,12}"), 1..4),
            braces in any::<bool>(),
        ) {
            // Regex values must compile; escape them so any text is a literal.
            let items: Vec<(String, MatchOp, String)> = items
                .into_iter()
                .map(|(n, op, v)| match op {
                    MatchOp::RegexMatch | MatchOp::RegexNoMatch => (n, op, regex::escape(&v)),
                    _ => (n, op, v),
                })
                .collect();
            let body: Vec<String> = items
                .iter()
                .map(|(n, op, v)| format!("{n}{}{}", op.as_str(), go_quote(v)))
                .collect();
            let text = if braces { format!("{{{}}}", body.join(", ")) } else { body.join(",") };
            let parsed = parse_matchers(&text).expect("rendered matchers parse");
            prop_assert_eq!(parsed.len(), items.len());
            for (m, (n, op, v)) in parsed.iter().zip(items.iter()) {
                prop_assert_eq!(&m.name, n);
                prop_assert_eq!(m.op, *op);
                prop_assert_eq!(&m.value, v);
            }
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,40}") {
            let _ = parse_matchers(&s);
        }

        #[test]
        fn bare_values_trimmed(n in "[a-z_]{1,6}", v in "[a-z0-9]{1,8}") {
            let parsed = parse_matchers(&format!(" {n} =  {v}  ")).expect("bare");
            prop_assert_eq!(&parsed[0].value, &v);
        }
    }
}
