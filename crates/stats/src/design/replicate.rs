//! Replicate-weight designs, as R's `svrepdesign()` (combined weights) and `svrVar()`.

use std::fmt;
use std::str::FromStr;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::StatsError;
use crate::table::{MISSING, Table};

use super::cells::{Partition, StageCells, build_cells};
use super::rank::{DIRECTION_BLOCK, DirectionSweep, RANK_TOL, jackknife_grams, rank_from_gram};

/// Replicate method, as `svrepdesign(type=)`. Fay carries its rho.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepType {
    Jk1,
    Jkn,
    Brr,
    Fay { rho: f64 },
    Bootstrap,
    Other,
}

impl FromStr for RepType {
    type Err = StatsError;
    /// `jk1`, `jkn`, `brr`, `fay:RHO` (or `fay=RHO`), `bootstrap`, `other`; case-insensitive.
    fn from_str(s: &str) -> Result<Self, StatsError> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, arg) = match lower.split_once([':', '=']) {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (lower.as_str(), None),
        };
        let no_arg = |t: RepType| match arg {
            None => Ok(t),
            Some(_) => Err(StatsError::invalid(format!("replicate type '{s}' takes no parameter"))),
        };
        match name {
            "jk1" => no_arg(RepType::Jk1),
            "jkn" => no_arg(RepType::Jkn),
            "brr" => no_arg(RepType::Brr),
            "bootstrap" => no_arg(RepType::Bootstrap),
            "other" => no_arg(RepType::Other),
            "fay" => {
                let rho = arg
                    .ok_or_else(|| {
                        StatsError::invalid("Fay replicates need their rho, e.g. --reptype fay:0.5")
                    })?
                    .parse::<f64>()
                    .map_err(|_| {
                        StatsError::invalid(format!(
                            "cannot read Fay's rho in '{s}'; write e.g. fay:0.5"
                        ))
                    })?;
                if !(0.0..1.0).contains(&rho) {
                    return Err(StatsError::invalid(format!(
                        "Fay's rho must be in [0, 1), got {rho}"
                    )));
                }
                Ok(RepType::Fay { rho })
            }
            _ => Err(StatsError::invalid(format!(
                "unknown replicate type '{s}'; use JK1, JKn, BRR, fay:RHO, bootstrap or other"
            ))),
        }
    }
}

impl fmt::Display for RepType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepType::Jk1 => f.write_str("JK1"),
            RepType::Jkn => f.write_str("JKn"),
            RepType::Brr => f.write_str("BRR"),
            RepType::Fay { rho } => write!(f, "Fay(rho={rho})"),
            RepType::Bootstrap => f.write_str("bootstrap"),
            RepType::Other => f.write_str("other"),
        }
    }
}

/// Replicate weights given as columns: `svrepdesign(repweights="REGEX", weights=~W, type=,
/// scale=, rscales=, mse=, combined.weights=TRUE)`.
#[derive(Debug, Clone)]
pub struct ReplicateSpec {
    /// Full-sample weights (required).
    pub weights: Option<String>,
    /// Regular expression selecting the replicate-weight columns (R's `grep`, i.e. a match
    /// anywhere in the name). The full-sample weight column is never taken as a replicate.
    pub repweights: String,
    pub rep_type: RepType,
    pub scale: Option<f64>,
    /// One value for all replicates or one per replicate.
    pub rscales: Option<Vec<f64>>,
    /// Centre replicate estimates at the full-sample estimate (R: `mse=TRUE`).
    pub mse: bool,
}

/// A replicate-weight design; borrows weight columns from the table it was built from.
#[derive(Debug, Clone)]
pub struct ReplicateDesign<'t> {
    pub(crate) pweights: Vec<f64>,
    pub(crate) reps: RepWeights<'t>,
    pub(crate) scale: f64,
    pub(crate) rscales: Vec<f64>,
    pub(crate) mse: bool,
    pub(crate) rep_type: RepType,
    /// Every row is in a self-representing stratum (R's `all(design$selfrep)`): variance 0.
    pub(crate) selfrep_all: bool,
    pub(crate) columns: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum RepWeights<'t> {
    /// Combined replicate weights, one slice per replicate.
    Columns(Vec<&'t [f64]>),
    /// Jackknife factors on PSUs (from a linearisation design), times the full-sample weight.
    Jackknife(Jackknife),
}

