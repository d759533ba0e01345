//! Go's `fmt` number formatting and `Sprintf`, as far as templates use it.
//!
//! Rule authors write `printf "%.2f" $value` and expect Go's output byte for
//! byte, and `{{ $value }}` must print like Go's `%v` (shortest `%g` with the
//! exponent switch at 1e+06 / 1e-05). Rust's formatter gives correctly
//! rounded digits; this module applies Go's layout rules on top.

use crate::value::Value;

/// Decimal digits of a finite, non-zero float: `0.d1d2d3… × 10^dp`.
struct Digits {
    neg: bool,
    digits: Vec<u8>,
    dp: i32,
}

impl Digits {
    /// Shortest digits that round-trip (what Go's precision -1 produces).
    fn shortest(v: f64) -> Digits {
        Self::from_exp_repr(&format!("{:e}", v))
    }

    /// Digits rounded to `n` significant figures, trailing zeros dropped.
    fn significant(v: f64, n: usize) -> Digits {
        let n = n.max(1);
        Self::from_exp_repr(&format!("{:.*e}", n - 1, v))
    }

    fn from_exp_repr(s: &str) -> Digits {
        // Rust prints `-1.2345e-7` / `1e6`.
        let (neg, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (mant, exp) = s.split_once('e').unwrap_or((s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let mut digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
        while digits.len() > 1 && digits.last() == Some(&b'0') {
            digits.pop();
        }
        Digits {
            neg,
            digits,
            dp: exp + 1,
        }
    }

    fn fmt_e(&self, decimals: usize, upper: bool) -> String {
        let mut out = String::new();
        if self.neg {
            out.push('-');
        }
        out.push(self.digits[0] as char);
        if decimals > 0 {
            out.push('.');
            for i in 1..=decimals {
                out.push(*self.digits.get(i).unwrap_or(&b'0') as char);
            }
        }
        let exp = if self.digits == [b'0'] {
            0
        } else {
            self.dp - 1
        };
        out.push(if upper { 'E' } else { 'e' });
        out.push(if exp < 0 { '-' } else { '+' });
        let a = exp.unsigned_abs();
        if a < 10 {
            out.push('0');
        }
        out.push_str(&a.to_string());
        out
    }

    fn fmt_f(&self, decimals: usize) -> String {
        let mut out = String::new();
        if self.neg {
            out.push('-');
        }
        if self.dp > 0 {
            for i in 0..self.dp as usize {
                out.push(*self.digits.get(i).unwrap_or(&b'0') as char);
            }
        } else {
            out.push('0');
        }
        if decimals > 0 {
            out.push('.');
            for i in 0..decimals {
                let idx = self.dp + i as i32;
                let c = if idx < 0 {
                    b'0'
                } else {
                    *self.digits.get(idx as usize).unwrap_or(&b'0')
                };
                out.push(c as char);
            }
        }
        out
    }
}

fn non_finite(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v == f64::INFINITY {
        Some("+Inf".into())
    } else if v == f64::NEG_INFINITY {
        Some("-Inf".into())
    } else {
        None
    }
}

/// Go's `%g` with an optional precision (`None` = shortest, as `%v`).
pub fn format_float_g(v: f64, prec: Option<usize>, upper: bool) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let (d, shortest) = match prec {
        None => (Digits::shortest(v), true),
        Some(p) => (Digits::significant(v, if p == 0 { 1 } else { p }), false),
    };
    let nd = d.digits.len() as i32;
    let mut p = match prec {
        None => nd,
        Some(0) => 1,
        Some(p) => p as i32,
    };
    let mut eprec = p;
    if eprec > nd && nd >= d.dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = d.dp - 1;
    if exp < -4 || exp >= eprec {
        if p > nd {
            p = nd;
        }
        return d.fmt_e((p - 1).max(0) as usize, upper);
    }
    if p > d.dp {
        p = nd;
    }
    d.fmt_f((p - d.dp).max(0) as usize)
}

/// Go's `%v` for a `float64`.
pub fn format_float_v(v: f64) -> String {
    format_float_g(v, None, false)
}

/// Go's `%e` with a precision (default 6).
pub fn format_float_e(v: f64, prec: usize, upper: bool) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    if v == 0.0 {
        let d = Digits {
            neg: v.is_sign_negative(),
            digits: vec![b'0'],
            dp: 1,
        };
        return d.fmt_e(prec, upper);
    }
    Digits::significant(v, prec + 1).fmt_e(prec, upper)
}

/// Go's `%f` with a precision (default 6).
pub fn format_float_f(v: f64, prec: usize) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    format!("{:.*}", prec, v)
}

