//! Replicate-weight estimates (R's `svymean`, `svytotal`, `svyratio` on `svyrep.design`):
//! the statistic recomputed with each replicate's weights, then `svrVar()`.
//!
//! The replicate columns are the bulk of the data (80 columns of a million rows is 640 MB), so
//! every statistic of a request and the degrees-of-freedom computation share one streaming
//! sweep over them, block of rows by block of rows.

use crate::design::{
    DIRECTION_BLOCK, DirectionSweep, RepWeights, ReplicateDesign, StageCells, svr_var,
};
use crate::error::StatsError;
use crate::table::MISSING;

use super::domain::Domains;
use super::glm::fit_logit;
use super::target::{DomainStat, Kind, Target, ratio_or_none};

pub(crate) struct ReplicateEngine<'d, 't> {
    design: &'d ReplicateDesign<'t>,
    domains: &'d Domains,
    jk_cells: Option<StageCells>,
    /// Per domain; for replicate columns filled in by the first `run_all`.
    pub(crate) degf: Vec<i64>,
}

/// Full-sample sums of one statistic per domain.
struct FullSample {
    w: Vec<f64>,
    n: Vec<u64>,
    est: Vec<f64>,
    /// sum pw (v - v̄)^2 for the design effect (v = y, or the ratio residual).
    ss: Vec<f64>,
}

impl<'d, 't> ReplicateEngine<'d, 't> {
    pub(crate) fn new(
        design: &'d ReplicateDesign<'t>,
        domains: &'d Domains,
    ) -> Result<ReplicateEngine<'d, 't>, StatsError> {
        let (jk_cells, degf) = match &design.reps {
            RepWeights::Jackknife(jk) => {
                let cells = jk.cells(&domains.part);
                let degf = design.degf_by_domain(&domains.part, Some(&cells))?;
                (Some(cells), degf)
            }
            RepWeights::Columns(_) => (None, Vec::new()),
        };
        Ok(ReplicateEngine { design, domains, jk_cells, degf })
    }

    /// Every target at once; `want_logit` per target asks for R's logit-interval refits.
    pub(crate) fn run_all(
        &mut self,
        targets: &[(&Target, bool)],
    ) -> Result<Vec<Vec<DomainStat>>, StatsError> {
        let nd = self.domains.part.n_domains;
        let full: Vec<FullSample> =
            targets.iter().map(|(t, _)| self.full_sample(t)).collect::<Result<_, _>>()?;
        let r = self.design.n_replicates();
        // Targets needing the same weighted sums (mean and total of one column) share them.
        let mut unique: Vec<(&Target, bool)> = Vec::new();
        let mut which: Vec<usize> = Vec::with_capacity(targets.len());
        for &(t, l) in targets {
            match unique.iter().position(|(u, _)| u.sums_key() == t.sums_key()) {
                Some(k) => which.push(k),
                None => {
                    which.push(unique.len());
                    unique.push((t, l));
                }
            }
        }
        let sums = self.replicate_sums(&unique, r, nd)?;
        let mut out = Vec::with_capacity(targets.len());
        for (((t, want_logit), f), k) in targets.iter().zip(&full).zip(&which) {
            let (num, den) = &sums[*k];
            let beta0 = if *want_logit { Some(self.full_logit_fits(t)) } else { None };
            let mut stats = Vec::with_capacity(nd);
            let mut thetas = vec![0.0; r];
            for d in 0..nd {
                for q in 0..r {
                    let (a, b) = (num[q * nd + d], den[q * nd + d]);
                    thetas[q] = match t.kind {
                        Kind::Total => a,
                        Kind::Mean | Kind::Ratio => a / b,
                    };
                }
                let b0 = beta0.as_ref().map(|b| b[d]);
                let (var, logit) = if self.design.selfrep_all {
                    // R: every stratum self-representing, variance 0.
                    (0.0, b0.map(|b| (b, 0.0)))
                } else {
                    let v = svr_var(
                        &thetas,
                        f.est[d],
                        self.design.scale,
                        &self.design.rscales,
                        self.design.mse,
                    )
                    .ok_or_else(|| StatsError::AllReplicatesNaN {
                        replicates: r,
                        what: describe(t, self.domains, d),
                    })?;
                    // svyglm on replicate designs refits the model with each replicate's weights
                    // (normalised to sum 1), starting from the full-sample coefficient.
                    let logit = b0.map(|b| {
                        let betas: Vec<f64> = thetas
                            .iter()
                            .map(|&p| {
                                if p.is_nan() {
                                    f64::NAN
                                } else {
                                    fit_logit(&[], p, 1.0, Some(b)).coef
                                }
                            })
                            .collect();
                        (
                            b,
                            svr_var(
                                &betas,
                                b,
                                self.design.scale,
                                &self.design.rscales,
                                self.design.mse,
                            )
                            .unwrap_or(f64::NAN),
                        )
                    });
                    (v, logit)
                };
                let (deff, deff_replace) = design_effects(t.kind, var, f.ss[d], f.w[d], f.n[d]);
                stats.push(DomainStat {
                    estimate: f.est[d],
                    var,
                    n: f.n[d],
                    deff,
                    deff_replace,
                    logit,
                });
            }
            out.push(stats);
        }
        Ok(out)
    }

