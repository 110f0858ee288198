//! R's `svyrecvar` / `multistage` / `onestage` / `onestrat` on cluster totals, for every domain
//! at once.
//!
//! Inputs are, per stage, the per-cell totals of the influence values and whether each cell
//! had any row in the estimation subset ("present"). A stratum takes part only if one of its
//! cells is present, as R only sees strata that occur in the subset.

use crate::error::StatsError;

use super::LonelyPsu;
use super::cells::StageCells;
use super::linear::LinearDesign;

/// R's threshold below which a stratum counts as sampled with certainty.
const CERTAINTY_FPC: f64 = 1e-7;

/// Variance of the weighted total of the influence values, per domain.
///
/// `tot[k][cell]` / `present[k][cell]` are indexed by the cells of stage k. `domain_name` turns a
/// domain index into text for error messages (`None` when there are no domains).
pub(crate) fn domain_variances(
    design: &LinearDesign,
    cells: &[StageCells],
    n_domains: usize,
    tot: &[Vec<f64>],
    present: &[Vec<bool>],
    domain_name: &dyn Fn(u32) -> Option<String>,
) -> Result<Vec<f64>, StatsError> {
    let mut first = vec![0.0; n_domains];
    let mut n_strata = vec![0u32; n_domains];
    let mut n_ok = vec![0u32; n_domains];
    let mut later = vec![0.0; n_domains];
    // Without fpc R stops after stage 1 (`!is.null(fpcs)` in multistage()).
    let n_stages = if design.has_fpc { design.stages.len() } else { 1 };
    for k in 0..n_stages {
        let stage = &design.stages[k];
        let sc = &cells[k];
        for g in &sc.groups {
            let range = g.start as usize..g.end as usize;
            if !present[k][range.clone()].iter().any(|&p| p) {
                continue;
            }
            let st = &stage.strata[g.stratum as usize];
            let d = g.domain as usize;
            let contribution =
                stratum_contribution(design.lonely, st.n_units, st.fpc, &tot[k][range]);
            let contribution = match contribution {
                Ok(v) => v,
                Err(()) => {
                    let context = domain_name(g.domain)
                        .map(|s| format!(" (estimating in domain {s})"))
                        .unwrap_or_default();
                    return Err(StatsError::LonelyPsu {
                        stratum: st.label.clone(),
                        stage: k + 1,
                        context,
                    });
                }
            };
            if k == 0 {
                n_strata[d] += 1;
                if let Some(v) = contribution {
                    n_ok[d] += 1;
                    first[d] += v;
                }
            } else {
                // Each stage-k stratum is R's separate onestage() call within one parent unit:
                // an NA there (average with a lonely unit) makes the whole result NaN, as in R.
                later[d] += match contribution {
                    Some(v) => v * st.multiplier,
                    None => f64::NAN,
                };
            }
        }
    }
    Ok((0..n_domains)
        .map(|d| {
            // onestage(): sum of the non-NA strata times nstrat / nokstrat.
            let v1 = if n_ok[d] == n_strata[d] {
                first[d]
            } else {
                first[d] * f64::from(n_strata[d]) / f64::from(n_ok[d])
            };
            v1 + later[d]
        })
        .collect())
}

/// One stratum's term, given the totals of its clusters present in the domain (clusters of the
/// stratum absent from the domain are zeros). `Ok(None)` is R's NA (average with a lonely PSU);
/// `Err(())` is the lonely-PSU failure.
fn stratum_contribution(
    lonely: LonelyPsu,
    n_units: u32,
    fpc: f64,
    totals: &[f64],
) -> Result<Option<f64>, ()> {
    if fpc < CERTAINTY_FPC {
        return Ok(Some(0.0));
    }
    let n = f64::from(n_units);
    let sum: f64 = totals.iter().sum();
    if n_units > 1 {
        let mean = sum / n;
        let absent = n - totals.len() as f64;
        let ss: f64 =
            totals.iter().map(|&t| (t - mean) * (t - mean)).sum::<f64>() + absent * mean * mean;
        return Ok(Some(fpc * n / (n - 1.0) * ss));
    }
    match lonely {
        LonelyPsu::Fail => Err(()),
        // Centred at its own mean, a single PSU contributes nothing.
        LonelyPsu::Certainty | LonelyPsu::Remove => Ok(Some(0.0)),
        // R leaves the single total uncentred, i.e. centred at the (already removed) grand mean.
        LonelyPsu::Adjust => Ok(Some(fpc * sum * sum)),
        LonelyPsu::Average => Ok(None),
    }
}