/// Go's `strconv.Quote`: a double-quoted string with Go escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Default, Clone, Copy)]
struct Flags {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
}

fn pad(s: String, width: Option<usize>, flags: Flags, numeric: bool) -> String {
    let Some(w) = width else { return s };
    let len = s.chars().count();
    if len >= w {
        return s;
    }
    let fill = w - len;
    if flags.minus {
        return format!("{s}{}", " ".repeat(fill));
    }
    if flags.zero && numeric {
        // Zero padding goes after the sign.
        let (sign, rest) = match s.chars().next() {
            Some(c @ ('-' | '+' | ' ')) => (c.to_string(), s[1..].to_string()),
            _ => (String::new(), s.clone()),
        };
        if rest
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == 'e' || c == '+' || c == '-')
        {
            return format!("{sign}{}{rest}", "0".repeat(fill));
        }
    }
    format!("{}{s}", " ".repeat(fill))
}

fn sign(s: String, flags: Flags) -> String {
    if s.starts_with('-') {
        s
    } else if flags.plus {
        format!("+{s}")
    } else if flags.space {
        format!(" {s}")
    } else {
        s
    }
}

fn bad_verb(verb: char, arg: &Value) -> String {
    match arg {
        Value::Nil => format!("%!{verb}(<nil>)"),
        _ => format!("%!{verb}({}={})", arg.type_name(), arg.to_go_string()),
    }
}

fn hex_str(s: &str, upper: bool) -> String {
    s.bytes()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

fn format_one(verb: char, arg: &Value, flags: Flags, prec: Option<usize>) -> (String, bool) {
    match (verb, arg) {
        ('v', Value::Float(f)) => (sign(format_float_v(*f), flags), true),
        ('v', Value::Int(i)) => (sign(i.to_string(), flags), true),
        ('v', Value::Nil) => ("<nil>".into(), false),
        ('v', other) => (other.to_go_string(), false),
        ('s', Value::String(s)) => (
            match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
            false,
        ),
        ('s', Value::Array(_) | Value::Map(_) | Value::Bool(_)) => (arg.to_go_string(), false),
        ('q', Value::String(s)) => (go_quote(s), false),
        ('t', Value::Bool(b)) => (b.to_string(), false),
        ('d', Value::Int(i)) => (sign(i.to_string(), flags), true),
        ('x' | 'X', Value::Int(i)) => {
            let s = if verb == 'x' {
                format!("{:x}", i.unsigned_abs())
            } else {
                format!("{:X}", i.unsigned_abs())
            };
            let s = if flags.sharp { format!("0x{s}") } else { s };
            (sign(if *i < 0 { format!("-{s}") } else { s }, flags), true)
        }
        ('x' | 'X', Value::String(s)) => (hex_str(s, verb == 'X'), false),
        ('o', Value::Int(i)) => (sign(format!("{i:o}"), flags), true),
        ('b', Value::Int(i)) => (sign(format!("{i:b}"), flags), true),
        ('c', Value::Int(i)) => (
            char::from_u32(*i as u32)
                .map(String::from)
                .unwrap_or_else(|| "\u{fffd}".into()),
            false,
        ),
        ('f' | 'F', Value::Float(f)) => (sign(format_float_f(*f, prec.unwrap_or(6)), flags), true),
        ('e' | 'E', Value::Float(f)) => (
            sign(format_float_e(*f, prec.unwrap_or(6), verb == 'E'), flags),
            true,
        ),
        ('g' | 'G', Value::Float(f)) => (sign(format_float_g(*f, prec, verb == 'G'), flags), true),
        _ => (bad_verb(verb, arg), false),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %q %d %f %e %g %x
/// %X %o %b %c %t %%`, flags `-+ 0#`, width and precision (also `*`).
/// Mismatches are rendered the way Go renders them (`%!d(float64=1.5)`,
/// `%!s(MISSING)`, `%!(EXTRA …)`), not reported as errors.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut argi = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = Flags::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => flags.minus = true,
                '+' => flags.plus = true,
                ' ' => flags.space = true,
                '0' => flags.zero = true,
                '#' => flags.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let mut width = None;
        if chars.peek() == Some(&'*') {
            chars.next();
            if let Some(Value::Int(w)) = args.get(argi) {
                width = Some(w.unsigned_abs() as usize);
                if *w < 0 {
                    flags.minus = true;
                }
            }
            argi += 1;
        } else {
            let mut w = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                w.push(d);
                chars.next();
            }
            width = w.parse().ok();
        }
        let mut prec = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            if chars.peek() == Some(&'*') {
                chars.next();
                if let Some(Value::Int(p)) = args.get(argi) {
                    prec = Some((*p).max(0) as usize);
                }
                argi += 1;
            } else {
                let mut p = String::new();
                while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    p.push(d);
                    chars.next();
                }
                prec = Some(p.parse().unwrap_or(0));
            }
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argi) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        argi += 1;
        let (s, numeric) = format_one(verb, arg, flags, prec);
        out.push_str(&pad(s, width, flags, numeric));
    }
    if argi < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[argi..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("{}={}", a.type_name(), a.to_go_string()));
        }
        out.push(')');
    }
    out
}