/// Jackknife replicates in factored form: replicate r multiplies the weight of PSU g by
/// `a` if g is in stratum `stratum` (0 if g is the `dropped` PSU), and by `b` otherwise.
#[derive(Debug, Clone)]
pub(crate) struct Jackknife {
    pub(crate) psu: Vec<u32>,
    pub(crate) psu_stratum: Vec<u32>,
    pub(crate) n_strata: usize,
    pub(crate) reps: Vec<JkRep>,
    /// Per PSU: the replicate that drops it, or `MISSING`.
    pub(crate) dropped_by: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct JkRep {
    pub(crate) stratum: u32,
    pub(crate) dropped: u32,
    pub(crate) a: f64,
    pub(crate) b: f64,
}

impl Jackknife {
    pub(crate) fn cells(&self, part: &Partition) -> StageCells {
        build_cells(&self.psu, &self.psu_stratum, self.n_strata, part)
    }
}

impl<'t> ReplicateDesign<'t> {
    /// Builds the design with R's defaults for `scale` and `rscales` per type:
    /// BRR 1/R and Fay 1/(R (1-rho)^2) (fixed by the type), JK1 (R-1)/R, bootstrap 1/(R-1),
    /// JKn and other 1; `rscales` 1 except JKn, where R requires them.
    pub fn from_table(
        table: &'t Table,
        spec: &ReplicateSpec,
    ) -> Result<ReplicateDesign<'t>, StatsError> {
        let re = Regex::new(&spec.repweights).map_err(|e| StatsError::BadPattern {
            pattern: spec.repweights.clone(),
            message: e.to_string(),
        })?;
        let weights_name = spec.weights.as_deref().ok_or_else(|| {
            StatsError::invalid("replicate designs need the full-sample weights (--weights)")
        })?;
        let wcol = table.require(weights_name, "weights")?;
        let pweights = wcol.require_numeric("weights")?;
        if let Some(row) = pweights.iter().position(|v| v.is_nan()) {
            return Err(StatsError::MissingDesignValue {
                column: weights_name.to_string(),
                role: "weights".into(),
                row: row + 1,
            });
        }
        let mut columns = Vec::new();
        let mut cols: Vec<&'t [f64]> = Vec::new();
        for name in table.column_names() {
            if name == weights_name || !re.is_match(name) {
                continue;
            }
            let col = table.require(name, "replicate weights")?;
            // Missing values are found by the direction sweep of `degf`, which reads every
            // replicate weight anyway; a separate scan would double the memory traffic.
            let v = col.require_numeric("replicate weights")?;
            columns.push(name.to_string());
            cols.push(v);
        }
        let r = cols.len();
        if r == 0 {
            return Err(StatsError::NoReplicateColumns { pattern: spec.repweights.clone() });
        }
        let rf = r as f64;
        let fixed_scale = |t: &str| -> Result<(), StatsError> {
            match spec.scale {
                Some(_) => Err(StatsError::invalid(format!(
                    "--scale is fixed by the replicate type {t} (as in R's svrepdesign); drop --scale or use --reptype other"
                ))),
                None => Ok(()),
            }
        };
        let scale = match spec.rep_type {
            RepType::Brr => {
                fixed_scale("BRR")?;
                1.0 / rf
            }
            RepType::Fay { rho } => {
                fixed_scale("Fay")?;
                1.0 / (rf * (1.0 - rho) * (1.0 - rho))
            }
            RepType::Jk1 => spec.scale.unwrap_or((rf - 1.0) / rf),
            RepType::Bootstrap => spec.scale.unwrap_or(1.0 / (rf - 1.0)),
            RepType::Jkn | RepType::Other => spec.scale.unwrap_or(1.0),
        };
        let rscales = match &spec.rscales {
            Some(v) if v.len() == 1 => vec![v[0]; r],
            Some(v) if v.len() == r => v.clone(),
            Some(v) => {
                return Err(StatsError::invalid(format!(
                    "--rscales has {} values for {r} replicate columns; give one value or {r}",
                    v.len()
                )));
            }
            None if spec.rep_type == RepType::Jkn => {
                return Err(StatsError::invalid(
                    "JKn replicate weights need --rscales (the (n_h-1)/n_h factor of each replicate's stratum), as R requires for combined weights",
                ));
            }
            None => vec![1.0; r],
        };
        Ok(ReplicateDesign {
            pweights: pweights.to_vec(),
            reps: RepWeights::Columns(cols),
            scale,
            rscales,
            mse: spec.mse,
            rep_type: spec.rep_type,
            selfrep_all: false,
            columns,
        })
    }

