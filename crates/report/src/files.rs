//! A report's files and its manifest: `report.pdf`, `tables.xlsx`, one CSV per table under
//! `tables/`, `report.json` (the document, with its SVG figures, for the front page), and
//! `manifest.json` naming the release, the parameters and the SHA-256 of every other file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ReportError;
use crate::document::Document;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub kind: String,
    pub period: String,
    pub release: String,
    /// The release's commit time: the report's only date.
    pub release_created_at: String,
    pub title: String,
    /// The release the revisions table compares with, if any.
    pub previous_release: Option<String>,
    /// The program that wrote the report (its version is part of what makes the bytes).
    pub generator: String,
    /// File name → SHA-256 (hex) of every file but the manifest.
    pub files: BTreeMap<String, String>,
}

impl Manifest {
    pub const FILE: &'static str = "manifest.json";
}

/// Every file of one report, by name, in a stable order.
#[derive(Debug, Clone, PartialEq)]
pub struct Files {
    pub manifest: Manifest,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Files {
    /// Assembles the files of `doc` around its typeset `pdf`.
    pub fn assemble(
        doc: &Document,
        pdf: Vec<u8>,
        previous_release: Option<String>,
        generator: &str,
    ) -> Result<Files, ReportError> {
        let mut files = BTreeMap::new();
        files.insert("report.pdf".to_owned(), pdf);
        files.insert("tables.xlsx".to_owned(), crate::xlsx::workbook(doc)?);
        for table in &doc.tables {
            files.insert(format!("tables/{}.csv", table.id), table.to_csv().into_bytes());
        }
        let json = serde_json::to_vec_pretty(doc).expect("a document serialises");
        files.insert("report.json".to_owned(), json);
        let manifest = Manifest {
            kind: doc.kind.name().to_owned(),
            period: doc.period.code(),
            release: doc.release.id.clone(),
            release_created_at: doc.release.created_at.clone(),
            title: doc.title.clone(),
            previous_release,
            generator: generator.to_owned(),
            files: files.iter().map(|(name, bytes)| (name.clone(), sha256(bytes))).collect(),
        };
        Ok(Files { manifest, files })
    }

    /// Every file including the manifest, as written.
    pub fn all(&self) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
        let mut manifest =
            serde_json::to_vec_pretty(&self.manifest).expect("a manifest serialises");
        manifest.push(b'\n');
        self.files
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain([(Manifest::FILE.to_owned(), manifest)])
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
