//! Confidence intervals, as R's `confint()` and `svyciprop()`.

use crate::dist::{qbeta, qnorm, qt};

/// Wald interval with the normal quantile (R's `confint(x)`, df = Inf).
pub fn wald_interval(estimate: f64, se: f64, level: f64) -> (f64, f64) {
    let crit = qnorm(1.0 - (1.0 - level) / 2.0);
    (estimate - crit * se, estimate + crit * se)
}

/// Interval with the t quantile on `df` degrees of freedom (R's `confint(x, df = degf(d))`).
pub fn t_interval(estimate: f64, se: f64, level: f64, df: f64) -> (f64, f64) {
    let crit = qt(1.0 - (1.0 - level) / 2.0, df);
    (estimate - crit * se, estimate + crit * se)
}

/// The pieces of `svyciprop(method = "logit")`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogitInterval {
    /// logit(p): the intercept of the quasibinomial fit.
    pub coef: f64,
    /// Standard error of the intercept.
    pub se_coef: f64,
    /// qt(1 - α/2, df).
    pub crit: f64,
    pub lower: f64,
    pub upper: f64,
}

/// R fits `svyglm(y ~ 1, family = quasibinomial)`: its intercept is logit(p) and its sandwich
/// variance is the linearised variance of p divided by (p(1-p))^2, so the interval is
/// expit(logit(p) ∓ qt(1-α/2, df) · se(p) / (p(1-p))). For replicate designs pass the
/// replicate standard error of logit(p) as `se_coef` (R refits the model per replicate).
pub fn logit_interval(p: f64, se_coef: f64, level: f64, df: f64) -> LogitInterval {
    let coef = (p / (1.0 - p)).ln();
    let crit = qt(1.0 - (1.0 - level) / 2.0, df);
    LogitInterval {
        coef,
        se_coef,
        crit,
        lower: expit(coef - crit * se_coef),
        upper: expit(coef + crit * se_coef),
    }
}

/// Linearised standard error of logit(p) given that of p (delta method).
pub fn logit_se_from(p: f64, se: f64) -> f64 {
    se / (p * (1.0 - p))
}

pub fn expit(eta: f64) -> f64 {
    if eta >= 0.0 { 1.0 / (1.0 + (-eta).exp()) } else { eta.exp() / (1.0 + eta.exp()) }
}

/// The pieces of `svyciprop(method = "beta")` (Korn & Graubard 1998).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BetaInterval {
    /// p(1-p) / var.
    pub n_eff_raw: f64,
    /// (qt(α/2, n-1) / qt(α/2, df))^2.
    pub df_adjust: f64,
    pub n_eff: f64,
    pub lower: f64,
    pub upper: f64,
}

/// `n_rows` is R's `nrow(design)` (rows of the design or domain subset, missing values included).
pub fn korn_graubard(p: f64, var: f64, n_rows: f64, df: f64, level: f64) -> BetaInterval {
    let alpha = 1.0 - level;
    let n_eff_raw = p * (1.0 - p) / var;
    let df_adjust = (qt(alpha / 2.0, n_rows - 1.0) / qt(alpha / 2.0, df)).powi(2);
    let n_eff = n_eff_raw * df_adjust;
    BetaInterval {
        n_eff_raw,
        df_adjust,
        n_eff,
        lower: qbeta(alpha / 2.0, n_eff * p, n_eff * (1.0 - p) + 1.0),
        upper: qbeta(1.0 - alpha / 2.0, n_eff * p + 1.0, n_eff * (1.0 - p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expit_is_inverse_of_logit() {
        for p in [1e-9_f64, 0.01, 0.3, 0.5, 0.87, 1.0 - 1e-9] {
            let eta = (p / (1.0 - p)).ln();
            assert!((expit(eta) - p).abs() < 1e-15 * p.max(1e-3));
        }
        assert_eq!(expit(800.0), 1.0);
        assert_eq!(expit(-800.0), 0.0);
    }

    #[test]
    fn korn_graubard_reduces_to_clopper_pearson_when_var_is_binomial() {
        // With var = p(1-p)/n and df = n - 1, n_eff = n and the bounds are Clopper-Pearson:
        // qbeta(α/2, x, n-x+1) and qbeta(1-α/2, x+1, n-x). R: binom.test(12, 40)$conf.int.
        let (x, n) = (12.0, 40.0);
        let p: f64 = x / n;
        let b = korn_graubard(p, p * (1.0 - p) / n, n, n - 1.0, 0.95);
        assert!((b.n_eff - n).abs() < 1e-10);
        assert!((b.lower - 0.16562720439323556).abs() < 1e-13, "{}", b.lower);
        assert!((b.upper - 0.46531628525412339).abs() < 1e-13, "{}", b.upper);
    }
}
