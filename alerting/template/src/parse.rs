//! Lexing and parsing Go `text/template` source into a tree.
//!
//! The lexer splits text from `{{ … }}` actions (honouring `{{-`/`-}}` trim
//! markers and `{{/* comments */}}`) and tokenizes each action; the parser
//! builds the control structure (`if`/`range`/`with`/`define`/`block`) and
//! pipelines. Every error carries the 1-based line and column of its token.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ParseError;

/// A pipeline: optional variable declaration/assignment, then commands
/// joined by `|`.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    pub line: usize,
    /// Variables on the left of `:=` / `=` (at most two, for `range`).
    pub vars: Vec<String>,
    /// True for `=` (assign existing), false for `:=` (declare).
    pub assign: bool,
    pub cmds: Vec<Command>,
}

#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// `.` or `.A.B` (chain may be empty for `.`).
    Field(Vec<String>),
    /// `$x.A.B` (`$` is the name "").
    Var(String, Vec<String>),
    /// A function name.
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    /// `( pipeline ).A.B`
    Sub(Box<Pipeline>, Vec<String>),
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
    Template(String, Option<Pipeline>, usize),
    Break,
    Continue,
}

/// Parsed source: the top-level list and the templates it defines.
pub(crate) struct Parsed {
    pub root: Vec<Node>,
    pub defines: HashMap<String, Arc<Vec<Node>>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `.` (empty chain) or `.A.B`.
    Field(Vec<String>),
    /// `$name.A.B` (`$` alone has the empty name).
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Char(i64),
    Pipe,
    Declare,
    Assign,
    Comma,
    LParen,
    RParen,
    /// A `.Field` directly after `)`: chained field access.
    ChainField(String),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    col: usize,
}

enum Item {
    Text(String),
    Action(Vec<Token>, usize, usize),
}

struct Lexer<'a> {
    name: &'a str,
    src: &'a [u8],
    text: &'a str,
    pos: usize,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

