//! The disclosure policy of the public tier: which perturbation table, and the thresholds that
//! withhold what perturbation does not protect (losses of small cells, survey domains with few
//! respondents). One value, shown in every public answer and frozen in every release.
//!
//! Default parameters, and why:
//! - **Counts: cell-key perturbation with D = 5, V = 3, js = 2** (table version 1,
//!   `data/ptable-1.csv`). D = 5 and V = 3 (noise standard deviation about 1.7) with js = 2 is the
//!   parameter set of the sdcTools reference implementation's own tests and examples
//!   (`cellKey`, `ptable::create_cnt_ptable(D = 5, V = 3, js = 2)`), the family the ONS and the
//!   ABS use for census tables (small noise, unbiased for every original count, nothing published
//!   as 1 or 2: the counts from which a single victim is recognised). We found no published CKM
//!   parameters for crime statistics; SSMSI publishes communal data only above 5 facts, which
//!   js = 2 with noise up to 5 mirrors without suppressing whole cells.
//! - **Losses** (a magnitude, which the count table does not protect): published only for a cell
//!   whose published count is at least 10, rounded to 3 significant figures, so that neither a
//!   single victim's loss nor a difference of two large totals reveals one record.
//! - **Survey estimates**: withheld for a domain answered by fewer than 10 respondents (the usual
//!   minimum base of official survey tables), with the reliability flags kept for the others.

use serde::Serialize;

use crate::keys::cell_key;
use crate::ptable::{PTable, PTableError};

/// Version 1 of the perturbation table, as shipped (written by `PTable::to_csv`; a test holds it
/// equal to what the documented procedure builds).
const PTABLE_1: &str = include_str!("../data/ptable-1.csv");

/// What the public tier publishes, and how.
#[derive(Debug, Clone)]
pub struct Policy {
    pub ptable_version: &'static str,
    pub ptable: PTable,
    /// A cell's loss is published when its published count reaches this.
    pub loss_min_count: u64,
    /// Significant figures a published loss is rounded to.
    pub loss_significant_figures: u32,
    /// A survey domain answered by fewer respondents has its estimate withheld.
    pub survey_min_respondents: u64,
}

/// The parameters in force, as answers and releases state them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parameters {
    pub method: &'static str,
    pub ptable: &'static str,
    #[serde(rename = "D")]
    pub d: u32,
    #[serde(rename = "V")]
    pub v: f64,
    pub js: u32,
    pub additive: bool,
    pub loss_min_count: u64,
    pub loss_rounding: String,
    pub survey_min_respondents: u64,
}

impl Policy {
    /// The default policy (see the module doc for why these values).
    pub fn standard() -> Policy {
        Policy {
            ptable_version: "1",
            ptable: PTable::from_csv(PTABLE_1).expect("the shipped perturbation table is valid"),
            loss_min_count: 10,
            loss_significant_figures: 3,
            survey_min_respondents: 10,
        }
    }

    /// The policy with another table (tests and what-if runs); the thresholds stay.
    pub fn with_table(version: &'static str, csv: &str) -> Result<Policy, PTableError> {
        Ok(Policy { ptable_version: version, ptable: PTable::from_csv(csv)?, ..Policy::standard() })
    }

    pub fn parameters(&self) -> Parameters {
        let params = self.ptable.params;
        Parameters {
            method: "cell-key",
            ptable: self.ptable_version,
            d: params.d,
            v: params.v,
            js: params.js,
            additive: false,
            loss_min_count: self.loss_min_count,
            loss_rounding: format!("{} significant figures", self.loss_significant_figures),
            survey_min_respondents: self.survey_min_respondents,
        }
    }

    /// The published count of a cell counting `count` records whose record keys sum to
    /// `key_sum`. A count below zero cannot occur in a netted projection; it is published as 0.
    pub fn count(&self, count: i64, key_sum: i64) -> i64 {
        let Ok(count) = u64::try_from(count) else { return 0 };
        let key = cell_key(key_sum.rem_euclid(256) as u64);
        i64::try_from(self.ptable.perturb(count, key)).unwrap_or(i64::MAX)
    }

