//! The pieces of the `observatory` binary, as a library so integration tests and the
//! benchmark can reuse the wiring.

pub mod allocator;
pub mod cli;
pub mod config;
pub mod demo;
pub mod demo_survey;
pub mod estimate;
pub mod flags;
pub mod logging;
pub mod nats_config;
pub mod openapi;
pub mod ops;
pub mod report;
pub mod scheduler;
pub mod serve;
pub mod surveys;
