//! End-to-end tests: the real `observatory` binary, a real nats-server started per test on
//! a free port with a temporary store, a temporary object-store directory, real HTTP.

mod agencies_on_nats;
mod bench;
mod dissemination;
mod harmonisation;
mod harness;
mod ingest;
mod input;
mod interop;
mod numbers;
mod openapi;
mod operations;
mod pipeline;
mod publishing;
mod recovery;
mod reports;
mod s3;
mod survey;
mod topology;
