//! The projector: folds events from the stream into projections and commits them to object
//! storage exactly once.
//!
//! - [`runner`]: the consumer loop every projection shares (`serve`, `replay`, the decoder),
//!   and the [`Folding`] trait a projection implements to plug into it.
//! - [`writer`]: the commit skeleton every projection shares — typed data files, the
//!   create-only manifest, garbage collection.
//! - [`incidents`]: incident state, counts and coverage ([`IncidentSink`]).
//! - [`surveys`]: survey waves and microdata ([`SurveySink`]).

pub mod incidents;
pub mod runner;
pub mod surveys;
pub mod writer;

pub use incidents::{IncidentSink, IncidentSinkError, ProjectorError};
pub use runner::{Folding, LoopError, Progress, ProjectorConfig, STALL, replay, serve};
pub use surveys::{SurveyProjectorError, SurveySink, SurveySinkError};
pub use writer::{Compaction, ProjectionWriter, Tables};