    fn full_sample(&self, t: &Target) -> Result<FullSample, StatsError> {
        let nd = self.domains.part.n_domains;
        let dom = &self.domains.part.dom;
        let pw = &self.design.pweights;
        let (mut w, mut ys, mut xs, mut n) =
            (vec![0.0; nd], vec![0.0; nd], vec![0.0; nd], vec![0u64; nd]);
        for i in 0..dom.len() {
            let d = dom[i];
            if d == MISSING {
                continue;
            }
            let Some((y, x)) = t.values(i) else { continue };
            let d = d as usize;
            w[d] += pw[i];
            ys[d] += pw[i] * y;
            xs[d] += pw[i] * x;
            n[d] += 1;
        }
        let mut est = vec![0.0; nd];
        for d in 0..nd {
            let where_ = || {
                self.domains
                    .name(d as u32)
                    .map(|s| format!("domain {s}"))
                    .unwrap_or_else(|| "the whole sample".into())
            };
            if n[d] == 0 {
                return Err(StatsError::EmptyDomain {
                    domain: self.domains.name(d as u32).unwrap_or_else(|| "(whole sample)".into()),
                    variable: t.variable.clone(),
                });
            }
            est[d] = match t.kind {
                Kind::Total => ys[d],
                Kind::Mean if w[d] == 0.0 => {
                    return Err(StatsError::ZeroDenominator {
                        column: "weights".into(),
                        domain: where_(),
                    });
                }
                Kind::Mean => ys[d] / w[d],
                Kind::Ratio if xs[d] == 0.0 => {
                    return Err(StatsError::ZeroDenominator {
                        column: t.variable.clone(),
                        domain: where_(),
                    });
                }
                Kind::Ratio => ys[d] / xs[d],
            };
        }
        // svyvar(estimate.only = TRUE) for design effects: n/(n-1) · sum pw (v - v̄)^2 / sum pw.
        let centre: Vec<f64> = (0..nd)
            .map(|d| match t.kind {
                Kind::Total | Kind::Mean => ys[d] / w[d],
                Kind::Ratio => (ys[d] - est[d] * xs[d]) / xs[d] / w[d],
            })
            .collect();
        let mut ss = vec![0.0; nd];
        for i in 0..dom.len() {
            let d = dom[i];
            if d == MISSING {
                continue;
            }
            let Some((y, x)) = t.values(i) else { continue };
            let d = d as usize;
            let v = match t.kind {
                Kind::Total | Kind::Mean => y,
                Kind::Ratio => (y - est[d] * x) / xs[d],
            };
            ss[d] += pw[i] * (v - centre[d]) * (v - centre[d]);
        }
        Ok(FullSample { w, n, est, ss })
    }

    /// Full-sample `svyglm(y ~ 1, quasibinomial)` coefficient per domain; R's replicate-design
    /// svyglm weights the rows by pweight / sum(pweight) over the domain's rows.
    fn full_logit_fits(&self, t: &Target) -> Vec<f64> {
        let nd = self.domains.part.n_domains;
        let dom = &self.domains.part.dom;
        let pw = &self.design.pweights;
        let mut wsum = vec![0.0; nd];
        for (i, &d) in dom.iter().enumerate() {
            if d != MISSING {
                wsum[d as usize] += pw[i];
            }
        }
        let mut rows: Vec<Vec<(f64, f64)>> = vec![Vec::new(); nd];
        for i in 0..dom.len() {
            let d = dom[i];
            if d == MISSING {
                continue;
            }
            if let Some((y, _)) = t.values(i) {
                rows[d as usize].push((y, pw[i] / wsum[d as usize]));
            }
        }
        rows.iter()
            .map(|r| {
                let s1: f64 = r.iter().map(|&(y, w)| w * y).sum();
                let s0: f64 = r.iter().map(|&(_, w)| w).sum();
                fit_logit(r, s1, s0, None).coef
            })
            .collect()
    }

