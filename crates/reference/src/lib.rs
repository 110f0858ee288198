//! Versioned reference data embedded in the binary, parsed once, with a small lookup API.
//!
//! * [`Iccs`]: UNODC International Classification of Crime for Statistical Purposes 1.0.
//! * [`Crosswalks`]: per-source, per-version mappings of source codes (French code pénal
//!   articles, reporting-platform categories, FBI NIBRS offence codes) to ICCS, plus the
//!   built-in `iccs` identity crosswalk.
//! * [`Geography`]: French régions, départements and INSEE legal populations.
//!
//! Everything is `serde::Serialize` so an HTTP layer can expose it as is. The only IO is
//! `include_str!` at compile time; provenance and licences of each file are in
//! `data/SOURCES.md`.

mod crosswalk;
mod error;
mod geo;
mod iccs;
mod table;

pub use crosswalk::{Crosswalk, CrosswalkRow, Crosswalks, IDENTITY, Mapping, Unit};
pub use error::ReferenceError;
pub use geo::{Departement, Geography, PopulationFigure, Region, YEARS_UNTIL_IN_FORCE};
pub use iccs::{COMPUTER_SYSTEMS_DIVISION, Iccs, IccsEntry, Level};

/// The simplified outline of every département as SVG paths, pre-projected (Lambert-93 for
/// the metropole, one inset per overseas département), with the view box and frames: the
/// geometry of the reports' choropleth. Source and licence: `data/SOURCES.md`.
pub const OUTLINES_JSON: &str = include_str!("../data/geo/outlines.json");
