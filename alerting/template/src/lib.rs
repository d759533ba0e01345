//! The subset of Go's `text/template` that Prometheus rule annotations and
//! Alertmanager receiver templates use.
//!
//! Supported: text and `{{ }}` actions with `{{-`/`-}}` trim markers and
//! `{{/* comments */}}`; pipelines with `|`; variables (`$x := …`, `$x = …`,
//! `$`); field chains (`.A.B`, `$labels.name`, `(pipeline).Field`);
//! `if`/`else if`/`else`, `range` (arrays, maps in key order, ints; with
//! `$i, $v :=`, `else`, `break`, `continue`), `with`/`else with`,
//! `define`/`template`/`block`; Go's builtins (`and or not len index slice
//! print printf println html js urlquery eq ne lt le gt ge`) and the helpers
//! Prometheus and Alertmanager add (`humanize`, `humanize1024`,
//! `humanizeDuration`, `humanizePercentage`, `humanizeTimestamp`,
//! `toUpper`, `toLower`, `title`, `trimSpace`, `reReplaceAll`, `match`,
//! `safeHtml`, `stripPort`, `join`, `stringSlice`, `first`, `label`,
//! `value`, `sortByLabel`). Callers add functions with [`Template::funcs`]
//! and resolve method-like fields (Alertmanager's `.Alerts.Firing`,
//! `.SortedPairs`, `.Remove …`) with [`Template::resolver`].
//!
//! Numbers print as Go prints them: `{{ 0.95 }}` → `0.95`, a float
//! `1000000` → `1e+06`, `+Inf`, `NaN`.
//!
//! ```
//! use vigil_template::{Template, Value};
//! let t = Template::new("summary")
//!     .parse("{{ $labels := .Labels }}{{ $labels.instance }} is at {{ .Value | humanizePercentage }}")
//!     .unwrap();
//! let data = serde_json::json!({"Labels": {"instance": "db1"}, "Value": 0.8734});
//! assert_eq!(t.execute(&Value::from(data)).unwrap(), "db1 is at 87.34%");
//! ```

mod exec;
pub mod funcs;
mod parse;
pub mod printf;
mod value;

use std::collections::HashMap;
use std::sync::Arc;

pub use value::Value;

use parse::{Arg, Node, Pipeline};

/// A template function: receives evaluated arguments (a piped value comes
/// last), returns a value or an error message.
pub type Func = Arc<dyn Fn(&[Value]) -> Result<Value, String> + Send + Sync>;

/// Functions by name.
pub type Funcs = HashMap<String, Func>;

/// Resolves a field or method the data does not have as a map key:
/// `(receiver, name, args)`; `None` means "no such field/method".
pub type Resolver =
    Arc<dyn Fn(&Value, &str, &[Value]) -> Option<Result<Value, String>> + Send + Sync>;

