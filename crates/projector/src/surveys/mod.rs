//! The `surveys` projection: folds `obs.survey.>` into each wave's microdata (Parquet, one
//! file per flush and wave, in stream order, rewritten as one file when the wave closes) and a
//! snapshot of every wave's declaration and status. Same invariants as the incident
//! projection: data files first, then a create-only manifest with the last applied sequence,
//! the manifest as the only checkpoint, restart from the newest manifest, rebuild from sequence 1.
//!
//! - [`fold`]: the pure fold, deciding with the shared [`SurveyLedger`] which rows are new.
//! - [`tables`]: Arrow schemas and conversions (one microdata schema per wave declaration).
//! - [`sink`]: flush, close-time rewrite, compaction and restore.
//! - [`runner`]: the consumer loop, serving and rebuild.
//!
//! [`SurveyLedger`]: observatory_model::survey::SurveyLedger

pub mod fold;
pub mod runner;
pub mod sink;
pub mod tables;

pub use fold::{SurveyFold, WaveKey};
pub use runner::{SurveyProjectorError, rebuild_surveys, run_surveys};
pub use sink::{SurveySink, SurveySinkError};
pub use tables::{WAVES_TABLE, microdata_table};
