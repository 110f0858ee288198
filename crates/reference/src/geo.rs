//! French administrative geography (18 régions, 101 départements, INSEE codes) and INSEE legal
//! populations ("populations légales", population municipale) by département.
//!
//! # Which year a rate uses
//!
//! INSEE publishes at the end of year N+2 the legal population "millésimée N": the population
//! at the statistical reference date 1 January N (built from the five census surveys N-2..N+2).
//! It comes into force for legal purposes on 1 January N+3.
//!
//! [`Geography::population`] is keyed by the millésime N, i.e. the population at 1 January N.
//! For a rate on offences recorded in year Y the observatory uses `population(dept, Y)`: the
//! millésime Y when it is available, otherwise the latest earlier millésime (the year actually
//! used is returned so that it can be displayed next to the rate). This matches the reference
//! date of the offences rather than the legal calendar. [`Geography::population_in_force`] gives
//! the figure legally in force during year Y (millésime Y-3) for callers that need it.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::Serialize;

use crate::ReferenceError;
use crate::table::records;

const REGIONS_CSV: &str = include_str!("../data/geo/regions.csv");
const DEPARTEMENTS_CSV: &str = include_str!("../data/geo/departements.csv");
const POPULATION_CSV: &str = include_str!("../data/geo/population.csv");

