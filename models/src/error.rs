//! The crate's error type.

/// Everything that can go wrong in `vigil-models`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Dimensions do not fit (row length, feature count).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A NaN or infinite value where a finite one is required.
    #[error("non-finite {what} at {at}")]
    NonFinite {
        /// What kind of value it was.
        what: &'static str,
        /// Where it was found.
        at: String,
    },
    /// A point older than the previous one reached a streaming consumer.
    #[error("point at {got_ms} ms arrived after a point at {last_ms} ms")]
    OutOfOrder {
        /// Timestamp of the last accepted point.
        last_ms: i64,
        /// Timestamp of the rejected point.
        got_ms: i64,
    },
    /// Training needs at least one row.
    #[error("cannot train on an empty data set")]
    EmptyTrainingSet,
    /// A CSV line could not be parsed.
    #[error("line {line}: {reason}")]
    Csv {
        /// 1-based line number in the input.
        line: usize,
        /// What was wrong with it.
        reason: String,
    },
    /// A persisted model could not be decoded (corrupt, truncated, or from an
    /// incompatible format version).
    #[error("cannot load model: {0}")]
    Decode(String),
    /// Encoding a model failed.
    #[error("cannot save model: {0}")]
    Encode(String),
    /// Reading input or writing output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
