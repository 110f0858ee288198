//! Degrees of freedom of replicate designs: R's `qr(weights(design, "analysis"), tol = 1e-5)$rank - 1`.
//!
//! R runs LINPACK's `dqrdc2` on the n x R matrix of analysis weights. A column counts when its
//! norm, after removing the accepted columns before it, is at least `tol` times its original
//! norm. The same decisions follow from the R x R Gram matrix W'W by sequential Cholesky in
//! column order, and W'W is cheap to form because rows pointing the same way (e.g. all rows of
//! a PSU in jackknife weights) can be merged: sum_i w_i w_i' = sum_g (sum_{i in g} s_i^2) u_g u_g'.

use crate::hash::fx_map;
use crate::table::MISSING;

use super::cells::{Partition, StageCells};
use super::replicate::Jackknife;

/// R's tolerance in `degf.svyrep.design`.
pub(crate) const RANK_TOL: f64 = 1e-5;

/// Numerical rank of W from G = W'W (row-major p x p), with `dqrdc2`'s acceptance rule and its
/// cap at the number of rows.
pub(crate) fn rank_from_gram(g: &[f64], p: usize, n_rows: usize, tol: f64) -> usize {
    let mut accepted: Vec<usize> = Vec::new();
    // Rows of the Cholesky factor for the accepted columns (lower triangular, packed per row).
    let mut l_rows: Vec<Vec<f64>> = Vec::new();
    for j in 0..p {
        if accepted.len() >= n_rows {
            break;
        }
        let gjj = g[j * p + j];
        if gjj <= 0.0 {
            continue;
        }
        let m = accepted.len();
        let mut l = vec![0.0; m];
        for a in 0..m {
            let mut s = g[accepted[a] * p + j];
            let la = &l_rows[a];
            for b in 0..a {
                s -= la[b] * l[b];
            }
            l[a] = s / la[a];
        }
        let r2 = gjj - l.iter().map(|v| v * v).sum::<f64>();
        if r2 > 0.0 && r2.sqrt() >= tol * gjj.sqrt() {
            l.push(r2.sqrt());
            l_rows.push(l);
            accepted.push(j);
        }
    }
    accepted.len()
}

/// Per domain: (Gram matrix of the domain's rows of W, number of rows), for W given as columns.
#[cfg(test)]
pub(crate) fn column_grams(cols: &[&[f64]], part: &Partition) -> Vec<(Vec<f64>, usize)> {
    let mut sweep = DirectionSweep::new(part.dom.len(), cols.len());
    let mut start = 0;
    while start < part.dom.len() {
        let end = (start + DIRECTION_BLOCK).min(part.dom.len());
        sweep.block(cols, start, end);
        start = end;
    }
    sweep.grams(cols, part)
}

/// Rows per block of the direction sweep: the block of every column fits in L2.
pub(crate) const DIRECTION_BLOCK: usize = 512;

/// Groups rows of W by direction, block by block, so that a caller streaming the replicate
/// columns for other work can feed the same cache-resident blocks.
///
/// Each row is summarised by three random projections with positive coefficients: the ratios
/// p1/s and p2/s do not change when the row is scaled, so rows that are exact multiples of each
/// other agree up to rounding, which the dropped low mantissa bits absorb (a split group only
/// costs time); two ratios make a false merge of different directions vanishingly unlikely. One
/// fused, vectorisable pass per column. A missing (NaN) weight makes the row's sums NaN.
pub(crate) struct DirectionSweep {
    c1: Vec<f64>,
    c2: Vec<f64>,
    c3: Vec<f64>,
    proj1: Vec<f64>,
    proj2: Vec<f64>,
    /// The normalising projection: row i is `norm[i]` times its direction.
    norm: Vec<f64>,
}

