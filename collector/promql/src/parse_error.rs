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
                    return Some((input.len(), "unterminated quoted string"));
                }
            }
            '(' | '{' | '[' => stack.push(c),
            ')' | '}' | ']' => {
                let (open, what) = match c {
                    ')' => ('(', "unexpected right parenthesis ')'"),
                    '}' => ('{', "unexpected right brace '}'"),
                    _ => ('[', "unexpected right bracket ']'"),
                };
                if stack.pop() != Some(open) {
                    return Some((i, what));
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

    #[test]
    fn positions_like_prometheus() {
        assert_eq!(
            describe("sum(", "x"),
            "1:5: parse error: unclosed left parenthesis"
        );
        assert_eq!(
            describe("up)", "x"),
            "1:3: parse error: unexpected right parenthesis ')'"
        );
        assert_eq!(
            describe("up{a=\"b\"", "x"),
            "1:9: parse error: unexpected end of input inside braces"
        );
        assert_eq!(
            describe("rate(up[5m)", "x"),
            "1:11: parse error: unexpected right parenthesis ')'"
        );
        assert_eq!(
            describe("up{a=\"b}", "x"),
            "1:9: parse error: unterminated quoted string"
        );
        assert_eq!(
            describe("a\n + (", "x"),
            "2:5: parse error: unclosed left parenthesis"
        );
        assert_eq!(
            describe("1 +", "invalid promql query"),
            "parse error: invalid promql query"
        );
        assert_eq!(describe("\"(\" + 1", "bad"), "parse error: bad");
    }
}
