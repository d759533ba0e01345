//! Vigil's wire data model, shared by the collector and the agent.
//!
//! Everything that crosses a process boundary lives here: label sets and
//! samples ([`labels`], [`sample`]), the Prometheus remote_write 1.0 protocol
//! ([`remote_write`]) and the Prometheus text exposition format
//! ([`exposition`]), Prometheus relabeling ([`relabel`], shared by the
//! agent's scrape and the collector's forwarding), and how an agent names
//! itself when it pushes ([`identity`]). The crate has no async runtime, no
//! HTTP stack and no storage, so the agent can depend on it and stay light.

pub mod exposition;
pub mod identity;
pub mod labels;
pub mod matcher;
pub mod relabel;
pub mod remote_write;
pub mod sample;

pub use labels::{Label, LabelError, Labels, METRIC_NAME_LABEL};
pub use matcher::{MatchOp, Matcher, matches_all};
pub use sample::{STALE_NAN_BITS, Sample, is_stale_nan, stale_nan};