/// Go's `fmt.Sprint`: operands joined, with a space between two operands
/// when neither is a string.
pub fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            let prev_str = matches!(args[i - 1], Value::String(_));
            let this_str = matches!(a, Value::String(_));
            if !prev_str && !this_str {
                out.push(' ');
            }
        }
        out.push_str(&go_v(a));
    }
    out
}

/// Go's `fmt.Sprintln`: operands always space-separated, newline appended.
pub fn sprintln(args: &[Value]) -> String {
    let parts: Vec<String> = args.iter().map(go_v).collect();
    format!("{}\n", parts.join(" "))
}

fn go_v(v: &Value) -> String {
    match v {
        Value::Nil => "<nil>".into(),
        other => other.to_go_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_matches_go() {
        // Expected strings are what Go's fmt.Sprint prints for these float64s.
        let cases = [
            (0.95, "0.95"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.0, "1"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (1e21, "1e+21"),
            (100.0, "100"),
        ];
        for (v, want) in cases {
            assert_eq!(format_float_v(v), want, "{v}");
        }
    }

    #[test]
    fn precision_g_matches_go() {
        let cases = [
            (1.0, "1"),
            (123.0, "123"),
            (1234.0, "1234"),
            (10000.0, "1e+04"),
            (12346.0, "1.235e+04"),
            (0.5, "0.5"),
            (1.23456, "1.235"),
            (0.000012345, "1.234e-05"),
        ];
        for (v, want) in cases {
            assert_eq!(format_float_g(v, Some(4), false), want, "{v}");
        }
    }

    #[test]
    fn sprintf_verbs() {
        let f = Value::Float(1.23456);
        assert_eq!(sprintf("%.2f", std::slice::from_ref(&f)), "1.23");
        assert_eq!(sprintf("%f", std::slice::from_ref(&f)), "1.234560");
        assert_eq!(sprintf("%v|%s", &[f.clone(), "x".into()]), "1.23456|x");
        assert_eq!(sprintf("%d", &[Value::Int(42)]), "42");
        assert_eq!(
            sprintf(
                "%5d|%-5d|%05d",
                &[Value::Int(42), Value::Int(42), Value::Int(-42)]
            ),
            "   42|42   |-0042"
        );
        assert_eq!(sprintf("%x %X", &[Value::Int(255), "hi".into()]), "ff 6869");
        assert_eq!(sprintf("%q", &["a\"b\n".into()]), "\"a\\\"b\\n\"");
        assert_eq!(
            sprintf("%d", std::slice::from_ref(&f)),
            "%!d(float64=1.23456)"
        );
        assert_eq!(sprintf("%d %d", &[Value::Int(1)]), "1 %!d(MISSING)");
        assert_eq!(
            sprintf("%d", &[Value::Int(1), Value::Int(2)]),
            "1%!(EXTRA int=2)"
        );
        assert_eq!(sprintf("100%%", &[]), "100%");
        assert_eq!(sprintf("%e", &[Value::Float(123456.0)]), "1.234560e+05");
        assert_eq!(sprintf("%g", &[Value::Float(1e-7)]), "1e-07");
        assert_eq!(sprintf("%.3s", &["abcdef".into()]), "abc");
        assert_eq!(sprintf("%t", &[Value::Bool(true)]), "true");
        assert_eq!(sprintf("%+.1f", &[Value::Float(2.0)]), "+2.0");
    }

    #[test]
    fn sprint_spacing() {
        assert_eq!(sprint(&[Value::Int(1), Value::Int(2)]), "1 2");
        assert_eq!(sprint(&["a".into(), Value::Int(2), "b".into()]), "a2b");
        assert_eq!(sprintln(&["a".into(), Value::Int(2)]), "a 2\n");
    }
}
