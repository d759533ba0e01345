//! The agent's side of the shared OTLP translation ([`vigil_otlp`]): points
//! land in the LLM aggregates, cumulative points replacing the stored value
//! and delta points accumulating (so delta-temporality SDKs end up
//! cumulative too), and GenAI histograms also feed the `llm_*` series
//! ([`super::genai`]).

use vigil_otlp::translate::{HistogramPoint, Sink, ValuePoint};
pub use vigil_otlp::{ExportMetricsServiceRequest, OtlpOutcome};

use super::genai::{self, Pricing};
use super::{Aggregator, UpdateError};

/// The metric label naming why an update was refused.
pub fn reason(e: &UpdateError) -> &'static str {
    match e {
        UpdateError::TypeConflict { .. } => "type_conflict",
        UpdateError::SeriesLimit(_) => "series_limit",
        UpdateError::BadHistogram { .. } => "bad_histogram",
    }
}

struct AggregatorSink<'a, F> {
    agg: &'a mut Aggregator,
    pricing: &'a dyn Pricing,
    on_refused: F,
}

impl<F: Fn(&UpdateError)> Sink for AggregatorSink<'_, F> {
    type Error = UpdateError;

    fn reason(e: &UpdateError) -> &'static str {
        reason(e)
    }

    fn value(&mut self, p: ValuePoint<'_>) -> Result<(), UpdateError> {
        // A point without a recorded value (a series that ended) changes
        // no aggregate.
        if p.no_value {
            return Ok(());
        }
        self.agg
            .value(
                p.family.name,
                p.family.help,
                p.family.kind,
                p.suffix,
                p.labels,
                p.value,
                p.delta,
            )
            .inspect_err(|e| (self.on_refused)(e))
    }

    fn histogram(&mut self, p: HistogramPoint<'_>) -> Result<(), UpdateError> {
        if p.no_value {
            return Ok(());
        }
        let name = p.family.name;
        let source = genai::is_source(name).then(|| p.labels.clone());
        let increase = self
            .agg
            .histogram(
                name,
                p.family.help,
                p.labels,
                p.bounds,
                p.counts,
                p.sum,
                p.count,
                p.delta,
            )
            .inspect_err(|e| (self.on_refused)(e))?;
        if let Some(labels) = source {
            let point = genai::Point {
                bounds: p.bounds,
                increase: &increase,
            };
            for e in genai::derive(self.agg, name, &labels, &point, self.pricing) {
                (self.on_refused)(&e);
            }
        }
        Ok(())
    }
}

/// Translates an export request into the aggregator.
pub fn ingest(
    req: &ExportMetricsServiceRequest,
    agg: &mut Aggregator,
    pricing: &dyn Pricing,
    on_refused: impl Fn(&UpdateError),
) -> OtlpOutcome {
    let mut sink = AggregatorSink {
        agg,
        pricing,
        on_refused,
    };
    vigil_otlp::translate(req, &mut sink)
}
