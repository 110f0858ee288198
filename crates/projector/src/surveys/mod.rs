//! The `surveys` projection: folds `obs.survey.>` into each wave's microdata (Parquet, one
//! file per flush and wave, in stream order, rewritten as one file when the wave closes) and a
//! snapshot of every wave's declaration and status. Same invariants as the incident
//! projection — the same [`ProjectionWriter`](crate::writer::ProjectionWriter) commits it and
//! the same loop ([`crate::runner`]) consumes for it: data files first, then a create-only
//! manifest with the last applied sequence, restart from the newest manifest, rebuild from
//! sequence 1.
//!
//! - [`fold`]: the pure fold, deciding with the shared [`SurveyLedger`] which rows are new.
//! - [`tables`]: Arrow schemas and conversions (one microdata schema per wave declaration).
//! - [`sink`]: restore, flush and close-time rewrite over the writer, and the
//!   [`Folding`](crate::runner::Folding) impl.
//!
//! [`SurveyLedger`]: observatory_model::survey::SurveyLedger

pub mod fold;
pub mod sink;
pub mod tables;

pub use fold::{SurveyFold, WaveKey};
pub use sink::{SurveySink, SurveySinkError};

use crate::runner::LoopError;

/// What serving or rebuilding the survey projection fails with
/// (`runner::serve::<SurveySink>`, `runner::replay::<SurveySink>`).
pub type SurveyProjectorError = LoopError<SurveySinkError>;
