//! Executing a parsed template against data.
//!
//! Semantics follow Go's `text/template`: `.` is the cursor (rebound by
//! `range` and `with`), `$` the root, variables are block-scoped, a
//! pipeline's previous result becomes the last argument of the next command,
//! and execution errors stop the run and are returned (never panics).

use std::collections::HashMap;
use std::sync::Arc;

use crate::parse::{Arg, Command, Node, Pipeline};
use crate::value::Value;
use crate::{ExecError, Funcs, Resolver};

/// Guards recursion through `{{template}}` (Go allows 100000 frames; we
/// keep well within Rust's stack).
const MAX_DEPTH: usize = 500;

pub(crate) struct Ctx<'a> {
    pub name: &'a str,
    pub defines: &'a HashMap<String, Arc<Vec<Node>>>,
    pub funcs: &'a Funcs,
    pub resolver: Option<&'a Resolver>,
    pub out: String,
    /// Escape printed values for HTML text (Go's `html/template`).
    pub escape_html: bool,
    vars: Vec<(String, Value)>,
    depth: usize,
}

enum Flow {
    Normal,
    Break,
    Continue,
}

impl<'a> Ctx<'a> {
    pub fn new(
        name: &'a str,
        defines: &'a HashMap<String, Arc<Vec<Node>>>,
        funcs: &'a Funcs,
        resolver: Option<&'a Resolver>,
        root: &Value,
    ) -> Self {
        Ctx {
            name,
            defines,
            funcs,
            resolver,
            out: String::new(),
            escape_html: false,
            vars: vec![(String::new(), root.clone())],
            depth: 0,
        }
    }

    fn err(&self, line: usize, msg: impl Into<String>) -> ExecError {
        ExecError {
            name: self.name.to_string(),
            line,
            message: msg.into(),
        }
    }

    pub fn run_list(&mut self, nodes: &[Node], dot: &Value) -> Result<(), ExecError> {
        match self.list(nodes, dot)? {
            Flow::Normal => Ok(()),
            Flow::Break | Flow::Continue => Err(self.err(0, "break or continue outside range")),
        }
    }

