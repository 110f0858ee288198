//! Beta quantile: Numerical Recipes' starting value, then Halley steps on the exact incomplete
//! beta, safeguarded by bisection. The iteration updates whichever of x and 1 - x is smaller,
//! so quantiles near 0 and near 1 both keep full relative precision.

use super::normal::qnorm;
use super::special::{beta_inc, beta_prefactor};

/// The p-quantile of Beta(a, b); shapes 0 and infinity give R's point masses.
pub fn qbeta(p: f64, a: f64, b: f64) -> f64 {
    if p.is_nan() || a.is_nan() || b.is_nan() || a < 0.0 || b < 0.0 || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return 0.0;
    }
    if p == 1.0 {
        return 1.0;
    }
    // Point masses, as R: Beta(0, b) sits at 0, Beta(a, 0) at 1, Beta(Inf, Inf) at 1/2.
    match (
        a == 0.0 || (b.is_infinite() && a.is_finite()),
        b == 0.0 || (a.is_infinite() && b.is_finite()),
    ) {
        (true, true) => {
            return if p < 0.5 {
                0.0
            } else if p > 0.5 {
                1.0
            } else {
                0.5
            };
        }
        (true, false) => return 0.0,
        (false, true) => return 1.0,
        _ => {}
    }
    if a.is_infinite() && b.is_infinite() {
        return 0.5;
    }
    if a + b > 1e12 {
        return normal_approx(p, a, b);
    }
    if p <= 0.5 {
        solve_lower(p, a, b).0
    } else {
        // Upper tail of Beta(a, b) at x is the lower tail of Beta(b, a) at 1 - x.
        solve_lower(1.0 - p, b, a).1
    }
}

/// Beyond ~1e12 total shape the distribution is normal to far below double precision of its
/// spread; one skewness term keeps the quantile exact.
fn normal_approx(p: f64, a: f64, b: f64) -> f64 {
    let s = a + b;
    let mean = a / s;
    let sd = (a * b / (s * s * (s + 1.0))).sqrt();
    let skew = 2.0 * (b - a) * (s + 1.0).sqrt() / ((s + 2.0) * (a * b).sqrt());
    let z = qnorm(p);
    (mean + sd * (z + skew * (z * z - 1.0) / 6.0)).clamp(0.0, 1.0)
}

/// Solves I_x(a, b) = p for p <= 1/2; returns (x, 1 - x), each accurate relative to itself.
fn solve_lower(p: f64, a: f64, b: f64) -> (f64, f64) {
    let x0 = initial_guess(p, a, b).clamp(f64::MIN_POSITIVE, 1.0 - f64::EPSILON);
    let (mut x, mut y) = (x0, 1.0 - x0);
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    let (a1, b1) = (a - 1.0, b - 1.0);
    let mut best = (x, y, f64::INFINITY);
    for _ in 0..300 {
        let f = beta_inc(a, b, x, y).0 - p;
        if f.abs() < best.2 {
            best = (x, y, f.abs());
        }
        if f == 0.0 {
            return (x, y);
        }
        if f > 0.0 {
            hi = hi.min(x);
        } else {
            lo = lo.max(x);
        }
        let density = beta_prefactor(a, b, x, y) / (x * y);
        let mut dx = if density > 0.0 && density.is_finite() { f / density } else { f64::NAN };
        // Halley's correction (bounded, as in Numerical Recipes' invbetai).
        if dx.is_finite() {
            dx /= 1.0 - 0.5 * (dx * (a1 / x - b1 / y)).min(1.0);
        }
        let (nx, ny) = if x <= 0.5 { (x - dx, 1.0 - (x - dx)) } else { (1.0 - (y + dx), y + dx) };
        let (nx, ny) = if dx.is_finite() && nx > lo && nx < hi && ny > 0.0 {
            (nx, ny)
        } else {
            let mid = 0.5 * (lo + hi);
            (mid, 1.0 - mid)
        };
        let scale = x.min(y);
        let moved = (nx - x).abs().max((ny - y).abs());
        x = nx;
        y = ny;
        if moved <= 2.0 * f64::EPSILON * scale
            || hi - lo <= 2.0 * f64::EPSILON * lo.max(f64::MIN_POSITIVE)
        {
            let f = beta_inc(a, b, x, y).0 - p;
            if f.abs() <= best.2 {
                return (x, y);
            }
            return (best.0, best.1);
        }
    }
    (best.0, best.1)
}

