//! Linearisation estimates (R's `svytotal`, `svymean`, `svyratio` on `survey.design2`), for all
//! domains of a partition in two passes over the rows per statistic.

use crate::design::{LinearDesign, StageCells, build_cells, domain_variances};
use crate::error::StatsError;
use crate::table::MISSING;

use super::domain::Domains;
use super::glm::fit_logit;
use super::target::{DomainStat, Kind, Target, ratio_or_none};

pub(crate) struct LinearEngine<'d> {
    design: &'d LinearDesign,
    domains: &'d Domains,
    cells: Vec<StageCells>,
    tot: Vec<Vec<f64>>,
    present: Vec<Vec<bool>>,
    /// Per domain: `degf` of the domain subset.
    pub(crate) degf: Vec<i64>,
}

/// Per-domain sums of the first pass.
struct Sums {
    w: Vec<f64>,
    y: Vec<f64>,
    x: Vec<f64>,
    n: Vec<u64>,
    n_nonzero: Vec<u64>,
}

impl<'d> LinearEngine<'d> {
    pub(crate) fn new(design: &'d LinearDesign, domains: &'d Domains) -> LinearEngine<'d> {
        // Later stages only matter with an fpc (R's multistage() stops at stage 1 otherwise).
        let n_stages = if design.has_fpc { design.stages.len() } else { 1 };
        let cells: Vec<StageCells> = design.stages[..n_stages]
            .iter()
            .map(|st| build_cells(&st.cluster, &st.cluster_stratum, st.strata.len(), &domains.part))
            .collect();
        let tot = cells.iter().map(|c| vec![0.0; c.n_cells()]).collect();
        let present = cells.iter().map(|c| vec![false; c.n_cells()]).collect();
        let degf = domain_degf(design, &cells[0], domains.part.n_domains);
        LinearEngine { design, domains, cells, tot, present, degf }
    }

    pub(crate) fn run(
        &mut self,
        t: &Target,
        want_logit: bool,
    ) -> Result<Vec<DomainStat>, StatsError> {
        let nd = self.domains.part.n_domains;
        let dom = &self.domains.part.dom;
        let w = &self.design.weights;
        let s = first_pass(t, dom, w, nd);
        let est = estimates(t, &s, self.domains)?;

        // Centre for svyvar() in the design effect: the weighted mean of y (total, mean) or of
        // the ratio residual r = (y - R x) / X (ratio; R's deff(svytotal(r))).
        let centre: Vec<f64> = (0..nd)
            .map(|d| match t.kind {
                Kind::Total | Kind::Mean => s.y[d] / s.w[d],
                Kind::Ratio => (s.y[d] - est[d] * s.x[d]) / s.x[d] / s.w[d],
            })
            .collect();
        for k in 0..self.cells.len() {
            self.tot[k].iter_mut().for_each(|v| *v = 0.0);
            self.present[k].iter_mut().for_each(|v| *v = false);
        }
        let mut ss = vec![0.0; nd];
        for i in 0..dom.len() {
            let d = dom[i];
            if d == MISSING {
                continue;
            }
            let Some((y, x)) = t.values(i) else { continue };
            let d = d as usize;
            let wi = w[i];
            // Influence of row i on the estimator (R: x/prob for totals, centred and scaled for
            // means and ratios).
            let z = match t.kind {
                Kind::Total => wi * y,
                Kind::Mean => wi * (y - est[d]) / s.w[d],
                Kind::Ratio => wi * (y - est[d] * x) / s.x[d],
            };
            for k in 0..self.cells.len() {
                let c = self.cells[k].cell_of_row[i] as usize;
                self.tot[k][c] += z;
                self.present[k][c] = true;
            }
            let v = match t.kind {
                Kind::Total | Kind::Mean => y,
                Kind::Ratio => (y - est[d] * x) / s.x[d],
            };
            ss[d] += wi * (v - centre[d]) * (v - centre[d]);
        }
        let domains = self.domains;
        let var = domain_variances(self.design, &self.cells, nd, &self.tot, &self.present, &|d| {
            domains.name(d)
        })?;
        let logit = if want_logit { Some(self.logit(t)?) } else { None };

        Ok((0..nd)
            .map(|d| {
                let (deff, deff_replace) =
                    design_effects(t.kind, var[d], ss[d], s.w[d], s.n_nonzero[d]);
                DomainStat {
                    estimate: est[d],
                    var: var[d],
                    n: s.n[d],
                    deff,
                    deff_replace,
                    logit: logit.as_ref().map(|l| l[d]),
                }
            })
            .collect())
    }

    /// `svyciprop(method = "logit")`: R's `svyglm(y ~ 1, family = quasibinomial)` per domain,
    /// with weights rescaled to mean 1 over the domain's rows, and its sandwich variance
    /// (`svy.varcoef`: influence = working residual x working weight / sum of working weights).
    fn logit(&mut self, t: &Target) -> Result<Vec<(f64, f64)>, StatsError> {
        let nd = self.domains.part.n_domains;
        let dom = &self.domains.part.dom;
        let w = &self.design.weights;
        let mut wsum = vec![0.0; nd];
        for (i, &d) in dom.iter().enumerate() {
            if d != MISSING {
                wsum[d as usize] += w[i];
            }
        }
        let scale: Vec<f64> = (0..nd).map(|d| self.domains.rows[d] as f64 / wsum[d]).collect();
        let mut rows: Vec<Vec<(f64, f64)>> = vec![Vec::new(); nd];
        for i in 0..dom.len() {
            let d = dom[i];
            if d == MISSING {
                continue;
            }
            if let Some((y, _)) = t.values(i) {
                rows[d as usize].push((y, w[i] * scale[d as usize]));
            }
        }
        let fits: Vec<_> = rows
            .iter()
            .map(|r| {
                let s1: f64 = r.iter().map(|&(y, w)| w * y).sum();
                let s0: f64 = r.iter().map(|&(_, w)| w).sum();
                fit_logit(r, s1, s0, None)
            })
            .collect();
        let a_inv: Vec<f64> = rows
            .iter()
            .zip(&fits)
            .map(|(r, f)| 1.0 / r.iter().map(|&(y, w)| f.working_weight(w, y)).sum::<f64>())
            .collect();
        for k in 0..self.cells.len() {
            self.tot[k].iter_mut().for_each(|v| *v = 0.0);
            self.present[k].iter_mut().for_each(|v| *v = false);
        }
        for i in 0..dom.len() {
            let d = dom[i];
            if d == MISSING {
                continue;
            }
            let Some((y, _)) = t.values(i) else { continue };
            let d = d as usize;
            let f = &fits[d];
            let z = f.working_residual(y) * f.working_weight(w[i] * scale[d], y) * a_inv[d];
            for k in 0..self.cells.len() {
                let c = self.cells[k].cell_of_row[i] as usize;
                self.tot[k][c] += z;
                self.present[k][c] = true;
            }
        }
        let domains = self.domains;
        let var = domain_variances(self.design, &self.cells, nd, &self.tot, &self.present, &|d| {
            domains.name(d)
        })?;
        Ok(fits.iter().zip(var).map(|(f, v)| (f.coef, v)).collect())
    }
}