impl<'a> Lexer<'a> {
    fn line_col(&self, pos: usize) -> (usize, usize) {
        let before = &self.text[..pos.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
            + 1;
        (line, col)
    }

    fn err(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        let (line, column) = self.line_col(pos);
        ParseError {
            name: self.name.to_string(),
            line,
            column,
            message: msg.into(),
        }
    }

    fn items(mut self) -> Result<Vec<Item>, ParseError> {
        let mut items = Vec::new();
        let mut trim_next = false;
        while self.pos <= self.src.len() {
            let rest = &self.text[self.pos..];
            let open = rest.find("{{");
            let mut text = match open {
                Some(i) => rest[..i].to_string(),
                None => rest.to_string(),
            };
            if trim_next {
                text = text
                    .trim_start_matches(|c: char| is_space(c as u8) && c.is_ascii())
                    .to_string();
            }
            let Some(i) = open else {
                if !text.is_empty() {
                    items.push(Item::Text(text));
                }
                break;
            };
            let start = self.pos + i;
            self.pos = start + 2;
            // `{{-` is a trim marker only when followed by whitespace.
            let trim_left = self.src.get(self.pos) == Some(&b'-')
                && self.src.get(self.pos + 1).is_some_and(|b| is_space(*b));
            if trim_left {
                text = text
                    .trim_end_matches(|c: char| c.is_ascii() && is_space(c as u8))
                    .to_string();
                self.pos += 1;
            }
            if !text.is_empty() {
                items.push(Item::Text(text));
            }
            // Comments: `{{/*` (or `{{- /*`) up to `*/` then `}}` or ` -}}`.
            let mut p = self.pos;
            while trim_left && p < self.src.len() && is_space(self.src[p]) {
                p += 1;
            }
            if self.text[p..].starts_with("/*") {
                let Some(end) = self.text[p + 2..].find("*/") else {
                    return Err(self.err(start, "unclosed comment"));
                };
                let mut q = p + 2 + end + 2;
                let after = &self.text[q..];
                if after.starts_with(" -}}")
                    || after.starts_with("\t-}}")
                    || after.starts_with("\n-}}")
                {
                    trim_next = true;
                    q += 4;
                } else if after.starts_with("}}") {
                    trim_next = false;
                    q += 2;
                } else {
                    return Err(self.err(q, "comment ends before closing delimiter"));
                }
                self.pos = q;
                continue;
            }
            let (toks, trim_right) = self.action(start)?;
            let (line, col) = self.line_col(start);
            items.push(Item::Action(toks, line, col));
            trim_next = trim_right;
        }
        Ok(items)
    }

    /// Tokenizes one action from `self.pos` up to and including `}}`.
    fn action(&mut self, start: usize) -> Result<(Vec<Token>, bool), ParseError> {
        let mut toks = Vec::new();
        loop {
            while self.pos < self.src.len() && is_space(self.src[self.pos]) {
                // ` -}}` closes with a right trim.
                if self.text[self.pos + 1..].starts_with("-}}") {
                    self.pos += 4;
                    return Ok((toks, true));
                }
                self.pos += 1;
            }
            if self.pos >= self.src.len() {
                return Err(self.err(start, "unclosed action"));
            }
            let at = self.pos;
            let (line, col) = self.line_col(at);
            let push = |toks: &mut Vec<Token>, tok| toks.push(Token { tok, line, col });
            let rest = &self.text[at..];
            let c = self.src[at];
            if rest.starts_with("}}") {
                self.pos += 2;
                return Ok((toks, false));
            }
            match c {
                b'|' => {
                    self.pos += 1;
                    push(&mut toks, Tok::Pipe);
                }
                b',' => {
                    self.pos += 1;
                    push(&mut toks, Tok::Comma);
                }
                b'(' => {
                    self.pos += 1;
                    push(&mut toks, Tok::LParen);
                }
                b')' => {
                    self.pos += 1;
                    push(&mut toks, Tok::RParen);
                    // `).Field` chains
                    while self.src.get(self.pos) == Some(&b'.')
                        && self
                            .src
                            .get(self.pos + 1)
                            .is_some_and(|b| is_ident_start(*b))
                    {
                        self.pos += 1;
                        let name = self.ident();
                        push(&mut toks, Tok::ChainField(name));
                    }
                }
                b':' if rest.starts_with(":=") => {
                    self.pos += 2;
                    push(&mut toks, Tok::Declare);
                }
                b'=' => {
                    self.pos += 1;
                    push(&mut toks, Tok::Assign);
                }
                b'"' => {
                    let s = self.quoted()?;
                    push(&mut toks, Tok::Str(s));
                }
                b'`' => {
                    let Some(end) = rest[1..].find('`') else {
                        return Err(self.err(at, "unterminated raw quoted string"));
                    };
                    push(&mut toks, Tok::Str(rest[1..1 + end].to_string()));
                    self.pos += end + 2;
                }
                b'\'' => {
                    let v = self.char_const()?;
                    push(&mut toks, Tok::Char(v));
                }
                b'$' => {
                    self.pos += 1;
                    let name = self.ident();
                    let chain = self.fields();
                    push(&mut toks, Tok::Var(name, chain));
                }
                b'.' if self.src.get(at + 1).is_some_and(|b| b.is_ascii_digit()) => {
                    let t = self.number()?;
                    push(&mut toks, t);
                }
                b'.' => {
                    if self.src.get(at + 1).is_some_and(|b| is_ident_start(*b)) {
                        let chain = self.fields();
                        push(&mut toks, Tok::Field(chain));
                    } else {
                        self.pos += 1;
                        push(&mut toks, Tok::Field(Vec::new()));
                    }
                }
                b'-' | b'+' | b'0'..=b'9' => {
                    let t = self.number()?;
                    push(&mut toks, t);
                }
                c if is_ident_start(c) => {
                    let name = self.ident();
                    push(&mut toks, Tok::Ident(name));
                }
                _ => {
                    let ch = rest.chars().next().unwrap_or('?');
                    return Err(self.err(at, format!("unexpected {ch:?} in command")));
                }
            }
        }
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while self.pos < self.src.len() && is_ident_char(self.src[self.pos]) {
            self.pos += 1;
        }
        self.text[start..self.pos].to_string()
    }

    /// Reads a directly adjacent `.A.B.C` chain.
    fn fields(&mut self) -> Vec<String> {
        let mut chain = Vec::new();
        while self.src.get(self.pos) == Some(&b'.')
            && self
                .src
                .get(self.pos + 1)
                .is_some_and(|b| is_ident_start(*b))
        {
            self.pos += 1;
            chain.push(self.ident());
        }
        chain
    }

    fn quoted(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.text[self.pos..].chars().next() else {
                return Err(self.err(start, "unterminated quoted string"));
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\n' => return Err(self.err(start, "unterminated quoted string")),
                '\\' => {
                    let Some(e) = self.text[self.pos..].chars().next() else {
                        return Err(self.err(start, "unterminated quoted string"));
                    };
                    self.pos += e.len_utf8();
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'a' => out.push('\x07'),
                        'b' => out.push('\x08'),
                        'f' => out.push('\x0c'),
                        'v' => out.push('\x0b'),
                        '\\' => out.push('\\'),
                        '"' => out.push('"'),
                        '\'' => out.push('\''),
                        'x' | 'u' | 'U' => {
                            let n = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex = self.text.get(self.pos..self.pos + n).unwrap_or("");
                            let v = u32::from_str_radix(hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.err(start, "invalid escape in string"))?;
                            self.pos += n;
                            out.push(v);
                        }
                        _ => return Err(self.err(start, "invalid escape in string")),
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn char_const(&mut self) -> Result<i64, ParseError> {
        let start = self.pos;
        let rest = &self.text[self.pos + 1..];
        let mut it = rest.chars();
        let c = it
            .next()
            .ok_or_else(|| self.err(start, "unterminated character constant"))?;
        let (v, len) = if c == '\\' {
            let e = it
                .next()
                .ok_or_else(|| self.err(start, "unterminated character constant"))?;
            let v = match e {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '\\' => '\\',
                '\'' => '\'',
                '0' => '\0',
                _ => return Err(self.err(start, "invalid escape in character constant")),
            };
            (v, 1 + e.len_utf8())
        } else {
            (c, c.len_utf8())
        };
        if !rest[len..].starts_with('\'') {
            return Err(self.err(start, "unterminated character constant"));
        }
        self.pos += 1 + len + 1;
        Ok(v as i64)
    }

    fn number(&mut self) -> Result<Tok, ParseError> {
        let start = self.pos;
        let mut end = start;
        if matches!(self.src.get(end), Some(b'-' | b'+')) {
            end += 1;
        }
        while end < self.src.len() {
            let b = self.src[end];
            let prev = self.src[end - 1];
            if b.is_ascii_alphanumeric()
                || b == b'.'
                || b == b'_'
                || (matches!(b, b'+' | b'-') && matches!(prev, b'e' | b'E' | b'p' | b'P'))
            {
                end += 1;
            } else {
                break;
            }
        }
        let lit = self.text[start..end].replace('_', "");
        self.pos = end;
        let (neg, body) = match lit.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, lit.strip_prefix('+').unwrap_or(&lit)),
        };
        let lower = body.to_ascii_lowercase();
        let int = if let Some(h) = lower.strip_prefix("0x") {
            i64::from_str_radix(h, 16).ok()
        } else if let Some(o) = lower.strip_prefix("0o") {
            i64::from_str_radix(o, 8).ok()
        } else if let Some(b) = lower.strip_prefix("0b") {
            i64::from_str_radix(b, 2).ok()
        } else if lower.len() > 1
            && lower.starts_with('0')
            && lower.bytes().all(|b| b.is_ascii_digit())
        {
            i64::from_str_radix(&lower[1..], 8).ok()
        } else {
            lower.parse::<i64>().ok()
        };
        if let Some(i) = int {
            return Ok(Tok::Int(if neg { -i } else { i }));
        }
        match lower.parse::<f64>() {
            Ok(f) if !lower.contains("inf") && !lower.contains("nan") => {
                Ok(Tok::Float(if neg { -f } else { f }))
            }
            _ => Err(self.err(
                start,
                format!("bad number syntax: {:?}", &self.text[start..end]),
            )),
        }
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// What ended a list of nodes.
enum Closer {
    Eof,
    End,
    Else(Vec<Token>, usize, usize),
}

struct Parser<'a> {
    name: &'a str,
    items: std::vec::IntoIter<Item>,
    defines: HashMap<String, Arc<Vec<Node>>>,
    depth: usize,
    /// How many `range` bodies enclose the current position (for break/continue).
    range_depth: usize,
}

const MAX_NESTING: usize = 200;

impl Parser<'_> {
    fn err(&self, line: usize, col: usize, msg: impl Into<String>) -> ParseError {
        ParseError {
            name: self.name.to_string(),
            line,
            column: col,
            message: msg.into(),
        }
    }

    fn list(&mut self, top: bool) -> Result<(Vec<Node>, Closer), ParseError> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            let (toks, line, col) = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action(t, l, c) => (t, l, c),
            };
            let Some(first) = toks.first() else {
                return Err(self.err(line, col, "missing value for command"));
            };
            let kw = match &first.tok {
                Tok::Ident(k) => k.as_str(),
                _ => "",
            };
            match kw {
                "end" => {
                    if toks.len() > 1 {
                        return Err(self.err(line, col, "unexpected tokens after end"));
                    }
                    if top {
                        return Err(self.err(line, col, "unexpected {{end}}"));
                    }
                    return Ok((nodes, Closer::End));
                }
                "else" => {
                    if top {
                        return Err(self.err(line, col, "unexpected {{else}}"));
                    }
                    return Ok((nodes, Closer::Else(toks[1..].to_vec(), line, col)));
                }
                "if" | "range" | "with" => {
                    let node = self.control(kw, &toks[1..], line, col)?;
                    nodes.push(node);
                }
                "define" => {
                    if !top || self.depth > 0 {
                        return Err(self.err(line, col, "unexpected define in a nested context"));
                    }
                    let name = template_name(&toks[1..])
                        .ok_or_else(|| self.err(line, col, "define needs a quoted name"))?;
                    if toks.len() != 2 {
                        return Err(self.err(line, col, "unexpected tokens in define"));
                    }
                    let body = self.body(line, col)?;
                    self.defines.insert(name, Arc::new(body));
                }
                "block" => {
                    let name = template_name(&toks[1..])
                        .ok_or_else(|| self.err(line, col, "block needs a quoted name"))?;
                    let pipe = self.pipeline(&toks[2..], line, col, false)?;
                    let body = self.body(line, col)?;
                    self.defines.insert(name.clone(), Arc::new(body));
                    nodes.push(Node::Template(name, pipe, line));
                }
                "template" => {
                    let name = template_name(&toks[1..])
                        .ok_or_else(|| self.err(line, col, "template needs a quoted name"))?;
                    let pipe = self.pipeline(&toks[2..], line, col, false)?;
                    nodes.push(Node::Template(name, pipe, line));
                }
                "break" | "continue" => {
                    if toks.len() > 1 {
                        return Err(self.err(line, col, format!("unexpected tokens after {kw}")));
                    }
                    if self.range_depth == 0 {
                        return Err(self.err(
                            line,
                            col,
                            format!("{{{{{kw}}}}} outside {{{{range}}}}"),
                        ));
                    }
                    nodes.push(if kw == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                }
                _ => {
                    let pipe = self
                        .pipeline(&toks, line, col, true)?
                        .ok_or_else(|| self.err(line, col, "missing value for command"))?;
                    nodes.push(Node::Action(pipe));
                }
            }
        }
        if top {
            Ok((nodes, Closer::Eof))
        } else {
            Err(self.err(0, 0, "unexpected EOF"))
        }
    }

