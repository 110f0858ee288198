//! The statistical API: answers count requests from the committed projection only
//! (invariant 5), saying which stream sequence each answer reflects.

mod api;
mod counts;
mod cube;
mod disclosure;
mod error;
mod front;
#[cfg(test)]
mod fuzz;
mod history;
mod jsonstat;
mod priority;
mod releases;
mod reports;
mod request;
pub mod sdmx;
mod serving;
pub mod survey;
mod tabular;
mod vintage;

pub use api::{QueryConfig, QueryState, frame_csv, frame_rows, router};
pub use counts::{CountsAnswer, CountsEngine, LOSS_WITHHELD, QueryError};
pub use disclosure::{Disclosure, Tier};
pub use error::ApiError;
pub use priority::{current_thread_nice, lower_polars_pool};
pub use releases::{create_release, summary as release_summary};
pub use reports::{ReportsState, router as reports_router};
pub use request::{CountsRequest, Dimension, RequestError, query_pairs};
pub use serving::{AsOf, NotYet, ServingError, ServingManifest};
pub use vintage::{ReleaseRef, Resolved, Vintage, VintageError, Vintages};
