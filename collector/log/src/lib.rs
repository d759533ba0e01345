//! Logging for Vigil's binaries, the way Prometheus logs: `--log.level`
//! (`debug`, `info`, `warn`, `error`) and `--log.format` (`logfmt`, the
//! default, or `json`). Every event is exactly one line whatever its text
//! holds (newlines are escaped), and no terminal colour codes are written,
//! so journald and log shippers see one clean record per event.
//!
//! [`chain`] renders an error with its causes, skipping a cause whose text
//! the message already carries: many errors print their source in their own
//! message (`"binding {addr}: {source}"`), and walking `source()` on top of
//! that would repeat it.

use std::error::Error as StdError;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

/// `--log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `ts=… level=info caller=… msg="…" key=value`, as Prometheus writes.
    #[default]
    Logfmt,
    /// One JSON object per line.
    Json,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "logfmt" => Ok(Self::Logfmt),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?}: use logfmt or json")),
        }
    }
}

/// `--log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "debug" => Ok(Self::Debug),
            "info" => Ok(Self::Info),
            "warn" => Ok(Self::Warn),
            "error" => Ok(Self::Error),
            other => Err(format!(
                "unknown log level {other:?}: use debug, info, warn or error"
            )),
        }
    }
}

impl Level {
    fn directive(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// Installs the global subscriber writing to stderr. `level` set on the
/// command line wins; without it `RUST_LOG` (a full filter, e.g.
/// `vigil=debug,tower=warn`) is honoured, then `info`.
pub fn init(level: Option<Level>, format: Format) {
    let filter = match level {
        Some(l) => tracing_subscriber::EnvFilter::new(l.directive()),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(Line { format })
        .init();
}

/// An error and its causes, `: `-joined, each text once: a cause already
/// contained in what is written so far is skipped.
pub fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// The event formatter behind both formats.
struct Line {
    format: Format,
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_string());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn StdError + 'static)) {
        self.push(field, chain(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, format!("{value:?}"));
    }
}

impl Fields {
    fn push(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.rest.push((field.name(), value));
        }
    }
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let ts = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let level = meta.level().as_str().to_ascii_lowercase();
        let caller = meta.target();
        match self.format {
            Format::Logfmt => {
                let mut line = String::with_capacity(128);
                let _ = write!(
                    line,
                    "ts={ts} caller={} level={level} msg=",
                    logfmt_value(caller)
                );
                line.push_str(&logfmt_value(&fields.message));
                for (k, v) in &fields.rest {
                    let _ = write!(line, " {k}={}", logfmt_value(v));
                }
                writeln!(writer, "{line}")
            }
            Format::Json => {
                let mut obj = serde_json::Map::new();
                obj.insert("ts".into(), ts.into());
                obj.insert("caller".into(), caller.into());
                obj.insert("level".into(), level.into());
                obj.insert("msg".into(), fields.message.into());
                for (k, v) in fields.rest {
                    obj.insert(k.into(), v.into());
                }
                writeln!(writer, "{}", serde_json::Value::Object(obj))
            }
        }
    }
}

/// A logfmt value: bare when it is a plain token, else double-quoted with
/// `\"`, `\\` and control characters escaped, so a record never spans lines.
fn logfmt_value(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| !c.is_control() && c != ' ' && c != '=' && c != '"' && c != '\\');
    if plain {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("binding 127.0.0.1:9800: {source}")]
    struct Bind {
        #[source]
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("starting the server")]
    struct Start {
        #[source]
        source: Bind,
    }

    #[test]
    fn chain_names_each_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let io_text = io.to_string();
        let err = Start {
            source: Bind { source: io },
        };
        let text = chain(&err);
        assert_eq!(
            text,
            format!("starting the server: binding 127.0.0.1:9800: {io_text}")
        );
        assert_eq!(text.matches(&io_text).count(), 1, "{text}");
    }

    #[test]
    fn logfmt_values_never_span_lines() {
        assert_eq!(logfmt_value("ready"), "ready");
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(
            logfmt_value("line one\nline \"two\""),
            "\"line one\\nline \\\"two\\\"\""
        );
        assert_eq!(logfmt_value("a=b"), "\"a=b\"");
    }

    #[test]
    fn flags_parse_like_prometheus() {
        assert_eq!("json".parse::<Format>(), Ok(Format::Json));
        assert_eq!("logfmt".parse::<Format>(), Ok(Format::Logfmt));
        assert!("text".parse::<Format>().is_err());
        assert_eq!("warn".parse::<Level>(), Ok(Level::Warn));
        assert!("verbose".parse::<Level>().is_err());
    }
}