    /// Parses a body that must end with `{{end}}` (define/block).
    fn body(&mut self, line: usize, col: usize) -> Result<Vec<Node>, ParseError> {
        self.depth += 1;
        let r = self.list(false);
        self.depth -= 1;
        match r {
            Ok((nodes, Closer::End)) => Ok(nodes),
            Ok(_) => Err(self.err(line, col, "unexpected {{else}} in define/block")),
            Err(e) if e.line == 0 => {
                Err(self.err(line, col, "unexpected EOF: unclosed define/block"))
            }
            Err(e) => Err(e),
        }
    }

    fn control(
        &mut self,
        kw: &str,
        toks: &[Token],
        line: usize,
        col: usize,
    ) -> Result<Node, ParseError> {
        if self.depth >= MAX_NESTING {
            return Err(self.err(line, col, "template nested too deeply"));
        }
        let pipe = self
            .pipeline(toks, line, col, true)?
            .ok_or_else(|| self.err(line, col, format!("missing value for {kw}")))?;
        if kw == "range" && pipe.vars.len() > 2 || kw != "range" && pipe.vars.len() > 1 {
            return Err(self.err(line, col, "too many declarations"));
        }
        self.depth += 1;
        let in_range = usize::from(kw == "range");
        self.range_depth += in_range;
        let r = self.list(false);
        self.range_depth -= in_range;
        self.depth -= 1;
        let (body, end) = match r {
            Err(e) if e.line == 0 => {
                return Err(self.err(line, col, format!("unexpected EOF: unclosed {kw}")));
            }
            r => r?,
        };
        let else_list = match end {
            Closer::End | Closer::Eof => Vec::new(),
            Closer::Else(rest, eline, ecol) => {
                if rest.is_empty() {
                    self.depth += 1;
                    let r = self.list(false);
                    self.depth -= 1;
                    match r {
                        Ok((nodes, Closer::End)) => nodes,
                        Ok(_) => return Err(self.err(eline, ecol, "expected end; found else")),
                        Err(e) if e.line == 0 => {
                            return Err(self.err(
                                line,
                                col,
                                format!("unexpected EOF: unclosed {kw}"),
                            ));
                        }
                        Err(e) => return Err(e),
                    }
                } else {
                    // `{{else if …}}` / `{{else with …}}` nest a new
                    // control that shares this one's {{end}}.
                    let kw2 = match &rest[0].tok {
                        Tok::Ident(k) if k == "if" || k == "with" => k.clone(),
                        _ => return Err(self.err(eline, ecol, "unexpected tokens after else")),
                    };
                    vec![self.control(&kw2, &rest[1..], eline, ecol)?]
                }
            }
        };
        Ok(match kw {
            "if" => Node::If(pipe, body, else_list),
            "range" => Node::Range(pipe, body, else_list),
            _ => Node::With(pipe, body, else_list),
        })
    }