fn first_pass(t: &Target, dom: &[u32], w: &[f64], nd: usize) -> Sums {
    let mut s = Sums {
        w: vec![0.0; nd],
        y: vec![0.0; nd],
        x: vec![0.0; nd],
        n: vec![0; nd],
        n_nonzero: vec![0; nd],
    };
    for i in 0..dom.len() {
        let d = dom[i];
        if d == MISSING {
            continue;
        }
        let Some((y, x)) = t.values(i) else { continue };
        let d = d as usize;
        let wi = w[i];
        s.w[d] += wi;
        s.y[d] += wi * y;
        s.x[d] += wi * x;
        s.n[d] += 1;
        s.n_nonzero[d] += u64::from(wi != 0.0);
    }
    s
}

/// Point estimates per domain, with the errors for empty domains and zero denominators.
fn estimates(t: &Target, s: &Sums, domains: &Domains) -> Result<Vec<f64>, StatsError> {
    let where_ = |d: usize| {
        domains
            .name(d as u32)
            .map(|n| format!("domain {n}"))
            .unwrap_or_else(|| "the whole sample".to_string())
    };
    (0..s.w.len())
        .map(|d| {
            if s.n[d] == 0 {
                return Err(StatsError::EmptyDomain {
                    domain: domains.name(d as u32).unwrap_or_else(|| "(whole sample)".into()),
                    variable: t.variable.clone(),
                });
            }
            match t.kind {
                Kind::Total => Ok(s.y[d]),
                Kind::Mean if s.w[d] == 0.0 => {
                    Err(StatsError::ZeroDenominator { column: "weights".into(), domain: where_(d) })
                }
                Kind::Mean => Ok(s.y[d] / s.w[d]),
                Kind::Ratio if s.x[d] == 0.0 => Err(StatsError::ZeroDenominator {
                    column: t.variable.clone(),
                    domain: where_(d),
                }),
                Kind::Ratio => Ok(s.y[d] / s.x[d]),
            }
        })
        .collect()
}

/// R's `deff=TRUE` and `deff="replace"` for `survey.design2`: the variance over that of a simple
/// random sample of the same size, without (`deff`) or with (`replace`) replacement, where
/// svyvar = sum w (v - v̄)^2 / W · n/(n-1) with n the rows of non-zero weight.
fn design_effects(
    kind: Kind,
    var: f64,
    ss: f64,
    w: f64,
    n_nonzero: u64,
) -> (Option<f64>, Option<f64>) {
    if n_nonzero < 2 {
        return (None, None);
    }
    let n = n_nonzero as f64;
    let svyvar = ss / w * n / (n - 1.0);
    match kind {
        Kind::Mean => {
            // svymean: NA when the weights sum to less than the sample size.
            let deff = if w < n { None } else { ratio_or_none(var, svyvar * (w - n) / (w * n)) };
            (deff, ratio_or_none(var, svyvar / n))
        }
        Kind::Total | Kind::Ratio => {
            // svytotal (and svyratio, via svytotal of the residual): scaled by N^2, N = sum w.
            (
                ratio_or_none(var, svyvar * w * w * (w - n) / (w * n)),
                ratio_or_none(var, svyvar * w * w / n),
            )
        }
    }
}

/// `degf()` of each domain subset: PSUs with a row of non-zero weight minus their strata.
fn domain_degf(design: &LinearDesign, cells: &StageCells, nd: usize) -> Vec<i64> {
    let mut nonzero = vec![false; cells.n_cells()];
    for (i, &c) in cells.cell_of_row.iter().enumerate() {
        if c != MISSING && design.weights[i] != 0.0 {
            nonzero[c as usize] = true;
        }
    }
    let mut degf = vec![0i64; nd];
    for g in &cells.groups {
        let psus = nonzero[g.start as usize..g.end as usize].iter().filter(|&&b| b).count() as i64;
        if psus > 0 {
            degf[g.domain as usize] += psus - 1;
        }
    }
    degf
}
