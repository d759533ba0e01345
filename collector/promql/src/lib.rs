//! Vigil's PromQL engine.
//!
//! Queries are parsed with [`promql_parser`] and evaluated by our own engine
//! ([`Engine`]), which answers exactly as Prometheus 2.42 does: lookback and
//! staleness, `offset` and `@`, subqueries, aggregations, vector matching and
//! the function library. Storage is abstract ([`Queryable`]); [`MemStorage`]
//! is the in-memory implementation used by tests and by rule unit tests.
//!
//! ```
//! use vigil_promql::{Engine, EngineOptions, MemStorage, QueryContext, Value};
//! use vigil_wire::{Labels, Sample};
//!
//! let mut storage = MemStorage::new();
//! storage.add(
//!     Labels::from_pairs([("__name__", "up"), ("job", "node")]),
//!     vec![Sample::new(0, 1.0), Sample::new(15_000, 1.0)],
//! );
//! let engine = Engine::new(EngineOptions::default());
//! let v = engine
//!     .instant(&storage, "sum(up)", 20_000, &QueryContext::default())
//!     .expect("valid query");
//! match v {
//!     Value::Vector(samples) => assert_eq!(samples[0].v, 1.0),
//!     _ => unreachable!("sum returns a vector"),
//! }
//! ```
//!
//! The [`promqltest`] module runs Prometheus's `.test` golden-file format and
//! exposes the series-notation helpers promtool's unit tests need.
//!
//! How the engine is checked:
//! - `cargo test -p vigil-promql --test golden`: the `.test` files under
//!   `testdata/` (staleness, resets, extrapolation, NaN/Inf, `@`/`offset`,
//!   subqueries, vector matching, label and histogram functions).
//! - `cargo test -p vigil-promql --test differential`: the queries of
//!   `testdata/differential_queries.txt` against a real Prometheus 2.42 over
//!   the same backfilled data (needs the Debian package `prometheus`).
//! - `cargo test -p vigil-promql --test engine`: limits, timeouts,
//!   cancellation, JSON shapes, and a no-panic property test.
//! - `cargo bench -p vigil-promql --bench engine`: throughput (not in CI).

mod engine;
mod parse_error;
pub mod promqltest;
mod storage;
mod value;

pub use engine::{Engine, EngineOptions, ErrorKind, QueryContext, QueryError, parse};
pub use storage::{MemStorage, Queryable, SeriesData, StorageError};
pub use value::{Value, VectorSample, format_float, format_timestamp};
