//! The perturbation table of the cell-key method and its lookup.
//!
//! Row `i` gives, for an original count `i` (the last row serves every larger count), the
//! probability of each noise `v` added to it. The rows follow the `ptable` R package
//! (`create_cnt_ptable(D, V, js)`): noise in `-D..=D`, no published value below zero or in
//! `1..=js`, zero mean (no bias for any original value), variance at most `V`, and among the
//! distributions meeting those the one of maximum entropy. That maximiser has the form
//! `p(v) ∝ exp(a·v + b·v²)` over the allowed noises; `a` and `b` are found by Newton's method on
//! the convex dual (`log Z(a, b) − b·V`), with a backtracking line search.
//!
//! Where a small count cannot meet every constraint (the count itself is in `1..=js`, so noise
//! 0 is forbidden and every zero-mean choice may have a variance above `V`), the row says so
//! ([`Relaxation`]) and keeps the others: its variance is the least a zero-mean row can have.
//! The mean is never relaxed: with `js < D` every positive count can reach both 0 (or itself)
//! and a value above `js`, so noises of both signs are always allowed.
//!
//! Lookup: a cell key `k` in 0..=255 picks the noise whose cumulative probability interval holds
//! `(k + 0.5) / 256`, so every cell with the same records and count gets the same noise.

use crate::keys::CELL_KEYS;

/// The parameters of a perturbation table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PTableParams {
    /// Largest absolute noise.
    pub d: u32,
    /// Largest noise variance.
    pub v: f64,
    /// No positive published count is at most this (small counts are the disclosive ones).
    pub js: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PTableError {
    #[error("D must be at least 1 (D = 0 publishes exact counts), got {0}")]
    NoNoise(u32),
    #[error("V must be a positive number, got {0}")]
    Variance(f64),
    #[error("js = {js} must be below D = {d}: a count of 1 must be able to reach 0 or js + 1")]
    Blocked { d: u32, js: u32 },
    #[error("perturbation table, line {line}: {why}")]
    Csv { line: usize, why: String },
}

/// Which constraint a row could not meet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Relaxation {
    /// Every constraint holds.
    None,
    /// No zero-mean row over the allowed noises has variance `≤ V`: the row has the least
    /// variance a zero-mean row can have, this one.
    Variance(f64),
}

/// One original count's noise distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct PTableRow {
    /// The original count this row is for (the last row: this count and every larger one).
    pub i: u32,
    /// `(noise, probability)` for every noise of positive probability, ascending.
    pub noise: Vec<(i32, f64)>,
    pub relaxation: Relaxation,
}

impl PTableRow {
    pub fn mean(&self) -> f64 {
        self.noise.iter().map(|&(v, p)| f64::from(v) * p).sum()
    }

    pub fn variance(&self) -> f64 {
        let mean = self.mean();
        self.noise.iter().map(|&(v, p)| (f64::from(v) - mean).powi(2) * p).sum()
    }
}

/// A perturbation table: rows for the counts `0..=D + js + 1`; the last row, the first whose
/// every noise in `-D..=D` is allowed, serves every larger count too. (The `ptable` package stops
/// at `D + js`, whose row cannot reach `js` and so is not symmetric; one more row makes the row
/// used for all large counts the symmetric one.)
#[derive(Debug, Clone, PartialEq)]
pub struct PTable {
    pub params: PTableParams,
    pub rows: Vec<PTableRow>,
    /// Per row, the noise each cell key maps to.
    lookup: Vec<[i32; CELL_KEYS as usize]>,
}

impl PTable {
    pub fn build(params: PTableParams) -> Result<PTable, PTableError> {
        let PTableParams { d, v, js } = params;
        if d == 0 {
            return Err(PTableError::NoNoise(d));
        }
        if !(v.is_finite() && v > 0.0) {
            return Err(PTableError::Variance(v));
        }
        if js >= d {
            return Err(PTableError::Blocked { d, js });
        }
        let rows: Vec<PTableRow> = (0..=d + js + 1).map(|i| row(i, params)).collect();
        Ok(PTable::from_rows(params, rows))
    }

    fn from_rows(params: PTableParams, rows: Vec<PTableRow>) -> PTable {
        let lookup = rows.iter().map(key_lookup).collect();
        PTable { params, rows, lookup }
    }