    /// Per target, per replicate q and domain d (index q * nd + d): sum of w_q y and of w_q x.
    #[allow(clippy::type_complexity)]
    fn replicate_sums(
        &mut self,
        targets: &[(&Target, bool)],
        r: usize,
        nd: usize,
    ) -> Result<Vec<(Vec<f64>, Vec<f64>)>, StatsError> {
        let mut sums: Vec<(Vec<f64>, Vec<f64>)> =
            targets.iter().map(|_| (vec![0.0; r * nd], vec![0.0; r * nd])).collect();
        let dom = &self.domains.part.dom;
        match &self.design.reps {
            RepWeights::Columns(cols) => {
                let n = dom.len();
                let fill_degf = self.degf.is_empty();
                let mut sweep = fill_degf.then(|| DirectionSweep::new(n, cols.len()));
                // Per block of rows and target: the active rows sorted by domain (a counting sort
                // reused by all replicate columns), so that each (replicate, domain) sum is a
                // contiguous gather with independent partial sums, not a chain of adds into one
                // accumulator. The block's slice of each column is read from memory once for
                // the direction sweep and every target.
                let mut sorted: Vec<Vec<(u32, f64, f64)>> =
                    vec![Vec::with_capacity(DIRECTION_BLOCK); targets.len()];
                let mut segs: Vec<Vec<usize>> = vec![vec![0; nd + 1]; targets.len()];
                let mut fill: Vec<usize> = Vec::with_capacity(nd);
                let mut start = 0;
                while start < n {
                    let end = (start + DIRECTION_BLOCK).min(n);
                    for (k, (t, _)) in targets.iter().enumerate() {
                        sort_block(t, dom, start, end, nd, &mut sorted[k], &mut segs[k], &mut fill);
                    }
                    if let Some(sw) = sweep.as_mut() {
                        sw.block(cols, start, end);
                    }
                    for (q, col) in cols.iter().enumerate() {
                        let col = &col[start..end];
                        for (k, (num, den)) in sums.iter_mut().enumerate() {
                            let (entries, seg) = (&sorted[k], &segs[k]);
                            for d in 0..nd {
                                if seg[d] == seg[d + 1] {
                                    continue;
                                }
                                let (sy, sx) = gather_sums(col, &entries[seg[d]..seg[d + 1]]);
                                num[q * nd + d] += sy;
                                den[q * nd + d] += sx;
                            }
                        }
                    }
                    start = end;
                }
                if let Some(sw) = sweep {
                    self.degf = self.design.degf_from_sweep(&sw, &self.domains.part)?;
                }
            }
            RepWeights::Jackknife(jk) => {
                // Replicate q scales stratum s_q's PSUs by a (its dropped PSU by 0) and all
                // others by b, so its totals follow from PSU totals without touching rows again.
                let cells =
                    self.jk_cells.as_ref().expect("jackknife cells are built with the engine");
                let pw = &self.design.pweights;
                for ((t, _), (num, den)) in targets.iter().zip(sums.iter_mut()) {
                    let mut sy = vec![0.0; cells.n_cells()];
                    let mut sx = vec![0.0; cells.n_cells()];
                    for (i, &c) in cells.cell_of_row.iter().enumerate() {
                        if c == MISSING {
                            continue;
                        }
                        if let Some((y, x)) = t.values(i) {
                            sy[c as usize] += pw[i] * y;
                            sx[c as usize] += pw[i] * x;
                        }
                    }
                    let nh = jk.n_strata;
                    let (mut ty, mut tx) = (vec![0.0; nd], vec![0.0; nd]);
                    let (mut hy, mut hx) = (vec![0.0; nd * nh], vec![0.0; nd * nh]);
                    let (mut dy, mut dx) = (vec![0.0; r * nd], vec![0.0; r * nd]);
                    for g in &cells.groups {
                        let (d, h) = (g.domain as usize, g.stratum as usize);
                        for cell in g.start as usize..g.end as usize {
                            ty[d] += sy[cell];
                            tx[d] += sx[cell];
                            hy[d * nh + h] += sy[cell];
                            hx[d * nh + h] += sx[cell];
                            let q = jk.dropped_by[cells.cell_cluster[cell] as usize];
                            if q != MISSING {
                                dy[q as usize * nd + d] += sy[cell];
                                dx[q as usize * nd + d] += sx[cell];
                            }
                        }
                    }
                    for (q, rep) in jk.reps.iter().enumerate() {
                        let s = rep.stratum as usize;
                        for d in 0..nd {
                            let k = q * nd + d;
                            num[k] =
                                rep.b * (ty[d] - hy[d * nh + s]) + rep.a * (hy[d * nh + s] - dy[k]);
                            den[k] =
                                rep.b * (tx[d] - hx[d * nh + s]) + rep.a * (hx[d * nh + s] - dx[k]);
                        }
                    }
                }
            }
        }
        Ok(sums)
    }
}