    /// The published loss of a cell: `None` (withheld) below the count threshold, else rounded.
    pub fn loss(&self, published_count: i64, loss_eur: f64) -> Option<f64> {
        if published_count < self.loss_min_count as i64 || !loss_eur.is_finite() {
            return None;
        }
        Some(round_significant(loss_eur, self.loss_significant_figures))
    }

    /// Whether a survey domain with `respondents` respondents may be published.
    pub fn survey_domain_published(&self, respondents: u64) -> bool {
        respondents >= self.survey_min_respondents
    }
}

/// `x` rounded to `figures` significant figures (halves away from zero).
pub fn round_significant(x: f64, figures: u32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let magnitude = x.abs().log10().floor() as i32;
    let scale = 10f64.powi(figures as i32 - 1 - magnitude);
    let rounded = (x * scale).round() / scale;
    // Reprint through the decimal representation so 12300000 is not 12299999.999999998.
    format!("{rounded:.*e}", figures.saturating_sub(1) as usize).parse().unwrap_or(rounded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ptable::PTableParams;

    /// `OBSERVATORY_WRITE_PTABLE=1 cargo test -p observatory-disclosure` writes the table.
    #[test]
    fn write_the_table_when_asked() {
        if std::env::var_os("OBSERVATORY_WRITE_PTABLE").is_some() {
            let built = PTable::build(PTableParams { d: 5, v: 3.0, js: 2 }).unwrap();
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/ptable-1.csv");
            std::fs::write(path, built.to_csv()).unwrap();
        }
    }

    #[test]
    fn the_shipped_table_is_what_the_documented_procedure_builds() {
        let built = PTable::build(PTableParams { d: 5, v: 3.0, js: 2 }).unwrap();
        assert_eq!(
            built.to_csv(),
            PTABLE_1,
            "regenerate data/ptable-1.csv with PTable::to_csv (and give it a new version if it \
             changed: releases name the version they were published with)"
        );
        let shipped = Policy::standard().ptable;
        assert_eq!(shipped.rows.len(), built.rows.len());
        for count in 0..20 {
            for key in 0..=255u8 {
                assert_eq!(shipped.perturb(count, key), built.perturb(count, key), "{count} {key}");
            }
        }
    }

    #[test]
    fn a_table_that_breaks_a_guarantee_is_refused() {
        let broken = PTABLE_1.replacen("0,0,1.000000000000,0", "0,1,1.000000000000,1", 1);
        let error = Policy::with_table("x", &broken).unwrap_err().to_string();
        assert!(error.contains("row 0"), "{error}");
        assert!(Policy::with_table("x", "i,j\n").is_err());
    }

    #[test]
    fn counts_are_perturbed_from_the_cell_key_and_never_published_small() {
        let policy = Policy::standard();
        assert_eq!(policy.count(0, 0), 0);
        assert_eq!(policy.count(-3, 7), 0);
        for count in 1..30 {
            for key_sum in [0i64, 255, 256 + 17, -1, 1_000_003] {
                let published = policy.count(count, key_sum);
                assert!(published == 0 || published > 2, "{count} → {published}");
                assert!((published - count).abs() <= 5);
                assert_eq!(published, policy.count(count, key_sum.rem_euclid(256)));
            }
        }
    }

    #[test]
    fn losses_are_withheld_below_the_threshold_and_rounded_above_it() {
        let policy = Policy::standard();
        assert_eq!(policy.loss(9, 12_345.0), None);
        assert_eq!(policy.loss(10, 12_345.0), Some(12_300.0));
        assert_eq!(policy.loss(10, 12_355.0), Some(12_400.0));
        assert_eq!(policy.loss(40, 0.0), Some(0.0));
        assert_eq!(policy.loss(40, 987_654_321.0), Some(988_000_000.0));
        assert_eq!(round_significant(0.012345, 3), 0.0123);
        assert_eq!(round_significant(-1234.0, 2), -1200.0);
        assert_eq!(
            serde_json::to_string(&policy.parameters()).unwrap(),
            r#"{"method":"cell-key","ptable":"1","D":5,"V":3.0,"js":2,"additive":false,"loss_min_count":10,"loss_rounding":"3 significant figures","survey_min_respondents":10}"#
        );
    }
}
