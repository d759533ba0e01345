//! Positions for parse errors.
//!
//! promql-parser reports most syntax errors without a position, while
//! Prometheus prefixes them with `line:column:`. For the errors users make
//! most (unbalanced brackets and unterminated strings) the position can be
//! found with a small scan, done here the way Prometheus's lexer does it.

/// `line:col` of byte offset `pos`, counted like Prometheus (1-based column
/// within the line).
fn position(input: &str, pos: usize) -> String {
    let before = &input[..pos.min(input.len())];
    let line = before.matches('\n').count() + 1;
    let col = match before.rfind('\n') {
        Some(nl) => before[nl + 1..].chars().count() + 1,
        None => before.chars().count() + 1,
    };
    format!("{line}:{col}")
}

/// Scans brackets and strings; the first structural error with its offset.
fn scan(input: &str) -> Option<(usize, &'static str)> {
    scan_brackets(input).or_else(|| trailing_operator(input))
}

/// A query ending in an operator or keyword that needs a right operand.
fn trailing_operator(input: &str) -> Option<(usize, &'static str)> {
    let t = input.trim_end();
    let ends_with_symbol = ['+', '-', '*', '/', '%', '^', '=', '<', '>', ',', '@']
        .iter()
        .any(|c| t.ends_with(*c));
    let last_word = t
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("");
    let ends_with_keyword = matches!(
        last_word,
        "and"
            | "or"
            | "unless"
            | "atan2"
            | "bool"
            | "offset"
            | "by"
            | "without"
            | "on"
            | "ignoring"
    ) && t.len() > last_word.len();
    (ends_with_symbol || ends_with_keyword).then_some((input.len(), "unexpected end of input"))
}

fn scan_brackets(input: &str) -> Option<(usize, &'static str)> {
    let mut stack: Vec<char> = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '#' => {
                // A comment runs to the end of the line.
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' | '`' => {
                let mut closed = false;
                while let Some((_, d)) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Some((i, "unterminated quoted string"));
                }
            }
            '(' | '{' | '[' => stack.push(c),
            ')' | '}' | ']' => {
                let (open, what) = match c {
                    ')' => ('(', "unexpected right parenthesis ')'"),
                    '}' => ('{', "unexpected right brace '}'"),
                    _ => ('[', "unexpected right bracket ']'"),
                };
                match stack.pop() {
                    Some(o) if o == open => {}
                    // Prometheus's parser, not its lexer, reports this one,
                    // at the start of the token.
                    Some('[') if c == ')' => {
                        return Some((
                            i,
                            "unexpected \")\" in subquery or range, expected \":\" or \"]\"",
                        ));
                    }
                    // The lexer reports after consuming the character.
                    _ => return Some((i + c.len_utf8(), what)),
                }
            }
            _ => {}
        }
    }
    match stack.last() {
        Some('(') => Some((input.len(), "unclosed left parenthesis")),
        Some('{') => Some((input.len(), "unexpected end of input inside braces")),
        Some('[') => Some((input.len(), "unclosed left bracket")),
        _ => None,
    }
}

/// Prometheus-style message for a query promql-parser rejected with `msg`.
pub(crate) fn describe(input: &str, msg: &str) -> String {
    let msg = msg.strip_prefix("parse error: ").unwrap_or(msg);
    match scan(input) {
        Some((pos, what)) => format!("{}: parse error: {what}", position(input, pos)),
        None => format!("parse error: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected messages are the ones Prometheus 2.42 gives.
    #[test]
    fn positions_like_prometheus() {
        let cases = [
            ("sum(", "1:5: parse error: unclosed left parenthesis"),
            ("up)", "1:4: parse error: unexpected right parenthesis ')'"),
            (
                "up{a=\"b\"",
                "1:9: parse error: unexpected end of input inside braces",
            ),
            (
                "rate(up[5m)",
                "1:11: parse error: unexpected \")\" in subquery or range, expected \":\" or \"]\"",
            ),
            ("up{a=\"b}", "1:6: parse error: unterminated quoted string"),
            ("1 +", "1:4: parse error: unexpected end of input"),
            ("a and", "1:6: parse error: unexpected end of input"),
            ("a\n + (", "2:5: parse error: unclosed left parenthesis"),
            ("foo bar", "parse error: invalid promql query"),
            ("\"(\" + 1 1", "parse error: invalid promql query"),
        ];
        for (q, want) in cases {
            assert_eq!(describe(q, "invalid promql query"), want, "query {q:?}");
        }
    }
}
