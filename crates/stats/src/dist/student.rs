//! Student t distribution for any real df > 0.
//!
//! `qt` starts from the Cornish-Fisher expansion around the normal quantile and polishes it by
//! safeguarded Newton steps on the exact tail probability (an incomplete beta). For df above
//! 1e4 the four-term expansion alone is exact to double precision (the next term is O(df^-5)).

#[cfg(test)]
use super::normal::qnorm;
use super::normal::qnorm_upper;
use super::special::{beta_inc, lbeta};

/// P(T > t) for t >= 0, computed directly (no 1 - p cancellation).
fn upper_tail_pos(t: f64, df: f64) -> f64 {
    let t2 = t * t;
    let x = df / (df + t2);
    let y = t2 / (df + t2);
    0.5 * beta_inc(0.5 * df, 0.5, x, y).0
}

/// P(T <= t) for T ~ t(df), finite df > 0 (NaN otherwise; the CIs only need quantiles).
pub fn pt(t: f64, df: f64) -> f64 {
    if t.is_nan() || !df.is_finite() || df <= 0.0 {
        return f64::NAN;
    }
    if t >= 0.0 { 1.0 - upper_tail_pos(t, df) } else { upper_tail_pos(-t, df) }
}

/// Density of t(df) at t.
fn dt(t: f64, df: f64) -> f64 {
    (-lbeta(0.5 * df, 0.5) - 0.5 * (df + 1.0) * (t * t / df).ln_1p()).exp() / df.sqrt()
}

/// Abramowitz & Stegun 26.7.5: t quantile as a series in 1/df around the normal quantile z.
fn cornish_fisher(z: f64, df: f64) -> f64 {
    let z2 = z * z;
    let g1 = (z2 + 1.0) * z / 4.0;
    let g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0;
    let g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0;
    let g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0;
    z + (g1 + (g2 + (g3 + g4 / df) / df) / df) / df
}

/// The p-quantile of t(df), df > 0 real (df = Inf gives the normal quantile).
pub fn qt(p: f64, df: f64) -> f64 {
    if p.is_nan() || df.is_nan() || df <= 0.0 || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.5 {
        return 0.0;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    // Solve for t > 0 with upper tail q, then restore the sign.
    let (q, sign) = if p > 0.5 { (1.0 - p, 1.0) } else { (p, -1.0) };
    sign * upper_quantile(q, df)
}

fn upper_quantile(q: f64, df: f64) -> f64 {
    if df.is_infinite() || df > 1e20 {
        return qnorm_upper(q);
    }
    if df == 1.0 {
        // Cauchy: closed form.
        let a = std::f64::consts::PI * q;
        return a.cos() / a.sin();
    }
    if df == 2.0 {
        return (1.0 - 2.0 * q) / (2.0 * q * (1.0 - q)).sqrt();
    }
    let z = qnorm_upper(q);
    let guess = cornish_fisher(z, df);
    // The first omitted term is O(z^11 / df^5): below 1e-16 relative for df >= 1e4 and
    // |z| <= 8 (tail probabilities down to 1e-15). Newton on the incomplete beta would only add
    // rounding error there (its continued fraction loses ~log10(df) digits as x -> 1).
    if df >= 1e4 && z <= 8.0 {
        return guess;
    }
    let mut t = if guess.is_finite() && guess > 0.0 { guess } else { z.max(1e-3) };
    // Bracket [lo, hi] kept from the sign of the residual: the tail decreases in t.
    let mut lo = 0.0_f64;
    let mut hi = f64::INFINITY;
    for _ in 0..200 {
        let f = upper_tail_pos(t, df) - q;
        if f == 0.0 {
            return t;
        }
        if f > 0.0 {
            lo = t;
        } else {
            hi = t;
        }
        let step = f / dt(t, df);
        let mut next = t + step;
        if !(next > lo && next < hi && next.is_finite()) {
            next = if hi.is_finite() { 0.5 * (lo + hi) } else { 2.0 * t.max(1.0) };
        }
        let done = (next - t).abs() <= 4.0 * f64::EPSILON * t;
        t = next;
        if done {
            break;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn qt_matches_r() {
        // R 4.2.2: sprintf("%.17g", qt(p, df)). R refines qt only to ~1e-14 itself.
        for (p, df, want) in [
            (0.975, 197.0, 1.972079033778501),
            (0.975, 14.0, 2.1447866879178039),
            (0.975, 1.0, 12.706204736174694),
            (0.975, 2.0, 4.3026527297494619),
            (0.975, 3.0, 3.1824463052837078),
            (0.975, 10.0, 2.2281388519862739),
            (0.995, 5.0, 4.0321429835552287),
            (0.025, 199.0, -1.9719565442517522),
            (0.025, 182.0, -1.9730840773359013),
            (0.9, 4.0, 1.5332062740589429),
            (0.6, 7.0, 0.26316686135202277),
            (0.975, 1000.0, 1.9623390808264076),
            (0.975, 1e5, 1.9599877075346088),
            (0.975, 1e6, 1.9599663568141066),
            (0.975, 2.5, 3.5746548420036919),
            (0.975, 0.5, 164.55767348049446),
            (1e-8, 30.0, -7.5565346518854017),
            (0.975, 50000.0, 1.9600114310936796),
        ] {
            let got = qt(p, df);
            assert!(
                rel(got, want) < 1e-13,
                "qt({p}, {df}) = {got:.17} vs R {want:.17} (rel {:e})",
                rel(got, want)
            );
        }
        assert_eq!(qt(0.975, f64::INFINITY), qnorm(0.975));
    }

    #[test]
    fn pt_matches_r() {
        // R: sprintf("%.17g", pt(t, df)) and pt(t, df, lower.tail = FALSE)
        for (t, df, lower, upper) in [
            (2.0, 10.0, 0.96330598261462974, 0.036694017385370196),
            (-1.5, 3.0, 0.11529193262241141, 0.88470806737758856),
            (3.0, 200.0, 0.99847847644304699, 0.0015215235569529509),
        ] {
            assert!(rel(pt(t, df), lower) < 1e-14);
            let up = if t >= 0.0 { upper_tail_pos(t, df) } else { 1.0 - upper_tail_pos(-t, df) };
            assert!(rel(up, upper) < 1e-13, "upper tail {up} vs {upper}");
        }
        // R's pt switches to a normal approximation above df = 4e5 (error ~1e-12).
        assert!(rel(pt(1.96, 1e6), 0.97500196620736512) < 1e-11);
    }

    #[test]
    fn large_df_against_high_precision() {
        // mpmath (40 digits): root of betainc(df/2, 1/2, 0, df/(df+t^2))/2 = 0.025.
        for (df, want) in [
            (1e4, 1.9602012398906262578),
            (3e4, 1.9600430633839350904),
            (5e4, 1.9600114310936801001),
            (1e5, 1.9599877075346096386),
            (1e6, 1.9599663568141070353),
            (197.0, 1.9720790337785027474),
            (14.0, 2.1447866879178038287),
        ] {
            let got = qt(0.975, df);
            assert!(
                rel(got, want) < 2e-15,
                "qt(0.975, {df}) = {got:.17} vs {want:.17} (rel {:e})",
                rel(got, want)
            );
        }
    }
}