/// Years between the millésime of a legal population and its entry into force.
pub const YEARS_UNTIL_IN_FORCE: i32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Region {
    /// INSEE code, two digits (`01`..`06` for the overseas régions).
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Departement {
    /// INSEE code: `01`..`95` with `2A`/`2B` for Corsica, `971`..`976` overseas.
    pub code: String,
    pub name: String,
    /// INSEE code of the région.
    pub region: String,
}

/// One legal population figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PopulationFigure {
    /// Millésime: population at 1 January of this year.
    pub year: i32,
    pub population: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Geography {
    regions: Vec<Region>,
    departements: Vec<Departement>,
    /// Département code -> figures by millésime.
    populations: BTreeMap<String, BTreeMap<i32, u64>>,
    #[serde(skip)]
    region_index: HashMap<String, usize>,
    #[serde(skip)]
    departement_index: HashMap<String, usize>,
}

impl Geography {
    /// France (métropole and the five overseas départements), parsed once from embedded files.
    pub fn france() -> &'static Geography {
        static GEO: OnceLock<Geography> = OnceLock::new();
        GEO.get_or_init(|| {
            Geography::parse(REGIONS_CSV, DEPARTEMENTS_CSV, POPULATION_CSV)
                .unwrap_or_else(|e| panic!("embedded geography is invalid: {e}"))
        })
    }

    /// Parses `code,name` régions, `code,name,region` départements and
    /// `departement,year,population` figures, checking every link.
    pub fn parse(
        regions_csv: &str,
        departements_csv: &str,
        population_csv: &str,
    ) -> Result<Geography, ReferenceError> {
        let mut regions = Vec::new();
        let mut region_index = HashMap::new();
        for (line, rec) in records("regions", regions_csv, &["code", "name"])? {
            let code = &rec[0];
            if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReferenceError::parse(
                    "regions",
                    line,
                    format!("code '{code}' is not two digits"),
                ));
            }
            if region_index.insert(code.to_string(), regions.len()).is_some() {
                return Err(ReferenceError::parse(
                    "regions",
                    line,
                    format!("code '{code}' appears twice"),
                ));
            }
            regions.push(Region { code: code.to_string(), name: rec[1].to_string() });
        }

        let mut departements = Vec::new();
        let mut departement_index = HashMap::new();
        for (line, rec) in records("departements", departements_csv, &["code", "name", "region"])? {
            let code = &rec[0];
            let valid = match code.len() {
                2 => code.bytes().all(|b| b.is_ascii_digit()) || code == "2A" || code == "2B",
                3 => code.starts_with("97") && code.bytes().all(|b| b.is_ascii_digit()),
                _ => false,
            };
            if !valid {
                return Err(ReferenceError::parse(
                    "departements",
                    line,
                    format!("code '{code}' is not a département code"),
                ));
            }
            if !region_index.contains_key(&rec[2]) {
                return Err(ReferenceError::parse(
                    "departements",
                    line,
                    format!("code '{code}': région '{}' is not in table regions", &rec[2]),
                ));
            }
            if departement_index.insert(code.to_string(), departements.len()).is_some() {
                return Err(ReferenceError::parse(
                    "departements",
                    line,
                    format!("code '{code}' appears twice"),
                ));
            }
            departements.push(Departement {
                code: code.to_string(),
                name: rec[1].to_string(),
                region: rec[2].to_string(),
            });
        }

        let mut populations: BTreeMap<String, BTreeMap<i32, u64>> = BTreeMap::new();
        for (line, rec) in
            records("population", population_csv, &["departement", "year", "population"])?
        {
            let dept = &rec[0];
            if !departement_index.contains_key(dept) {
                return Err(ReferenceError::parse(
                    "population",
                    line,
                    format!("code '{dept}' is not in table departements"),
                ));
            }
            let year: i32 = rec[1].parse().map_err(|_| {
                ReferenceError::parse(
                    "population",
                    line,
                    format!("year '{}' is not a number", &rec[1]),
                )
            })?;
            let population: u64 = rec[2].parse().map_err(|_| {
                ReferenceError::parse(
                    "population",
                    line,
                    format!("population '{}' is not a number", &rec[2]),
                )
            })?;
            if population == 0 {
                return Err(ReferenceError::parse(
                    "population",
                    line,
                    format!("code '{dept}' {year}: population is 0"),
                ));
            }
            if populations.entry(dept.to_string()).or_default().insert(year, population).is_some() {
                return Err(ReferenceError::parse(
                    "population",
                    line,
                    format!("code '{dept}' {year} appears twice"),
                ));
            }
        }

        Ok(Geography { regions, departements, populations, region_index, departement_index })
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    pub fn departements(&self) -> &[Departement] {
        &self.departements
    }

    pub fn region(&self, code: &str) -> Option<&Region> {
        self.region_index.get(code).map(|&i| &self.regions[i])
    }

    pub fn departement(&self, code: &str) -> Option<&Departement> {
        self.departement_index.get(code).map(|&i| &self.departements[i])
    }

    /// Like [`Geography::departement`] with an error naming the code and the table.
    pub fn require_departement(&self, code: &str) -> Result<&Departement, ReferenceError> {
        self.departement(code)
            .ok_or_else(|| ReferenceError::UnknownDepartement { code: code.to_string() })
    }

    /// Like [`Geography::region`] with an error naming the code and the table.
    pub fn require_region(&self, code: &str) -> Result<&Region, ReferenceError> {
        self.region(code).ok_or_else(|| ReferenceError::UnknownRegion { code: code.to_string() })
    }

    /// The région a département belongs to.
    pub fn region_of(&self, dept: &str) -> Option<&Region> {
        self.departement(dept).and_then(|d| self.region(&d.region))
    }

    /// Départements of a région, in table order.
    pub fn departements_of<'a>(
        &'a self,
        region: &'a str,
    ) -> impl Iterator<Item = &'a Departement> + 'a {
        self.departements.iter().filter(move |d| d.region == region)
    }

    /// Millésimes available for a département, ascending.
    pub fn population_years(&self, dept: &str) -> Vec<i32> {
        self.populations.get(dept).map(|m| m.keys().copied().collect()).unwrap_or_default()
    }

    /// All legal population figures of a département, ascending by millésime.
    pub fn population_series(&self, dept: &str) -> Vec<PopulationFigure> {
        self.populations
            .get(dept)
            .map(|m| {
                m.iter().map(|(&year, &population)| PopulationFigure { year, population }).collect()
            })
            .unwrap_or_default()
    }

    /// Legal population (population municipale) of a département for millésime `year`: the
    /// nearest available millésime not after `year`, else the earliest one. Returns the figure
    /// and the millésime actually used; `None` for an unknown département.
    pub fn population(&self, dept: &str, year: i32) -> Option<(u64, i32)> {
        let series = self.populations.get(dept)?;
        series.range(..=year).next_back().or_else(|| series.iter().next()).map(|(&y, &p)| (p, y))
    }

    /// The legal population in force during calendar year `year` (millésime `year - 3`, with the
    /// same fallback rule as [`Geography::population`]).
    pub fn population_in_force(&self, dept: &str, year: i32) -> Option<(u64, i32)> {
        self.population(dept, year - YEARS_UNTIL_IN_FORCE)
    }

    /// Sum over the départements of a région. The millésime is resolved once for the région (the
    /// nearest millésime not after `year` that every département has, else the earliest common
    /// one) so that all terms share it.
    pub fn region_population(&self, region: &str, year: i32) -> Option<(u64, i32)> {
        self.region(region)?;
        let depts: Vec<&str> = self.departements_of(region).map(|d| d.code.as_str()).collect();
        self.sum_population(&depts, year)
    }

    /// Sum over all 101 départements (France including the overseas départements), resolved
    /// like [`Geography::region_population`].
    pub fn national_population(&self, year: i32) -> Option<(u64, i32)> {
        let depts: Vec<&str> = self.departements.iter().map(|d| d.code.as_str()).collect();
        self.sum_population(&depts, year)
    }

    /// Sum over the listed départements, resolved like [`Geography::region_population`]: one
    /// millésime for all terms.
    pub fn departements_population(&self, depts: &[&str], year: i32) -> Option<(u64, i32)> {
        self.sum_population(depts, year)
    }

    fn sum_population(&self, depts: &[&str], year: i32) -> Option<(u64, i32)> {
        let mut common: Option<Vec<i32>> = None;
        for d in depts {
            let years = self.population_years(d);
            common = Some(match common {
                None => years,
                Some(c) => c.into_iter().filter(|y| years.contains(y)).collect(),
            });
        }
        let common = common?;
        let used = common
            .iter()
            .copied()
            .filter(|&y| y <= year)
            .max()
            .or_else(|| common.iter().copied().min())?;
        let total = depts.iter().map(|d| self.populations[*d][&used]).sum();
        Some((total, used))
    }
}
