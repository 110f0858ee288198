//! Typesets a report [`Document`] as PDF with typst, in-process. The world it compiles in
//! holds one source (`template/report.typ`, built into the binary), typst's embedded fonts
//! (Libertinus Serif, New Computer Modern, DejaVu Sans Mono) and the document as
//! `sys.inputs.document`: no file system, no system fonts, no network, and no clock
//! (`today` is `None`, the PDF gets no creation date and its identifier is derived from the
//! release), so the same document gives the same bytes on any machine.

use std::sync::OnceLock;

use observatory_report::{Cell, Document};
use serde_json::{Value, json};
use typst::diag::{FileError, FileResult, SourceDiagnostic};
use typst::foundations::{Bytes, Datetime, Dict, Duration, Smart, Value as TypstValue};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};
use typst_layout::PagedDocument;

const TEMPLATE: &str = include_str!("../template/report.typ");

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    /// The template failed on this document: a bug in the template or the document's shape.
    #[error("typesetting the report failed: {0}")]
    Typeset(String),
}

struct Fonts {
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

/// The embedded fonts, parsed once per process.
fn fonts() -> &'static Fonts {
    static FONTS: OnceLock<Fonts> = OnceLock::new();
    FONTS.get_or_init(|| {
        let fonts: Vec<Font> = typst_kit::fonts::embedded().map(|(font, _)| font).collect();
        Fonts { book: LazyHash::new(FontBook::from_fonts(&fonts)), fonts }
    })
}

struct ReportWorld {
    library: LazyHash<Library>,
    main: Source,
}

impl World for ReportWorld {
    fn library(&self) -> &LazyHash<Library> {
        &self.library
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &fonts().book
    }

    fn main(&self) -> FileId {
        self.main.id()
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() {
            Ok(self.main.clone())
        } else {
            Err(FileError::NotFound(std::path::PathBuf::from(id.vpath().get_with_slash())))
        }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        Err(FileError::NotFound(std::path::PathBuf::from(id.vpath().get_with_slash())))
    }

    fn font(&self, index: usize) -> Option<Font> {
        fonts().fonts.get(index).cloned()
    }

    /// Reports carry no clock time: only the release's, which the document states.
    fn today(&self, _offset: Option<Duration>) -> Option<Datetime> {
        None
    }
}

/// The document as the template reads it: every cell already in its printed form, and which
/// columns are numeric (right-aligned).
fn view(doc: &Document) -> Value {
    let mut value = serde_json::to_value(doc).expect("a document serialises");
    let tables: Vec<Value> = doc
        .tables
        .iter()
        .map(|t| {
            let numeric: Vec<bool> = (0..t.columns.len())
                .map(|c| {
                    t.rows.iter().any(|r| matches!(r[c], Cell::Int(_) | Cell::Num { .. }))
                        && t.rows.iter().all(|r| !matches!(r[c], Cell::Text(_)))
                })
                .collect();
            let rows: Vec<Vec<String>> =
                t.rows.iter().map(|r| r.iter().map(Cell::display).collect()).collect();
            json!({"id": t.id, "title": t.title, "columns": t.columns, "numeric": numeric,
                   "rows": rows, "notes": t.notes})
        })
        .collect();
    value["tables"] = Value::Array(tables);
    value
}

/// Typesets `doc`. The PDF's document identifier is derived from the release and the period,
/// so two reports of one release differ only where their content does.
pub fn render(doc: &Document) -> Result<Vec<u8>, PdfError> {
    let input = serde_json::to_string(&view(doc)).expect("a view serialises");
    let mut inputs = Dict::new();
    inputs.insert("document".into(), TypstValue::Str(input.into()));
    let path = VirtualPath::new("/report.typ").expect("a valid virtual path");
    let id = RootedPath::new(VirtualRoot::Project, path).intern();
    let world = ReportWorld {
        library: LazyHash::new(Library::builder().with_inputs(inputs).build()),
        main: Source::new(id, TEMPLATE.to_owned()),
    };
    let compiled = typst::compile::<PagedDocument>(&world);
    let document = compiled.output.map_err(|errors| PdfError::Typeset(describe(&errors)))?;
    let options = typst_pdf::PdfOptions {
        ident: Smart::Custom(format!(
            "observatory/{}/{}/{}",
            doc.kind.name(),
            doc.period,
            doc.release.id
        )),
        creator: Smart::Custom(Some("observatory".to_owned())),
        timestamp: None,
        ..Default::default()
    };
    typst_pdf::pdf(&document, &options).map_err(|errors| PdfError::Typeset(describe(&errors)))
}

fn describe(errors: &[SourceDiagnostic]) -> String {
    errors
        .iter()
        .map(|e| {
            let hints: Vec<String> = e.hints.iter().map(|h| format!(" (hint: {})", h.v)).collect();
            format!("{}{}", e.message, hints.concat())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use observatory_report::{
        Block, Cell, Document, Kind, Month, Period, Point, ReleaseInfo, Table,
    };

    use super::*;

    fn document() -> Document {
        let mut table = Table::new("t", "A table", &["month", "offences", "status"]);
        table.push(vec![Cell::text("2025-10"), Cell::Int(12345), Cell::text("final")]);
        table.push(vec![Cell::text("2025-11"), Cell::Empty, Cell::text("no data")]);
        table.notes.push("A note.".to_owned());
        let points = [
            Point { label: "Oct 2025".into(), value: Some(12345.0), provisional: false },
            Point { label: "Nov 2025".into(), value: Some(12000.0), provisional: true },
        ];
        Document {
            kind: Kind::Monthly,
            period: Period::Month(Month::new(2025, 11).unwrap()),
            title: "A title with # and $ and *markup*".to_owned(),
            subtitle: "Subtitle".to_owned(),
            release: ReleaseInfo {
                id: "r7".into(),
                name: Some("Nov".into()),
                created_at: "2025-12-05T06:00:00Z".into(),
            },
            blocks: vec![
                Block::Heading { text: "Heading".into() },
                Block::Paragraph { text: "In November 2025, _12,345_ offences [sic] @x.".into() },
                Block::Figure { id: "f".into(), caption: "A chart".into() },
                Block::Table { id: "t".into() },
                Block::Notice { text: "No survey wave.".into() },
                Block::Facts {
                    title: "Methods".into(),
                    items: vec![("Release".into(), "r7".into())],
                },
            ],
            tables: vec![table],
            figures: vec![observatory_report::Figure {
                id: "f".into(),
                svg: observatory_report::line("c", &points, 1),
            }],
        }
    }

    #[test]
    fn a_document_typesets_to_the_same_pdf_every_time() {
        let doc = document();
        let pdf = render(&doc).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        assert_eq!(pdf, render(&doc).unwrap(), "byte-identical");
        let text = String::from_utf8_lossy(&pdf);
        assert!(!text.contains("/CreationDate"), "no clock time in the PDF");
        assert!(text.contains("observatory"), "the creator is ours, not a version string");
        let mut other = doc.clone();
        other.release.id = "r8".into();
        assert_ne!(render(&other).unwrap(), pdf);
    }
}
