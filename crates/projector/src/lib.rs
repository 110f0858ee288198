//! The projector: folds incident events from the stream into the current state of every
//! incident and count aggregates, and commits them to object storage exactly once.
//!
//! - [`fold`]: the pure fold (no IO).
//! - [`tables`]: Arrow schemas of the written tables.
//! - [`sink`]: flush, compaction and restore against the store.
//! - [`runner`]: the consumer loop, serving and rebuild.

pub mod fold;
pub mod runner;
pub mod sink;
pub mod survey;
pub mod tables;

pub use runner::{
    Folding, LoopError, Progress, ProjectorConfig, ProjectorError, rebuild, replay, run, serve,
};
pub use sink::{Compaction, Sink, SinkError};