impl DirectionSweep {
    pub(crate) fn new(n: usize, p: usize) -> DirectionSweep {
        let mut seed = 0x5eed_u64;
        let mut coef = || {
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let z = (seed ^ (seed >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            1.0 + ((z ^ (z >> 29)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let c1: Vec<f64> = (0..p).map(|_| coef()).collect();
        let c2: Vec<f64> = (0..p).map(|_| coef()).collect();
        let c3: Vec<f64> = (0..p).map(|_| coef()).collect();
        DirectionSweep { c1, c2, c3, proj1: vec![0.0; n], proj2: vec![0.0; n], norm: vec![0.0; n] }
    }

    pub(crate) fn block(&mut self, cols: &[&[f64]], start: usize, end: usize) {
        let p1 = &mut self.proj1[start..end];
        let p2 = &mut self.proj2[start..end];
        let p3 = &mut self.norm[start..end];
        for (r, col) in cols.iter().enumerate() {
            let (a, b, c) = (self.c1[r], self.c2[r], self.c3[r]);
            for (((&x, s1), s2), s3) in
                col[start..end].iter().zip(p1.iter_mut()).zip(p2.iter_mut()).zip(p3.iter_mut())
            {
                *s1 += x * a;
                *s2 += x * b;
                *s3 += x * c;
            }
        }
    }

    /// First row holding a missing weight, once every block has been fed.
    pub(crate) fn missing_row(&self) -> Option<usize> {
        self.norm.iter().position(|v| v.is_nan())
    }

    pub(crate) fn grams(&self, cols: &[&[f64]], part: &Partition) -> Vec<(Vec<f64>, usize)> {
        let p = cols.len();
        let n = part.dom.len();
        let mut out: Vec<(Vec<f64>, usize)> =
            (0..part.n_domains).map(|_| (vec![0.0; p * p], 0)).collect();
        // (representative row, sum of squared norms) per (domain, direction).
        let mut groups = fx_map::<(u32, u64, u64), (u32, f64)>(1024);
        // Consecutive rows usually share a direction (same PSU): accumulate before hashing.
        let mut last: Option<((u32, u64, u64), f64)> = None;
        let mut u = vec![0.0; p];
        for i in 0..n {
            let d = part.dom[i];
            if d == MISSING {
                continue;
            }
            out[d as usize].1 += 1;
            let s = self.norm[i];
            if s == 0.0 {
                // All zero (adds nothing to W'W), or, with negative weights, a row orthogonal
                // to the normalising projection: then it is added on its own.
                if cols.iter().any(|c| c[i] != 0.0) {
                    for (r, col) in cols.iter().enumerate() {
                        u[r] = col[i];
                    }
                    add_outer(&mut out[d as usize].0, &u, 1.0);
                }
                continue;
            }
            let key =
                (d, (self.proj1[i] / s).to_bits() & !0xfff, (self.proj2[i] / s).to_bits() & !0xfff);
            match &mut last {
                Some((k, acc)) if *k == key => *acc += s * s,
                _ => {
                    if let Some((k, acc)) = last.take() {
                        groups.entry(k).or_insert((i as u32, 0.0)).1 += acc;
                    }
                    groups.entry(key).or_insert((i as u32, 0.0));
                    last = Some((key, s * s));
                }
            }
        }
        if let Some((k, acc)) = last {
            groups.entry(k).or_insert((0, 0.0)).1 += acc;
        }
        for (&(d, _, _), &(rep, s2)) in &groups {
            let rep = rep as usize;
            let inv = 1.0 / self.norm[rep];
            for (r, col) in cols.iter().enumerate() {
                u[r] = col[rep] * inv;
            }
            add_outer(&mut out[d as usize].0, &u, s2);
        }
        out
    }
}

/// Per domain: Gram matrix of the jackknife analysis weights (pweight x factor), formed
/// analytically from per-PSU sums of squared weights, plus the number of rows.
pub(crate) fn jackknife_grams(
    jk: &Jackknife,
    pweights: &[f64],
    part: &Partition,
    cells: &StageCells,
) -> Vec<(Vec<f64>, usize)> {
    let p = jk.reps.len();
    let nd = part.n_domains;
    let nh = jk.n_strata;
    // c[cell] = sum of squared weights of the cell's rows.
    let mut c = vec![0.0; cells.n_cells()];
    let mut rows = vec![0usize; nd];
    for (i, &cell) in cells.cell_of_row.iter().enumerate() {
        if cell != MISSING {
            c[cell as usize] += pweights[i] * pweights[i];
            rows[part.dom[i] as usize] += 1;
        }
    }
    let mut total = vec![0.0; nd];
    let mut by_stratum = vec![0.0; nd * nh];
    // Squared weight of each replicate's dropped PSU, per domain.
    let mut dropped = vec![0.0; p * nd];
    for g in &cells.groups {
        for cell in g.start..g.end {
            let v = c[cell as usize];
            let d = g.domain as usize;
            total[d] += v;
            by_stratum[d * nh + g.stratum as usize] += v;
            let r = jk.dropped_by[cells.cell_cluster[cell as usize] as usize];
            if r != MISSING {
                dropped[r as usize * nd + d] += v;
            }
        }
    }
    (0..nd)
        .map(|d| {
            let mut gram = vec![0.0; p * p];
            for r in 0..p {
                for s in r..p {
                    let v =
                        jk_gram_entry(jk, r, s, total[d], &by_stratum[d * nh..(d + 1) * nh], |q| {
                            dropped[q * nd + d]
                        });
                    gram[r * p + s] = v;
                    gram[s * p + r] = v;
                }
            }
            (gram, rows[d])
        })
        .collect()
}

/// sum_g c_g F[g,r] F[g,s] with F[g,r] = b_r + (a_r - b_r)[g in S_r] - a_r [g = d_r].
fn jk_gram_entry(
    jk: &Jackknife,
    r: usize,
    s: usize,
    total: f64,
    by_stratum: &[f64],
    dropped_c: impl Fn(usize) -> f64,
) -> f64 {
    let (pr, ps) = (&jk.reps[r], &jk.reps[s]);
    let (ar, br, al_r) = (pr.a, pr.b, pr.a - pr.b);
    let (as_, bs, al_s) = (ps.a, ps.b, ps.a - ps.b);
    let c_sr = by_stratum[pr.stratum as usize];
    let c_ss = by_stratum[ps.stratum as usize];
    let c_both = if pr.stratum == ps.stratum { c_sr } else { 0.0 };
    let c_dr = if pr.dropped != MISSING { dropped_c(r) } else { 0.0 };
    let c_ds = if ps.dropped != MISSING { dropped_c(s) } else { 0.0 };
    // A dropped PSU lies in its own replicate's stratum; it is in the other's stratum iff the
    // strata agree.
    let ds_in_sr = if pr.stratum == ps.stratum { c_ds } else { 0.0 };
    let dr_in_ss = if pr.stratum == ps.stratum { c_dr } else { 0.0 };
    let same_dropped = if pr.dropped != MISSING && pr.dropped == ps.dropped { c_dr } else { 0.0 };
    br * bs * total + br * al_s * c_ss - br * as_ * c_ds + al_r * bs * c_sr + al_r * al_s * c_both
        - al_r * as_ * ds_in_sr
        - ar * bs * c_dr
        - ar * al_s * dr_in_ss
        + ar * as_ * same_dropped
}

fn add_outer(gram: &mut [f64], u: &[f64], s: f64) {
    let p = u.len();
    for r in 0..p {
        let ur = s * u[r];
        if ur == 0.0 {
            continue;
        }
        let row = &mut gram[r * p..(r + 1) * p];
        for (g, &us) in row.iter_mut().zip(u) {
            *g += ur * us;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_of_known_matrices() {
        // Columns e1, e2, e1 + e2, 0: rank 2.
        let w: [[f64; 4]; 3] = [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]];
        let mut g = vec![0.0; 16];
        for row in &w {
            add_outer(&mut g, row, 1.0);
        }
        assert_eq!(rank_from_gram(&g, 4, 3, RANK_TOL), 2);
        // A column dependent up to 1e-7 of its norm is dropped at tol 1e-5, kept at tol 1e-9.
        let w: [[f64; 2]; 2] = [[1.0, 1.0], [0.0, 1e-7]];
        let mut g = vec![0.0; 4];
        for row in &w {
            add_outer(&mut g, row, 1.0);
        }
        assert_eq!(rank_from_gram(&g, 2, 2, RANK_TOL), 1);
        assert_eq!(rank_from_gram(&g, 2, 2, 1e-9), 2);
        // More columns than rows: capped at the number of rows.
        let mut g = vec![0.0; 9];
        add_outer(&mut g, &[1.0, 2.0, 3.0], 1.0);
        add_outer(&mut g, &[0.0, 1.0, 5.0], 1.0);
        assert_eq!(rank_from_gram(&g, 3, 2, RANK_TOL), 2);
    }

    #[test]
    fn column_grams_merge_proportional_rows() {
        // Rows 0 and 1 are multiples (x0.3), row 2 differs; Gram must equal the plain W'W.
        let c1 = [2.0, 0.6, 1.0, 0.0];
        let c2 = [4.0, 1.2, 0.0, 0.0];
        let cols: Vec<&[f64]> = vec![&c1, &c2];
        let part = Partition::whole(4);
        let got = column_grams(&cols, &part);
        let mut want = vec![0.0; 4];
        for i in 0..4 {
            add_outer(&mut want, &[c1[i], c2[i]], 1.0);
        }
        assert_eq!(got[0].1, 4);
        for (a, b) in got[0].0.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
}
