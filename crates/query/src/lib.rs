//! The statistical API: answers count requests from the committed projection only
//! (invariant 5), saying which stream sequence each answer reflects.

mod api;
mod counts;
mod request;
pub mod survey;

pub use api::{QueryConfig, QueryState, frame_csv, frame_rows, router};
pub use counts::{CountsAnswer, CountsEngine, QueryError};
pub use request::{CountsRequest, Dimension, RequestError};