/// A syntax error, with the template name and 1-based position. Displayed
/// as Go does (`template: NAME:LINE: MESSAGE`, no column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: {name}:{line}: {message}")]
pub struct ParseError {
    pub name: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// An execution error (missing function, wrong types, bad index…).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: {name}:{line}: {message}")]
pub struct ExecError {
    pub name: String,
    pub line: usize,
    pub message: String,
}

/// A parsed template set: a main body plus the templates it (and any
/// further [`Template::add_parse`] calls) defined.
#[derive(Clone)]
pub struct Template {
    name: String,
    root: Arc<Vec<Node>>,
    defines: HashMap<String, Arc<Vec<Node>>>,
    funcs: Funcs,
    resolver: Option<Resolver>,
    escape_html: bool,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("name", &self.name)
            .field("defines", &self.defines.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Template {
    /// An empty template named `name` with the built-in functions.
    pub fn new(name: impl Into<String>) -> Self {
        Template {
            name: name.into(),
            root: Arc::new(Vec::new()),
            defines: HashMap::new(),
            funcs: funcs::builtins(),
            resolver: None,
            escape_html: false,
        }
    }

    /// Adds (or overrides) functions. Call before parsing, as in Go, so
    /// the parser accepts their names.
    pub fn funcs(mut self, extra: impl IntoIterator<Item = (String, Func)>) -> Self {
        self.funcs.extend(extra);
        self
    }

    /// Adds one function.
    pub fn func<F>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static,
    {
        self.funcs.insert(name.to_string(), Arc::new(f));
        self
    }

    /// Escapes every value an action prints as Go's `html/template` does in
    /// HTML text (`<`, `>`, `&`, `'`, `"`, `+`); the template's own text is
    /// kept. Alertmanager renders Telegram's and Pushover's HTML this way.
    pub fn escape_html(mut self, on: bool) -> Self {
        self.escape_html = on;
        self
    }

    /// Sets the resolver for method-like fields.
    pub fn resolver(mut self, r: Resolver) -> Self {
        self.resolver = Some(r);
        self
    }

    /// Parses `text` as the main body (and its definitions).
    pub fn parse(mut self, text: &str) -> Result<Self, ParseError> {
        let p = parse::parse(&self.name, text)?;
        self.check_funcs(&p.root)?;
        for body in p.defines.values() {
            self.check_funcs(body)?;
        }
        self.root = Arc::new(p.root);
        self.defines.extend(p.defines);
        Ok(self)
    }

    /// Parses another file into the same set: its `define`s are added, and
    /// its body (if non-blank) becomes a template named `name`. This is how
    /// Alertmanager loads several template files.
    pub fn add_parse(&mut self, name: &str, text: &str) -> Result<(), ParseError> {
        let p = parse::parse(name, text)?;
        self.check_funcs(&p.root)?;
        for body in p.defines.values() {
            self.check_funcs(body)?;
        }
        let blank = p
            .root
            .iter()
            .all(|n| matches!(n, Node::Text(t) if t.trim().is_empty()));
        if !blank {
            self.defines.insert(name.to_string(), Arc::new(p.root));
        }
        self.defines.extend(p.defines);
        Ok(())
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when a template called `name` is defined.
    pub fn has_template(&self, name: &str) -> bool {
        self.defines.contains_key(name)
    }

    /// Runs the main body over `data`.
    pub fn execute(&self, data: &Value) -> Result<String, ExecError> {
        let mut ctx = exec::Ctx::new(
            &self.name,
            &self.defines,
            &self.funcs,
            self.resolver.as_ref(),
            data,
        );
        ctx.escape_html = self.escape_html;
        ctx.run_list(&self.root, data)?;
        Ok(ctx.out)
    }

    /// Runs the main body over JSON data.
    pub fn execute_json(&self, data: &serde_json::Value) -> Result<String, ExecError> {
        self.execute(&Value::from(data))
    }

    /// Runs the defined template `name` over `data`.
    pub fn execute_template(&self, name: &str, data: &Value) -> Result<String, ExecError> {
        let Some(body) = self.defines.get(name) else {
            return Err(ExecError {
                name: self.name.clone(),
                line: 0,
                message: format!(
                    "no template {name:?} associated with template {:?}",
                    self.name
                ),
            });
        };
        let mut ctx = exec::Ctx::new(
            name,
            &self.defines,
            &self.funcs,
            self.resolver.as_ref(),
            data,
        );
        ctx.escape_html = self.escape_html;
        ctx.run_list(body, data)?;
        Ok(ctx.out)
    }

    /// Go rejects unknown function names at parse time; so do we.
    fn check_funcs(&self, nodes: &[Node]) -> Result<(), ParseError> {
        for n in nodes {
            match n {
                Node::Text(_) | Node::Break | Node::Continue => {}
                Node::Action(p) => self.check_pipe(p)?,
                Node::If(p, a, b) | Node::Range(p, a, b) | Node::With(p, a, b) => {
                    self.check_pipe(p)?;
                    self.check_funcs(a)?;
                    self.check_funcs(b)?;
                }
                Node::Template(_, p, _) => {
                    if let Some(p) = p {
                        self.check_pipe(p)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn check_pipe(&self, p: &Pipeline) -> Result<(), ParseError> {
        for c in &p.cmds {
            for a in &c.args {
                match a {
                    Arg::Ident(name) if !self.funcs.contains_key(name) => {
                        return Err(ParseError {
                            name: self.name.clone(),
                            line: p.line,
                            column: 0,
                            message: format!("function {name:?} not defined"),
                        });
                    }
                    Arg::Sub(inner, _) => self.check_pipe(inner)?,
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Parses and runs `text` over `data` in one go (for one-off expansions).
pub fn render(name: &str, text: &str, data: &Value) -> Result<String, RenderError> {
    Ok(Template::new(name).parse(text)?.execute(data)?)
}

/// Either kind of failure from [`render`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Exec(#[from] ExecError),
}

#[cfg(test)]
mod tests;