    /// The table as CSV, in the columns of the `ptable` R package (`i, j, p, v, p_int_lb,
    /// p_int_ub`) plus the relaxation of each row: what a deployment publishes so anyone can
    /// check the noise distribution, and what [`PTable::from_csv`] reads back.
    pub fn to_csv(&self) -> String {
        let PTableParams { d, v, js } = self.params;
        let mut out = format!("# D={d} V={v} js={js}\ni,j,p,v,p_int_lb,p_int_ub,relaxation\n");
        for row in &self.rows {
            let relaxation = match row.relaxation {
                Relaxation::None => "none".to_owned(),
                Relaxation::Variance(least) => format!("variance:{least:.12}"),
            };
            let mut lower = 0.0;
            for &(noise, p) in &row.noise {
                let upper = lower + p;
                let j = i64::from(row.i) + i64::from(noise);
                out.push_str(&format!(
                    "{},{j},{p:.12},{noise},{lower:.12},{upper:.12},{relaxation}\n",
                    row.i
                ));
                lower = upper;
            }
        }
        out
    }

    /// Reads a table written by [`PTable::to_csv`], checking every guarantee of the method on
    /// it: a shipped table that breaks one is refused, never used.
    pub fn from_csv(text: &str) -> Result<PTable, PTableError> {
        let bad = |line: usize, why: String| PTableError::Csv { line, why };
        let mut lines = text.lines().enumerate();
        let (_, first) = lines.next().ok_or_else(|| bad(1, "empty".into()))?;
        let params = parse_params(first)
            .ok_or_else(|| bad(1, format!("expected '# D=<d> V=<v> js=<js>', found '{first}'")))?;
        let mut rows: Vec<PTableRow> = Vec::new();
        for (index, line) in lines.skip(1) {
            let number = index + 1;
            let fields: Vec<&str> = line.split(',').collect();
            let [i, _, p, noise, _, _, relaxation] = fields[..] else {
                return Err(bad(number, format!("expected 7 fields, found {}", fields.len())));
            };
            let parse_err = |what: &str| bad(number, format!("{what} is not a number"));
            let i: u32 = i.parse().map_err(|_| parse_err("i"))?;
            let p: f64 = p.parse().map_err(|_| parse_err("p"))?;
            let noise: i32 = noise.parse().map_err(|_| parse_err("v"))?;
            let relaxation = match relaxation.strip_prefix("variance:") {
                None if relaxation == "none" => Relaxation::None,
                Some(least) => {
                    Relaxation::Variance(least.parse().map_err(|_| parse_err("variance"))?)
                }
                None => return Err(bad(number, format!("unknown relaxation '{relaxation}'"))),
            };
            if rows.last().is_none_or(|r| r.i != i) {
                if i as usize != rows.len() {
                    return Err(bad(number, format!("row {i} out of order")));
                }
                rows.push(PTableRow { i, noise: Vec::new(), relaxation });
            }
            rows.last_mut().expect("pushed").noise.push((noise, p));
        }
        if rows.len() as u32 != params.d + params.js + 2 {
            return Err(bad(0, format!("{} rows, expected D + js + 2", rows.len())));
        }
        for row in &rows {
            check_row(row, params).map_err(|why| bad(0, format!("row {}: {why}", row.i)))?;
        }
        Ok(PTable::from_rows(params, rows))
    }

    /// The published value of a cell counting `count` records whose cell key is `cell_key`.
    pub fn perturb(&self, count: u64, cell_key: u8) -> u64 {
        let last = self.rows.len() - 1;
        let row = usize::try_from(count).map_or(last, |c| c.min(last));
        let noise = self.lookup[row][usize::from(cell_key)];
        count.saturating_add_signed(i64::from(noise))
    }
}

fn parse_params(line: &str) -> Option<PTableParams> {
    let mut fields = line.strip_prefix("# ")?.split(' ');
    let mut value =
        |name: &str| fields.next()?.strip_prefix(name)?.strip_prefix('=').map(str::to_owned);
    let (d, v, js) = (value("D")?, value("V")?, value("js")?);
    Some(PTableParams { d: d.parse().ok()?, v: v.parse().ok()?, js: js.parse().ok()? })
}

