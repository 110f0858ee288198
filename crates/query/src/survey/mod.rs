//! Survey statistics over the committed `surveys` projection (invariant 5): design-based
//! estimates of a wave, the reporting rate of a victimisation item ("taux de plainte") and the
//! dark-figure view beside the incidents agencies recorded.
//!
//! Estimates call `observatory_stats::estimate` with the request the CLI builds from its flags
//! (`observatory estimate`), the design coming from the wave's declaration, on a table read
//! from the wave's microdata with the same Arrow conversion as `--input file.parquet`: the
//! endpoint answers the CLI's numbers on the same data, plus `as_of`.
//!
//! [`engine`] reads the projection, [`items`] derives what an item's statistics need,
//! [`handlers`] answers HTTP, [`error`] says what went wrong and with which status.

mod engine;
mod error;
mod formats;
#[cfg(test)]
mod fuzz;
mod handlers;
mod items;
mod request;

pub use engine::{SurveyEngine, WaveInfo, WavesTableError};
pub use error::SurveyQueryError;
pub use handlers::{SurveyQueryState, survey_router};
pub use items::{estimate_request, indicator, with_item_columns};
pub use request::{EstimatesQuery, ItemQuery, Stat};