    fn list(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, ExecError> {
        for n in nodes {
            match self.node(n, dot)? {
                Flow::Normal => {}
                f => return Ok(f),
            }
        }
        Ok(Flow::Normal)
    }

    /// Runs `nodes` in a new variable scope.
    fn scoped(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, ExecError> {
        let mark = self.vars.len();
        let r = self.list(nodes, dot);
        self.vars.truncate(mark);
        r
    }

    fn node(&mut self, node: &Node, dot: &Value) -> Result<Flow, ExecError> {
        match node {
            Node::Text(t) => self.out.push_str(t),
            Node::Action(p) => {
                let v = self.pipeline(p, dot)?;
                if p.vars.is_empty() {
                    let s = v.to_go_string();
                    if self.escape_html {
                        html_escape_into(&mut self.out, &s);
                    } else {
                        self.out.push_str(&s);
                    }
                }
            }
            Node::If(p, body, els) | Node::With(p, body, els) => {
                let mark = self.vars.len();
                let v = self.pipeline(p, dot);
                let r = match v {
                    Ok(v) if v.truthy() => {
                        if matches!(node, Node::With(..)) {
                            self.scoped(body, &v)
                        } else {
                            self.scoped(body, dot)
                        }
                    }
                    Ok(_) => self.scoped(els, dot),
                    Err(e) => Err(e),
                };
                self.vars.truncate(mark);
                return r;
            }
            Node::Range(p, body, els) => return self.range(p, body, els, dot),
            Node::Template(name, p, line) => {
                let Some(t) = self.defines.get(name).cloned() else {
                    return Err(self.err(*line, format!("no such template {name:?}")));
                };
                let data = match p {
                    Some(p) => self.pipeline(p, dot)?,
                    None => Value::Nil,
                };
                if self.depth >= MAX_DEPTH {
                    return Err(self.err(*line, "exceeded maximum template depth"));
                }
                // A template runs with fresh variables: only `$` = its data.
                let saved = std::mem::replace(&mut self.vars, vec![(String::new(), data.clone())]);
                self.depth += 1;
                let r = self.list(&t, &data);
                self.depth -= 1;
                self.vars = saved;
                r?;
            }
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn range(
        &mut self,
        p: &Pipeline,
        body: &[Node],
        els: &[Node],
        dot: &Value,
    ) -> Result<Flow, ExecError> {
        let mark = self.vars.len();
        // Evaluate without declaring: range binds the variables per element.
        let decl = Pipeline {
            line: p.line,
            vars: Vec::new(),
            assign: false,
            cmds: p.cmds.clone(),
        };
        let v = self.pipeline(&decl, dot)?;
        let items: Vec<(Value, Value)> = match v {
            Value::Array(a) => a
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Value::Int(i as i64), v))
                .collect(),
            Value::Map(m) => m.into_iter().map(|(k, v)| (Value::String(k), v)).collect(),
            Value::Int(n) => (0..n.max(0))
                .map(|i| (Value::Int(i), Value::Int(i)))
                .collect(),
            Value::Nil => Vec::new(),
            other => {
                return Err(self.err(
                    p.line,
                    format!("range can't iterate over {}", other.to_go_string()),
                ));
            }
        };
        if items.is_empty() {
            let r = self.scoped(els, dot);
            self.vars.truncate(mark);
            return r;
        }
        for (k, v) in items {
            let inner = self.vars.len();
            match p.vars.as_slice() {
                [one] => self.bind(p, one, v.clone())?,
                [a, b] => {
                    self.bind(p, a, k)?;
                    self.bind(p, b, v.clone())?;
                }
                _ => {}
            }
            let r = self.scoped(body, &v);
            self.vars.truncate(inner);
            match r? {
                Flow::Break => break,
                Flow::Continue | Flow::Normal => {}
            }
        }
        self.vars.truncate(mark);
        Ok(Flow::Normal)
    }

    fn bind(&mut self, p: &Pipeline, name: &str, v: Value) -> Result<(), ExecError> {
        if p.assign {
            match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = v,
                None => return Err(self.err(p.line, format!("undefined variable: ${name}"))),
            }
        } else {
            self.vars.push((name.to_string(), v));
        }
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Value) -> Result<Value, ExecError> {
        let mut prev: Option<Value> = None;
        for cmd in &p.cmds {
            prev = Some(self.command(cmd, dot, prev, p.line)?);
        }
        let v = prev.unwrap_or_default();
        if let Some(name) = p.vars.first() {
            self.bind(p, name, v.clone())?;
        }
        Ok(v)
    }

    fn command(
        &mut self,
        cmd: &Command,
        dot: &Value,
        prev: Option<Value>,
        line: usize,
    ) -> Result<Value, ExecError> {
        let first = &cmd.args[0];
        let rest = &cmd.args[1..];
        match first {
            // `and`/`or` stop at the first argument that decides the result
            // (Go 1.18+), so `{{ and .A .A.B }}` never evaluates `.A.B`
            // when `.A` is empty.
            Arg::Ident(name)
                if (name == "and" || name == "or") && (!rest.is_empty() || prev.is_some()) =>
            {
                let want = name == "or";
                let mut last = Value::Nil;
                for a in rest {
                    last = self.arg(a, dot, line)?;
                    if last.truthy() == want {
                        return Ok(last);
                    }
                }
                Ok(prev.unwrap_or(last))
            }
            Arg::Ident(name) => {
                let mut args = Vec::with_capacity(rest.len() + 1);
                for a in rest {
                    args.push(self.arg(a, dot, line)?);
                }
                if let Some(p) = prev {
                    args.push(p);
                }
                self.call(name, &args, line)
            }
            Arg::Field(chain) if !chain.is_empty() && (!rest.is_empty() || prev.is_some()) => {
                // A method call with arguments, e.g. `.CommonLabels.Remove .GroupLabels.Names`.
                let recv = self.walk(dot.clone(), &chain[..chain.len() - 1], line)?;
                let args = self.method_args(rest, dot, prev, line)?;
                self.method(&recv, &chain[chain.len() - 1], &args, line)
            }
            Arg::Var(name, chain) if !chain.is_empty() && (!rest.is_empty() || prev.is_some()) => {
                let base = self.var(name, line)?;
                let recv = self.walk(base, &chain[..chain.len() - 1], line)?;
                let args = self.method_args(rest, dot, prev, line)?;
                self.method(&recv, &chain[chain.len() - 1], &args, line)
            }
            Arg::Nil => Err(self.err(line, "nil is not a command")),
            _ => {
                if !rest.is_empty() || prev.is_some() {
                    return Err(self.err(line, "can't give argument to non-function"));
                }
                self.arg(first, dot, line)
            }
        }
    }

    fn method_args(
        &mut self,
        rest: &[Arg],
        dot: &Value,
        prev: Option<Value>,
        line: usize,
    ) -> Result<Vec<Value>, ExecError> {
        let mut args = Vec::with_capacity(rest.len() + 1);
        for a in rest {
            args.push(self.arg(a, dot, line)?);
        }
        if let Some(p) = prev {
            args.push(p);
        }
        Ok(args)
    }

    fn method(
        &self,
        recv: &Value,
        name: &str,
        args: &[Value],
        line: usize,
    ) -> Result<Value, ExecError> {
        if let Some(res) = self.resolver.and_then(|r| r(recv, name, args)) {
            return res.map_err(|m| self.err(line, format!("error calling {name}: {m}")));
        }
        Err(self.err(line, format!("{name} is not a method but has arguments")))
    }

    fn var(&self, name: &str, line: usize) -> Result<Value, ExecError> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| self.err(line, format!("undefined variable: ${name}")))
    }

    fn arg(&mut self, a: &Arg, dot: &Value, line: usize) -> Result<Value, ExecError> {
        Ok(match a {
            Arg::Field(chain) => self.walk(dot.clone(), chain, line)?,
            Arg::Var(name, chain) => {
                let base = self.var(name, line)?;
                self.walk(base, chain, line)?
            }
            Arg::Ident(name) => self.call(name, &[], line)?,
            Arg::Str(s) => Value::String(s.clone()),
            Arg::Int(i) => Value::Int(*i),
            Arg::Float(f) => Value::Float(*f),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Nil,
            Arg::Sub(p, chain) => {
                let v = self.pipeline(p, dot)?;
                self.walk(v, chain, line)?
            }
        })
    }

    /// Follows `.A.B`: map keys first, then the caller's resolver (for
    /// method-like fields such as `.Alerts.Firing`); a missing map key is
    /// `Nil`, a field of a non-map an error.
    fn walk(&self, mut v: Value, chain: &[String], line: usize) -> Result<Value, ExecError> {
        for f in chain {
            v = self.field(&v, f, line)?;
        }
        Ok(v)
    }

    fn field(&self, v: &Value, f: &str, line: usize) -> Result<Value, ExecError> {
        if let Some(x) = match v {
            Value::Map(m) => m.get(f),
            _ => None,
        } {
            return Ok(x.clone());
        }
        if let Some(res) = self.resolver.and_then(|r| r(v, f, &[])) {
            return res.map_err(|m| self.err(line, format!("error calling {f}: {m}")));
        }
        match v {
            Value::Map(_) => Ok(Value::Nil),
            Value::Nil => Err(self.err(line, format!("nil pointer evaluating {f}"))),
            other => Err(self.err(
                line,
                format!("can't evaluate field {f} in type {}", other.type_name()),
            )),
        }
    }

    fn call(&self, name: &str, args: &[Value], line: usize) -> Result<Value, ExecError> {
        let Some(f) = self.funcs.get(name) else {
            return Err(self.err(line, format!("function {name:?} not defined")));
        };
        f(args).map_err(|m| self.err(line, format!("error calling {name}: {m}")))
    }
}

/// Go's `html/template` escaping of a value printed in HTML text.
fn html_escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\0' => out.push('\u{FFFD}'),
            '"' => out.push_str("&#34;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '+' => out.push_str("&#43;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}