/// The guarantees of a row: a distribution, noise within D, nothing published below zero or in
/// 1..=js, zero mean, and variance within V unless the row says it could not be.
fn check_row(row: &PTableRow, params: PTableParams) -> Result<(), String> {
    let tolerance = 1e-9;
    let total: f64 = row.noise.iter().map(|&(_, p)| p).sum();
    if (total - 1.0).abs() > tolerance {
        return Err(format!("probabilities sum to {total}"));
    }
    for &(v, p) in &row.noise {
        let published = i64::from(row.i) + i64::from(v);
        if p.is_nan() || p <= 0.0 || v.unsigned_abs() > params.d {
            return Err(format!("noise {v} with probability {p}"));
        }
        if published < 0 || (published > 0 && published <= i64::from(params.js)) {
            return Err(format!("publishes {published}"));
        }
    }
    if row.mean().abs() > tolerance {
        return Err(format!("mean {}", row.mean()));
    }
    match row.relaxation {
        Relaxation::None if row.variance() > params.v + tolerance => {
            Err(format!("variance {} above V", row.variance()))
        }
        _ => Ok(()),
    }
}

/// The noises a count `i` may receive: `-D..=D`, landing at zero or above `js`.
fn allowed(i: u32, PTableParams { d, js, .. }: PTableParams) -> Vec<i32> {
    let (i, d, js) = (i64::from(i), i64::from(d), i64::from(js));
    (-d..=d)
        .filter(|&v| {
            let j = i + v;
            j == 0 || j > js
        })
        .map(|v| v as i32)
        .collect()
}

fn row(i: u32, params: PTableParams) -> PTableRow {
    if i == 0 {
        // Zeros stay zero: nothing reported is published as nothing.
        return PTableRow { i, noise: vec![(0, 1.0)], relaxation: Relaxation::None };
    }
    // Both signs are allowed (see the module doc): `-min(i, D)` reaches 0 or stays above js,
    // and `+D` lands above js since js < D.
    let support = allowed(i, params);
    // Maximum entropy with zero mean alone: if its variance is within V, V does not bind.
    let free = solve(&support, None);
    if variance_of(&support, &free) <= params.v + 1e-12 {
        return finish(i, &support, &free, Relaxation::None);
    }
    let least = least_variance(&support);
    if least >= params.v - 1e-12 {
        return least_variance_row(i, &support, least);
    }
    let bound = solve(&support, Some(params.v));
    finish(i, &support, &bound, Relaxation::None)
}

/// `p(v) ∝ exp(a·v + b·v²)` with zero mean, and variance `target` when given (else `b = 0`).
fn solve(support: &[i32], target: Option<f64>) -> Vec<f64> {
    let xs: Vec<f64> = support.iter().map(|&v| f64::from(v)).collect();
    let dual = |a: f64, b: f64| {
        let m = xs.iter().map(|&x| a * x + b * x * x).fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = xs.iter().map(|&x| (a * x + b * x * x - m).exp()).sum();
        m + z.ln() - b * target.unwrap_or(0.0)
    };
    let (mut a, mut b) = (0.0f64, 0.0f64);
    for _ in 0..200 {
        let p = weights(&xs, a, b);
        let moment = |k: i32| xs.iter().zip(&p).map(|(&x, &q)| x.powi(k) * q).sum::<f64>();
        let (m1, m2, m3, m4) = (moment(1), moment(2), moment(3), moment(4));
        let ga = m1;
        let (step_a, step_b) = match target {
            None => (-ga / (m2 - m1 * m1).max(1e-300), 0.0),
            Some(v) => {
                let gb = m2 - v;
                // Hessian: the covariance of (x, x²).
                let (haa, hab, hbb) = (m2 - m1 * m1, m3 - m1 * m2, m4 - m2 * m2);
                let det = haa * hbb - hab * hab;
                if det.abs() < 1e-300 {
                    break;
                }
                (-(hbb * ga - hab * gb) / det, -(haa * gb - hab * ga) / det)
            }
        };
        let gradient_norm = ga.abs() + target.map_or(0.0, |v| (m2 - v).abs());
        if gradient_norm < 1e-13 {
            break;
        }
        // Backtracking: a Newton step on a convex function, shortened until it decreases it.
        let now = dual(a, b);
        let mut t = 1.0;
        while t > 1e-12 && dual(a + t * step_a, b + t * step_b) > now {
            t /= 2.0;
        }
        a += t * step_a;
        b += t * step_b;
    }
    weights(&xs, a, b)
}

