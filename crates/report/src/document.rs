//! A report as a document: its blocks in reading order, its tables and its figures. The PDF,
//! the workbook, the CSV files and the front page are renderings of this one value.

use serde::Serialize;

use crate::period::{Kind, Period};
use crate::table::Table;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Heading {
        text: String,
    },
    Paragraph {
        text: String,
    },
    /// A figure by id, with its caption.
    Figure {
        id: String,
        caption: String,
    },
    /// A table by id (its title and notes travel with it).
    Table {
        id: String,
    },
    /// A boxed list of facts (the methods box).
    Facts {
        title: String,
        items: Vec<(String, String)>,
    },
    /// Something the reader must not miss (a section without data, a caveat).
    Notice {
        text: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub id: String,
    pub svg: String,
}

/// The release a report comes from, as `GET /v1/releases/{id}` describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseInfo {
    pub id: String,
    pub name: Option<String>,
    /// RFC 3339: the only time a report carries.
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    pub kind: Kind,
    #[serde(serialize_with = "period_code")]
    pub period: Period,
    pub title: String,
    pub subtitle: String,
    pub release: ReleaseInfo,
    pub blocks: Vec<Block>,
    pub tables: Vec<Table>,
    pub figures: Vec<Figure>,
}

fn period_code<S: serde::Serializer>(period: &Period, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&period.code())
}

impl Document {
    pub fn table(&self, id: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.id == id)
    }

    pub fn figure(&self, id: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.id == id)
    }

    /// Adds a table and the block that shows it.
    pub(crate) fn add_table(&mut self, table: Table) {
        self.blocks.push(Block::Table { id: table.id.clone() });
        self.tables.push(table);
    }

    pub(crate) fn add_figure(&mut self, id: &str, caption: impl Into<String>, svg: String) {
        self.blocks.push(Block::Figure { id: id.to_owned(), caption: caption.into() });
        self.figures.push(Figure { id: id.to_owned(), svg });
    }

    pub(crate) fn heading(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Heading { text: text.into() });
    }

    pub(crate) fn paragraph(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Paragraph { text: text.into() });
    }

    pub(crate) fn notice(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Notice { text: text.into() });
    }
}
