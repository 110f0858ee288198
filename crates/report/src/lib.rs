//! The observatory's scheduled publications, pure: a monthly note and an annual report built
//! from one release's public answers, as a [`Document`] of blocks, tables and SVG figures;
//! its tables as CSV and XLSX; and the manifest that names every file by its SHA-256.
//!
//! Nothing here does IO: the API answers come through a [`Source`] (the cli asks its own
//! router in-process, as the public would over HTTP), and the PDF is typeset by the
//! `observatory-report-pdf` crate, kept apart so the services do not compile a typesetter.
//! The same release and parameters give the same bytes: no clock (the release's commit time
//! is the report's only date), no random ids, ordered maps only.

mod annual;
mod chart;
mod common;
mod document;
mod files;
#[cfg(test)]
mod fuzz;
mod map;
mod monthly;
mod period;
mod schedule;
mod source;
mod table;
mod xlsx;

pub use chart::{Point, bars, line};
pub use document::{Block, Document, Figure, ReleaseInfo};
pub use files::{Files, Manifest, sha256};
pub use map::choropleth;
pub use period::{Kind, Month, Period};
pub use schedule::Schedule;
pub use source::{Source, SourceError};
pub use table::{Cell, Table};

use common::Context;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A parameter the caller can fix (kind, period).
    #[error("{0}")]
    Parameter(String),
    /// The release holds nothing for the period.
    #[error("{0}")]
    NoData(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    /// An answer without the member the report reads (a version mismatch between the report
    /// and the API it asks).
    #[error("unexpected answer from {0}")]
    Answer(String),
    #[error("writing the workbook: {0}")]
    Xlsx(String),
}

/// What to build: the period (its kind follows), the release to read, and the release of the
/// previous report of the same kind, whose values the revisions table compares with.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub period: Period,
    pub release: String,
    pub previous: Option<String>,
}

/// Builds the report of `request` from the public answers of its release.
pub async fn build(source: &impl Source, request: &Request) -> Result<Document, ReportError> {
    let (mut doc, release, cx, population) =
        sections(source, request.period, &request.release).await?;
    let previous = match &request.previous {
        Some(p) if *p != request.release => match sections(source, request.period, p).await {
            Ok((doc, ..)) => Some(doc),
            // The previous release had nothing for this period: no cell to compare.
            Err(ReportError::NoData(_)) => None,
            Err(e) => return Err(e),
        },
        _ => None,
    };
    doc.heading("Revisions and methods");
    let revisions = common::revisions(&doc, previous.as_ref());
    doc.add_table(revisions);
    let methods = common::methods(&doc, &release, &cx, population.as_deref());
    doc.blocks.push(methods);
    Ok(doc)
}

async fn sections(
    source: &impl Source,
    period: Period,
    release_id: &str,
) -> Result<(Document, Value, Context, Option<String>), ReportError> {
    let (info, release) = common::release(source, release_id).await?;
    let probe = source::counts(source, release_id, "unit=offence").await?;
    let cx = Context { release: info.id.clone(), disclosure: probe.disclosure.clone() };
    let (title, subtitle) = match period {
        Period::Month(m) => (
            format!("Cybercrime recorded in France: {}", m.label()),
            "Monthly note of the national cybercrime observatory".to_owned(),
        ),
        Period::Year(y) => (
            format!("Cybercrime in France in {y}"),
            "Annual report of the national cybercrime observatory".to_owned(),
        ),
    };
    let mut doc = Document {
        kind: period.kind(),
        period,
        title,
        subtitle,
        release: info,
        blocks: Vec::new(),
        tables: Vec::new(),
        figures: Vec::new(),
    };
    let population = match period {
        Period::Month(m) => {
            monthly::build(source, &cx, m, &mut doc).await?;
            None
        }
        Period::Year(y) => annual::build(source, &cx, y, &mut doc).await?.population,
    };
    Ok((doc, release, cx, population))
}