/// Numerical Recipes (3rd ed.) `invbetai` starting value.
fn initial_guess(p: f64, a: f64, b: f64) -> f64 {
    if a >= 1.0 && b >= 1.0 {
        let pp = if p < 0.5 { p } else { 1.0 - p };
        let t = (-2.0 * pp.ln()).sqrt();
        let mut x = (2.30753 + t * 0.27061) / (1.0 + t * (0.99229 + t * 0.04481)) - t;
        if p < 0.5 {
            x = -x;
        }
        let al = (x * x - 3.0) / 6.0;
        let h = 2.0 / (1.0 / (2.0 * a - 1.0) + 1.0 / (2.0 * b - 1.0));
        let w = (x * (al + h).sqrt() / h)
            - (1.0 / (2.0 * b - 1.0) - 1.0 / (2.0 * a - 1.0)) * (al + 5.0 / 6.0 - 2.0 / (3.0 * h));
        a / (a + b * (2.0 * w).exp())
    } else {
        let lna = (a / (a + b)).ln();
        let lnb = (b / (a + b)).ln();
        let t = (a * lna).exp() / a;
        let u = (b * lnb).exp() / b;
        let w = t + u;
        if p < t / w { (a * w * p).powf(1.0 / a) } else { 1.0 - (b * w * (1.0 - p)).powf(1.0 / b) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::pbeta;

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn matches_r() {
        // R 4.2.2: sprintf("%.17g", qbeta(p, a, b))
        for (p, a, b, want) in [
            (0.025, 2.0, 3.0, 0.067585986488542957),
            (0.975, 2.0, 3.0, 0.80587955031675662),
            (0.5, 2.0, 3.0, 0.38572756813238951),
            (0.025, 0.5, 0.5, 0.0015413331334360124),
            (0.975, 200.0, 40.0, 0.87765972485102628),
            (0.025, 1e4, 3e3, 0.76194942731681692),
            (0.975, 0.3, 7.0, 0.24810241225888119),
            (0.025, 5.0, 0.2, 0.72099918378998662),
            (0.001, 50.0, 50.0, 0.34874782659705222),
            (0.975, 4.5, 1000.0, 0.0094498555842348342),
            (0.025, 300000.0, 700001.0, 0.2991019119335821),
        ] {
            let got = qbeta(p, a, b);
            assert!(
                rel(got, want) < 1e-13,
                "qbeta({p},{a},{b}) = {got:.17} vs R {want:.17} (rel {:e})",
                rel(got, want)
            );
        }
    }

    #[test]
    fn closed_forms_and_edges() {
        // Beta(1, b): 1 - (1 - p)^(1/b); Beta(a, 1): p^(1/a).
        for p in [0.001_f64, 0.025, 0.5, 0.975, 0.999] {
            let want = -((-p).ln_1p() / 7.5).exp_m1();
            assert!(
                rel(qbeta(p, 1.0, 7.5), want) < 1e-13,
                "p {p}: {} vs {want}",
                qbeta(p, 1.0, 7.5)
            );
            let want = p.powf(1.0 / 3.25);
            assert!(rel(qbeta(p, 3.25, 1.0), want) < 1e-13);
        }
        assert_eq!(qbeta(0.025, 0.0, 5.0), 0.0);
        assert_eq!(qbeta(0.975, 5.0, 0.0), 1.0);
        // Round trip through the CDF over a grid of shapes.
        for &(a, b) in &[(0.7, 0.9), (3.0, 40.0), (150.0, 20.0), (1e5, 2e5), (0.05, 3.0)] {
            for p in [0.01, 0.025, 0.3, 0.7, 0.975] {
                let x = qbeta(p, a, b);
                assert!(
                    (pbeta(x, a, b) - p).abs() < 1e-13 * p.max(0.1),
                    "a {a} b {b} p {p}: x {x}"
                );
            }
        }
        // Enormous shapes take the normal route and stay at the mean.
        let x = qbeta(0.025, 3e14, 7e14);
        assert!((x - 0.3).abs() < 1e-6);
    }
}