    fn pipeline(
        &self,
        toks: &[Token],
        line: usize,
        col: usize,
        allow_decl: bool,
    ) -> Result<Option<Pipeline>, ParseError> {
        if toks.is_empty() {
            return Ok(None);
        }
        let mut vars = Vec::new();
        let mut assign = false;
        let mut rest = toks;
        // `$x :=`, `$x =`, `$i, $v :=`
        let decl_end = toks
            .iter()
            .position(|t| matches!(t.tok, Tok::Declare | Tok::Assign));
        if let Some(d) = decl_end {
            let lhs = &toks[..d];
            let ok = !lhs.is_empty()
                && lhs.iter().enumerate().all(|(i, t)| {
                    if i % 2 == 0 {
                        matches!(&t.tok, Tok::Var(_, c) if c.is_empty())
                    } else {
                        t.tok == Tok::Comma
                    }
                })
                && lhs.len() % 2 == 1;
            if ok {
                if !allow_decl {
                    return Err(self.err(line, col, "variable declaration not allowed here"));
                }
                for t in lhs.iter().step_by(2) {
                    if let Tok::Var(n, _) = &t.tok {
                        if n.is_empty() {
                            return Err(self.err(line, col, "cannot assign to $"));
                        }
                        vars.push(n.clone());
                    }
                }
                assign = toks[d].tok == Tok::Assign;
                if assign && vars.len() > 1 {
                    return Err(self.err(line, col, "only one variable may be assigned"));
                }
                rest = &toks[d + 1..];
            }
        }
        let mut pos = 0;
        let pipe = self.parse_cmds(rest, &mut pos, line, col, false)?;
        if pos != rest.len() {
            let t = &rest[pos];
            return Err(self.err(t.line, t.col, format!("unexpected {:?} in operand", t.tok)));
        }
        Ok(Some(Pipeline {
            line,
            vars,
            assign,
            cmds: pipe,
        }))
    }

