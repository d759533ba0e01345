//! vigil-queue: the durable remote_write queue shared by the agent and the
//! collector.
//!
//! * [`buffer`] — a bounded on-disk FIFO of remote_write payloads that
//!   survives receiver outages and `kill -9` ([FORMAT.md](../FORMAT.md));
//! * [`client`] — the HTTP client settings Prometheus's `remote_write` and
//!   `http_config` blocks carry (headers, bearer token and basic-auth
//!   password files, TLS with a pinned CA and client certificates);
//! * [`ship`] — the sender that drains a buffer in order: batches of at most
//!   `max_samples_per_send` samples, remote_write 1.0 (protobuf + snappy),
//!   capped exponential backoff on 5xx/429/network errors, drop-and-count
//!   on other 4xx, as Prometheus's queue manager does.

pub mod buffer;
pub mod client;
pub mod ship;

pub use buffer::{BufferError, DiskBuffer, Inflight, Record};
pub use client::{BasicAuth, ClientError, HttpClient, HttpOptions, TlsOptions};
pub use ship::{Outcome, ShipObserver, ShipOptions, Shipper};
