//! The Vigil collector: an embedded time-series store behind Prometheus's
//! HTTP API, PromQL, rule evaluation and Alertmanager-compatible alerting.
//!
//! `main.rs` parses the command line and calls into this library;
//! [`server::run`] is `vigil serve`.

pub mod api;
pub mod config;
pub mod ingest;
pub mod params;
pub mod queries;
pub mod server;
pub mod storage;
pub mod telemetry;

pub mod agents;
pub mod anomaly;
pub mod auth;
pub mod backtest;
pub mod budget;
pub mod cardinality;
pub mod cli;
pub mod forward;
pub mod notifier;
pub mod otlp;
pub mod pipeline;
pub mod remote;
pub mod remote_query;
pub mod report;
pub mod signals;
pub mod tls;
pub mod ui;
pub mod watch;