fn weights(xs: &[f64], a: f64, b: f64) -> Vec<f64> {
    let exponents: Vec<f64> = xs.iter().map(|&x| a * x + b * x * x).collect();
    let m = exponents.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let raw: Vec<f64> = exponents.iter().map(|&e| (e - m).exp()).collect();
    let z: f64 = raw.iter().sum();
    raw.into_iter().map(|w| w / z).collect()
}

fn variance_of(support: &[i32], p: &[f64]) -> f64 {
    let mean: f64 = support.iter().zip(p).map(|(&v, &q)| f64::from(v) * q).sum();
    support.iter().zip(p).map(|(&v, &q)| (f64::from(v) - mean).powi(2) * q).sum()
}

/// The least variance of a zero-mean distribution over `support` (both signs present): zero if
/// noise 0 is allowed, else the two-point row on the noises nearest zero on each side.
fn least_variance(support: &[i32]) -> f64 {
    if support.contains(&0) {
        return 0.0;
    }
    let (below, above) = nearest_each_side(support);
    f64::from(-below) * f64::from(above)
}

fn nearest_each_side(support: &[i32]) -> (i32, i32) {
    let below = *support.iter().filter(|&&v| v < 0).max().expect("a negative noise");
    let above = *support.iter().filter(|&&v| v > 0).min().expect("a positive noise");
    (below, above)
}

fn least_variance_row(i: u32, support: &[i32], least: f64) -> PTableRow {
    let (below, above) = nearest_each_side(support);
    let p_above = f64::from(-below) / f64::from(above - below);
    PTableRow {
        i,
        noise: vec![(below, 1.0 - p_above), (above, p_above)],
        relaxation: Relaxation::Variance(least),
    }
}

fn finish(i: u32, support: &[i32], p: &[f64], relaxation: Relaxation) -> PTableRow {
    // Probabilities below 1e-12 are numerical dust: no cell key could select them anyway.
    let noise: Vec<(i32, f64)> =
        support.iter().copied().zip(p.iter().copied()).filter(|&(_, q)| q > 1e-12).collect();
    let total: f64 = noise.iter().map(|&(_, q)| q).sum();
    PTableRow { i, noise: noise.into_iter().map(|(v, q)| (v, q / total)).collect(), relaxation }
}