/// The active rows of `start..end` as (offset in block, y, x), sorted by domain; `seg[d]..seg[d+1]`
/// is domain d's run. `fill` is scratch space.
#[allow(clippy::too_many_arguments)]
fn sort_block(
    t: &Target,
    dom: &[u32],
    start: usize,
    end: usize,
    nd: usize,
    sorted: &mut Vec<(u32, f64, f64)>,
    seg: &mut [usize],
    fill: &mut Vec<usize>,
) {
    seg.iter_mut().for_each(|c| *c = 0);
    for (i, &d) in dom.iter().enumerate().take(end).skip(start) {
        if d != MISSING && t.values(i).is_some() {
            seg[d as usize + 1] += 1;
        }
    }
    for d in 0..nd {
        seg[d + 1] += seg[d];
    }
    sorted.resize(seg[nd], (0, 0.0, 0.0));
    fill.clear();
    fill.extend_from_slice(&seg[..nd]);
    for (i, &d) in dom.iter().enumerate().take(end).skip(start) {
        if d == MISSING {
            continue;
        }
        if let Some((y, x)) = t.values(i) {
            sorted[fill[d as usize]] = ((i - start) as u32, y, x);
            fill[d as usize] += 1;
        }
    }
}

/// (sum w y, sum w x) over the entries, with four independent partial sums.
#[inline]
fn gather_sums(col: &[f64], entries: &[(u32, f64, f64)]) -> (f64, f64) {
    let (mut y0, mut y1, mut y2, mut y3) = (0.0, 0.0, 0.0, 0.0);
    let (mut x0, mut x1, mut x2, mut x3) = (0.0, 0.0, 0.0, 0.0);
    let mut chunks = entries.chunks_exact(4);
    for c in &mut chunks {
        let (w0, w1, w2, w3) = (
            col[c[0].0 as usize],
            col[c[1].0 as usize],
            col[c[2].0 as usize],
            col[c[3].0 as usize],
        );
        y0 += w0 * c[0].1;
        y1 += w1 * c[1].1;
        y2 += w2 * c[2].1;
        y3 += w3 * c[3].1;
        x0 += w0 * c[0].2;
        x1 += w1 * c[1].2;
        x2 += w2 * c[2].2;
        x3 += w3 * c[3].2;
    }
    for e in chunks.remainder() {
        let w = col[e.0 as usize];
        y0 += w * e.1;
        x0 += w * e.2;
    }
    ((y0 + y1) + (y2 + y3), (x0 + x1) + (x2 + x3))
}

fn describe(t: &Target, domains: &Domains, d: usize) -> String {
    match domains.name(d as u32) {
        Some(dn) => format!("'{}' in domain {dn}", t.variable),
        None => format!("'{}'", t.variable),
    }
}

/// R's deff for replicate designs: svyvar over n = rows (zero weights included), scaled by
/// (N - n)/N for `deff=TRUE`; totals (and ratios, through the residual) by N^2.
fn design_effects(kind: Kind, var: f64, ss: f64, w: f64, n: u64) -> (Option<f64>, Option<f64>) {
    if n < 2 {
        return (None, None);
    }
    let nf = n as f64;
    let svyvar = nf / (nf - 1.0) * ss / w;
    let replace = match kind {
        Kind::Mean => svyvar / nf,
        Kind::Total | Kind::Ratio => svyvar * w * w / nf,
    };
    (ratio_or_none(var, replace * (w - nf) / w), ratio_or_none(var, replace))
}