    pub fn n_rows(&self) -> usize {
        self.pweights.len()
    }

    pub fn n_replicates(&self) -> usize {
        match &self.reps {
            RepWeights::Columns(c) => c.len(),
            RepWeights::Jackknife(j) => j.reps.len(),
        }
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    pub fn rscales(&self) -> &[f64] {
        &self.rscales
    }

    pub fn mse(&self) -> bool {
        self.mse
    }

    pub fn rep_type(&self) -> RepType {
        self.rep_type
    }

    /// Names of the replicate-weight columns (empty for jackknife weights built from a design).
    pub fn replicate_columns(&self) -> &[String] {
        &self.columns
    }

    /// R's `degf()`: rank of the analysis weights minus 1. Errors on a missing replicate weight.
    pub fn degf(&self) -> Result<i64, StatsError> {
        Ok(self.degf_by_domain(&Partition::whole(self.n_rows()), None)?[0])
    }

    /// Degrees of freedom of each domain's subset (R recomputes `degf` when a replicate design
    /// is subset, as `svyby` does).
    pub(crate) fn degf_by_domain(
        &self,
        part: &Partition,
        jk_cells: Option<&StageCells>,
    ) -> Result<Vec<i64>, StatsError> {
        match &self.reps {
            RepWeights::Columns(cols) => {
                let mut sweep = DirectionSweep::new(part.dom.len(), cols.len());
                let mut start = 0;
                while start < part.dom.len() {
                    let end = (start + DIRECTION_BLOCK).min(part.dom.len());
                    sweep.block(cols, start, end);
                    start = end;
                }
                self.degf_from_sweep(&sweep, part)
            }
            RepWeights::Jackknife(jk) => Ok(self.jackknife_degf(jk, part, jk_cells)),
        }
    }

    /// Degrees of freedom from a finished direction sweep over the replicate columns.
    pub(crate) fn degf_from_sweep(
        &self,
        sweep: &DirectionSweep,
        part: &Partition,
    ) -> Result<Vec<i64>, StatsError> {
        let RepWeights::Columns(cols) = &self.reps else {
            unreachable!("sweeps are over replicate columns")
        };
        if let Some(row) = sweep.missing_row() {
            let c = cols.iter().position(|c| c[row].is_nan()).unwrap_or(0);
            return Err(StatsError::MissingDesignValue {
                column: self.columns[c].clone(),
                role: "replicate weights".into(),
                row: row + 1,
            });
        }
        let p = cols.len();
        Ok(sweep
            .grams(cols, part)
            .iter()
            .map(|(g, rows)| rank_from_gram(g, p, *rows, RANK_TOL) as i64 - 1)
            .collect())
    }

    fn jackknife_degf(
        &self,
        jk: &Jackknife,
        part: &Partition,
        jk_cells: Option<&StageCells>,
    ) -> Vec<i64> {
        let p = jk.reps.len();
        if p == 0 {
            // No replicate columns (every stratum fully sampled): R's qr rank 0, minus 1.
            return vec![-1; part.n_domains];
        }
        // Forming and factoring a p x p Gram matrix costs O(p^3); beyond 1500 replicates (R
        // itself would need hours) use the jackknife's structural rank instead.
        if p > 1500 {
            return vec![structural_jackknife_rank(jk) as i64 - 1; part.n_domains];
        }
        let owned;
        let cells = match jk_cells {
            Some(c) => c,
            None => {
                owned = jk.cells(part);
                &owned
            }
        };
        jackknife_grams(jk, &self.pweights, part, cells)
            .iter()
            .map(|(g, rows)| rank_from_gram(g, p, *rows, RANK_TOL) as i64 - 1)
            .collect()
    }
}

/// Rank of jackknife factors when every PSU has weight: one per replicate, less one per
/// stratum with ordinary replicates (their columns sum to a multiple of the ones vector), plus
/// that shared ones vector.
fn structural_jackknife_rank(jk: &Jackknife) -> usize {
    let mut strata: Vec<u32> =
        jk.reps.iter().filter(|r| r.dropped != MISSING).map(|r| r.stratum).collect();
    strata.sort_unstable();
    strata.dedup();
    let ordinary = jk.reps.iter().filter(|r| r.dropped != MISSING).count();
    let adjust = jk.reps.len() - ordinary;
    ordinary - strata.len() + usize::from(!strata.is_empty()) + adjust
}

/// R's `svrVar()` for one statistic: replicates with NaN estimates are dropped (with their
/// rscales); the centre is the mean of replicates with rscale > 0, or the full-sample
/// estimate when `mse`. `None` when every replicate is NaN.
pub(crate) fn svr_var(
    thetas: &[f64],
    full: f64,
    scale: f64,
    rscales: &[f64],
    mse: bool,
) -> Option<f64> {
    let mut n_ok = 0usize;
    let (mut sum, mut n_pos) = (0.0, 0usize);
    for (&t, &rs) in thetas.iter().zip(rscales) {
        if t.is_nan() {
            continue;
        }
        n_ok += 1;
        if rs > 0.0 {
            sum += t;
            n_pos += 1;
        }
    }
    if n_ok == 0 {
        return None;
    }
    let centre = if mse { full } else { sum / n_pos as f64 };
    let ss: f64 = thetas
        .iter()
        .zip(rscales)
        .filter(|(t, _)| !t.is_nan())
        .map(|(&t, &rs)| (t - centre) * (t - centre) * rs)
        .sum();
    Some(ss * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svr_var_by_hand() {
        // Replicates 1, 2, 4 with rscales 1, 0.5, 2 and scale 0.25; the mean of replicates is 7/3.
        let th = [1.0, 2.0, 4.0];
        let rs = [1.0, 0.5, 2.0];
        let m = 7.0 / 3.0;
        let want = 0.25
            * ((1.0 - m) * (1.0 - m) + 0.5 * (2.0 - m) * (2.0 - m) + 2.0 * (4.0 - m) * (4.0 - m));
        assert!((svr_var(&th, 3.0, 0.25, &rs, false).unwrap() - want).abs() < 1e-15);
        // mse: around the full-sample estimate 3.
        let want = 0.25 * (4.0 + 0.5 * 1.0 + 2.0 * 1.0);
        assert!((svr_var(&th, 3.0, 0.25, &rs, true).unwrap() - want).abs() < 1e-15);
        // NaN replicates are dropped with their rscale.
        let th = [1.0, f64::NAN, 4.0];
        let want = 0.25 * (2.25 + 2.0 * 2.25);
        assert!((svr_var(&th, 3.0, 0.25, &rs, false).unwrap() - want).abs() < 1e-15);
        assert!(svr_var(&[f64::NAN], 1.0, 1.0, &[1.0], false).is_none());
    }

    #[test]
    fn rep_type_parsing() {
        assert_eq!("JK1".parse::<RepType>().unwrap(), RepType::Jk1);
        assert_eq!("fay:0.3".parse::<RepType>().unwrap(), RepType::Fay { rho: 0.3 });
        assert!("fay".parse::<RepType>().unwrap_err().to_string().contains("rho"));
        assert!("brr:2".parse::<RepType>().is_err());
        assert!("jack".parse::<RepType>().is_err());
    }
}