/// The noise each cell key selects: key `k` takes the noise whose cumulative interval holds
/// `(k + 0.5) / 256`.
fn key_lookup(row: &PTableRow) -> [i32; CELL_KEYS as usize] {
    let mut lookup = [0i32; CELL_KEYS as usize];
    for (k, slot) in lookup.iter_mut().enumerate() {
        let u = (k as f64 + 0.5) / f64::from(CELL_KEYS);
        let mut upper = 0.0;
        *slot = row.noise.last().expect("a row has a noise").0;
        for &(v, p) in &row.noise {
            upper += p;
            if u < upper {
                *slot = v;
                break;
            }
        }
    }
    lookup
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: [PTableParams; 4] = [
        PTableParams { d: 5, v: 3.0, js: 2 },
        PTableParams { d: 2, v: 1.0, js: 1 },
        PTableParams { d: 3, v: 2.0, js: 0 },
        PTableParams { d: 10, v: 8.0, js: 4 },
    ];

    #[test]
    fn every_row_is_a_distribution_with_zero_mean_bounded_noise_and_no_small_values() {
        for params in PARAMS {
            let table = PTable::build(params).unwrap();
            assert_eq!(table.rows.len() as u32, params.d + params.js + 2, "{params:?}");
            for row in &table.rows {
                let total: f64 = row.noise.iter().map(|&(_, p)| p).sum();
                assert!((total - 1.0).abs() < 1e-12, "{params:?} row {}: sums to {total}", row.i);
                for &(v, p) in &row.noise {
                    assert!(p > 0.0);
                    assert!(v.unsigned_abs() <= params.d, "{params:?} row {}: noise {v}", row.i);
                    let published = i64::from(row.i) + i64::from(v);
                    assert!(published >= 0, "{params:?} row {}: negative", row.i);
                    assert!(
                        published == 0 || published > i64::from(params.js),
                        "{params:?} row {}: publishes {published}",
                        row.i
                    );
                }
                match row.relaxation {
                    Relaxation::None => {
                        assert!(row.mean().abs() < 1e-9, "{params:?} row {}: mean", row.i);
                        assert!(row.variance() <= params.v + 1e-9, "{params:?} row {}", row.i);
                    }
                    Relaxation::Variance(least) => {
                        assert!(row.mean().abs() < 1e-9, "{params:?} row {}: mean", row.i);
                        assert!(least > params.v - 1e-9);
                        assert!((row.variance() - least).abs() < 1e-9);
                    }
                }
            }
        }
    }

    /// Away from the small counts the variance constraint binds (the unconstrained maximum
    /// entropy row, uniform over -D..=D, has variance D(D+1)/3 > V) and is met exactly.
    #[test]
    fn large_counts_use_all_the_variance_allowed() {
        let params = PTableParams { d: 5, v: 3.0, js: 2 };
        let table = PTable::build(params).unwrap();
        let last = table.rows.last().unwrap();
        assert_eq!(last.relaxation, Relaxation::None);
        assert!((last.variance() - 3.0).abs() < 1e-9, "{}", last.variance());
        assert_eq!(last.noise.len(), 11);
        // Symmetric: the maximum-entropy row of a symmetric support has a = 0.
        for (&(v, p), &(w, q)) in last.noise.iter().zip(last.noise.iter().rev()) {
            assert_eq!(v, -w);
            assert!((p - q).abs() < 1e-12);
        }
    }

    /// D = 2, V = 1, js = 1: a count of 1 may become 0 or 2 or 3 but not stay 1, and the least
    /// variance of an unbiased choice is 1 (0 or 2, half each), which meets V = 1 only at its edge.
    #[test]
    fn a_small_count_that_cannot_meet_the_variance_says_so() {
        let table = PTable::build(PTableParams { d: 2, v: 0.5, js: 1 }).unwrap();
        let one = &table.rows[1];
        assert_eq!(one.relaxation, Relaxation::Variance(1.0));
        assert_eq!(one.noise, vec![(-1, 0.5), (1, 0.5)]);
        assert!(table.rows[3..].iter().all(|r| r.relaxation == Relaxation::None));
    }

    #[test]
    fn a_count_inside_the_blocked_range_is_moved_out_of_it_without_bias() {
        let table = PTable::build(PTableParams { d: 5, v: 3.0, js: 2 }).unwrap();
        let one = &table.rows[1];
        assert!(one.noise.iter().all(|&(v, _)| v == -1 || v >= 2));
        assert!(one.mean().abs() < 1e-9);
    }

    #[test]
    fn lookups_are_deterministic_and_keep_every_guarantee() {
        let params = PTableParams { d: 5, v: 3.0, js: 2 };
        let table = PTable::build(params).unwrap();
        for count in (0..40u64).chain([1_000, u64::MAX]) {
            for key in 0..=255u8 {
                let published = table.perturb(count, key);
                assert_eq!(published, table.perturb(count, key));
                assert!(published == 0 || published > 2, "{count} → {published}");
                assert!(published.abs_diff(count) <= 5 || count == u64::MAX);
                if count == 0 {
                    assert_eq!(published, 0);
                }
            }
        }
        // Over the 256 keys the published mean of a large count is close to the count (the
        // keys discretise each probability to 1/256).
        let mean = (0..=255u8).map(|k| table.perturb(1_000, k) as f64).sum::<f64>() / 256.0;
        assert!((mean - 1_000.0).abs() < 0.05, "{mean}");
    }

    #[test]
    fn impossible_parameters_are_refused_with_the_reason() {
        let build = |d, v, js| PTable::build(PTableParams { d, v, js }).unwrap_err();
        assert_eq!(build(0, 1.0, 0), PTableError::NoNoise(0));
        assert_eq!(build(3, 0.0, 0), PTableError::Variance(0.0));
        assert_eq!(build(3, f64::NAN, 0).to_string(), "V must be a positive number, got NaN");
        assert_eq!(build(2, 1.0, 2), PTableError::Blocked { d: 2, js: 2 });
    }
}
