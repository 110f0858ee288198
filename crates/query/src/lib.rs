//! The statistical API: answers count requests from the committed projection only
//! (invariant 5), saying which stream sequence each answer reflects.

mod api;
mod counts;
mod error;
mod request;
mod serving;
pub mod survey;

pub use api::{QueryConfig, QueryState, frame_csv, frame_rows, router};
pub use counts::{CountsAnswer, CountsEngine, QueryError};
pub use error::ApiError;
pub use request::{CountsRequest, Dimension, RequestError, query_pairs};
pub use serving::{AsOf, NotYet, ServingError, ServingManifest};
