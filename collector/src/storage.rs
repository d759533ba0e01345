//! The bridge between the PromQL engine and the embedded store.

use std::sync::Arc;

use vigil_promql::{Queryable, SeriesData, StorageError};
use vigil_tsdb::Db;
use vigil_wire::Matcher;

/// The store seen through the engine's [`Queryable`] trait.
#[derive(Clone)]
pub struct TsdbQueryable(pub Arc<Db>);

impl Queryable for TsdbQueryable {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, StorageError> {
        let series = self
            .0
            .select(matchers, start_ms, end_ms)
            .map_err(|e| StorageError(e.to_string()))?;
        Ok(series
            .into_iter()
            .map(|s| SeriesData {
                labels: s.labels,
                samples: s.samples,
            })
            .collect())
    }

    fn select_each(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        f: &mut dyn FnMut(SeriesData) -> bool,
    ) -> Result<(), StorageError> {
        self.0
            .select_each(matchers, start_ms, end_ms, |s| {
                f(SeriesData {
                    labels: s.labels,
                    samples: s.samples,
                })
            })
            .map_err(|e| StorageError(e.to_string()))
    }
}