    fn parse_cmds(
        &self,
        toks: &[Token],
        pos: &mut usize,
        line: usize,
        col: usize,
        in_paren: bool,
    ) -> Result<Vec<Command>, ParseError> {
        let mut cmds = Vec::new();
        let mut args = Vec::new();
        while *pos < toks.len() {
            let t = &toks[*pos];
            match &t.tok {
                Tok::Pipe => {
                    if args.is_empty() {
                        return Err(self.err(t.line, t.col, "missing command before |"));
                    }
                    cmds.push(Command {
                        args: std::mem::take(&mut args),
                    });
                    *pos += 1;
                }
                Tok::RParen if in_paren => break,
                _ => {
                    let a = self.operand(toks, pos, line, col)?;
                    args.push(a);
                }
            }
        }
        if args.is_empty() {
            return Err(self.err(line, col, "missing value for command"));
        }
        cmds.push(Command { args });
        Ok(cmds)
    }

    fn operand(
        &self,
        toks: &[Token],
        pos: &mut usize,
        line: usize,
        col: usize,
    ) -> Result<Arg, ParseError> {
        let t = &toks[*pos];
        *pos += 1;
        Ok(match &t.tok {
            Tok::Field(chain) => Arg::Field(chain.clone()),
            Tok::Var(n, chain) => Arg::Var(n.clone(), chain.clone()),
            Tok::Ident(n) => match n.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                _ => Arg::Ident(n.clone()),
            },
            Tok::Str(s) => Arg::Str(s.clone()),
            Tok::Int(i) | Tok::Char(i) => Arg::Int(*i),
            Tok::Float(f) => Arg::Float(*f),
            Tok::LParen => {
                let cmds = self.parse_cmds(toks, pos, t.line, t.col, true)?;
                if toks.get(*pos).map(|t| &t.tok) != Some(&Tok::RParen) {
                    return Err(self.err(t.line, t.col, "unclosed left paren"));
                }
                *pos += 1;
                let mut chain = Vec::new();
                while let Some(Token {
                    tok: Tok::ChainField(n),
                    ..
                }) = toks.get(*pos)
                {
                    chain.push(n.clone());
                    *pos += 1;
                }
                Arg::Sub(
                    Box::new(Pipeline {
                        line,
                        vars: Vec::new(),
                        assign: false,
                        cmds,
                    }),
                    chain,
                )
            }
            other => {
                let _ = col;
                return Err(self.err(t.line, t.col, format!("unexpected {other:?} in operand")));
            }
        })
    }
}

fn template_name(toks: &[Token]) -> Option<String> {
    match toks.first().map(|t| &t.tok) {
        Some(Tok::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Parses `text` (named `name` in error messages).
pub(crate) fn parse(name: &str, text: &str) -> Result<Parsed, ParseError> {
    let lexer = Lexer {
        name,
        src: text.as_bytes(),
        text,
        pos: 0,
    };
    let items = lexer.items()?;
    let mut p = Parser {
        name,
        items: items.into_iter(),
        defines: HashMap::new(),
        depth: 0,
        range_depth: 0,
    };
    let (root, _) = p.list(true)?;
    Ok(Parsed {
        root,
        defines: p.defines,
    })
}
