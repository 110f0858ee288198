//! R's `glm.fit()` for `y ~ 1` with the (quasi)binomial family and logit link, as
//! `svyciprop(method = "logit")` runs it through `svyglm()`.
//!
//! Reproducing the iteration (start values, R's clamping of the logit link at |eta| > 30, the
//! deviance-based stopping rule) rather than using the exact MLE logit(p) keeps the intervals
//! equal to R's to ~1e-14 instead of ~1e-8, and gives R's answers when a domain or replicate
//! has all 0s or all 1s (R then stops near eta = ±20 instead of diverging).
//!
//! With an intercept only every row shares eta, so after the first iteration (whose start
//! values differ per row) the fit depends on the data only through S1 = sum w y, S0 = sum w.

const EPSILON: f64 = 1e-8; // glm.control()$epsilon
const MAXIT: usize = 25; // glm.control()$maxit
const THRESH: f64 = 30.0;

/// R's `binomial()$linkinv` (C `logit_linkinv`).
fn linkinv(eta: f64) -> f64 {
    let tmp = if eta < -THRESH {
        f64::EPSILON
    } else if eta > THRESH {
        1.0 / f64::EPSILON
    } else {
        eta.exp()
    };
    tmp / (1.0 + tmp)
}

/// R's `binomial()$mu.eta` (C `logit_mu_eta`).
fn mu_eta(eta: f64) -> f64 {
    if !(-THRESH..=THRESH).contains(&eta) {
        return f64::EPSILON;
    }
    let opexp = 1.0 + eta.exp();
    eta.exp() / (opexp * opexp)
}

fn y_log_y(y: f64, mu: f64) -> f64 {
    if y != 0.0 { y * (y / mu).ln() } else { 0.0 }
}

/// R's `binomial()$dev.resids` for one row.
fn dev_resid(y: f64, mu: f64, w: f64) -> f64 {
    2.0 * w * (y_log_y(y, mu) + y_log_y(1.0 - y, 1.0 - mu))
}

/// The state R's `glm.fit` ends in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogitFit {
    pub(crate) coef: f64,
    pub(crate) eta: f64,
    pub(crate) mu: f64,
    /// Converged in the first iteration from row-specific start values: the working weights
    /// of that last iteration then differ per row (rare; see `working_weight`).
    pub(crate) first_iteration: bool,
    /// eta of the (shared) last iteration's start, when not `first_iteration`.
    pub(crate) eta_prev: f64,
}

impl LogitFit {
    /// Working weight of a row (prior weight w, response y) in the last iteration: R's
    /// `glm$weights`, used in the sandwich variance.
    pub(crate) fn working_weight(&self, w: f64, y: f64) -> f64 {
        let eta = if self.first_iteration { start_eta(w, y) } else { self.eta_prev };
        working(w, eta)
    }

    /// R's `resid(fit, "working")` for a row with response y.
    pub(crate) fn working_residual(&self, y: f64) -> f64 {
        (y - self.mu) / mu_eta(self.eta)
    }
}

fn working(w: f64, eta: f64) -> f64 {
    let mu = linkinv(eta);
    let me = mu_eta(eta);
    w * me * me / (mu * (1.0 - mu))
}

/// binomial()$initialize: mustart = (w y + 1/2) / (w + 1), then eta = logit(mustart).
fn start_eta(w: f64, y: f64) -> f64 {
    let y = if w == 0.0 { 0.0 } else { y };
    let m = (w * y + 0.5) / (w + 1.0);
    (m / (1.0 - m)).ln()
}

/// Fits `glm(y ~ 1, weights = w, family = quasibinomial)`. `rows` are the (y, w) of the rows in
/// the fit (needed only without `start`, for R's per-row start values); `s1`, `s0` are sum w y
/// and sum w over them.
pub(crate) fn fit_logit(rows: &[(f64, f64)], s1: f64, s0: f64, start: Option<f64>) -> LogitFit {
    // Deviance at a shared eta: rows with y in {0, 1} give 2 [S1 ln(1/mu) + (S0 - S1) ln(1/(1-mu))].
    let shared_dev = |mu: f64| 2.0 * (s1 * y_log_y(1.0, mu) + (s0 - s1) * y_log_y(1.0, 1.0 - mu));
    let mut eta;
    let mut devold;
    let mut first_rows = start.is_none();
    let mut coefold: Option<f64> = start;
    match start {
        Some(b) => {
            eta = b;
            devold = shared_dev(linkinv(eta));
        }
        None => {
            eta = f64::NAN;
            devold = rows.iter().map(|&(y, w)| dev_resid(y, linkinv(start_eta(w, y)), w)).sum();
        }
    }
    let mut eta_prev = eta;
    let mut coef = eta;
    for iter in 1..=MAXIT {
        // Weighted least squares of z on 1: coef = sum W z / sum W.
        let next = if first_rows {
            let (mut swz, mut sw) = (0.0, 0.0);
            for &(y, w) in rows {
                if w <= 0.0 {
                    continue;
                }
                let e = start_eta(w, y);
                let mu = linkinv(e);
                let me = mu_eta(e);
                let z = e + (y - mu) / me;
                let ww = w * me * me / (mu * (1.0 - mu));
                swz += ww * z;
                sw += ww;
            }
            swz / sw
        } else {
            let mu = linkinv(eta);
            eta + (s1 / s0 - mu) / mu_eta(eta)
        };
        if !next.is_finite() {
            break;
        }
        let mut cand = next;
        let mut dev = shared_dev(linkinv(cand));
        // R halves the step towards the previous coefficients while the deviance is infinite.
        let mut halvings = 0;
        while !dev.is_finite() && halvings < MAXIT {
            let Some(old) = coefold else { break };
            cand = (cand + old) / 2.0;
            dev = shared_dev(linkinv(cand));
            halvings += 1;
        }
        let was_first = first_rows;
        eta_prev = if first_rows { f64::NAN } else { eta };
        first_rows = false;
        eta = cand;
        coef = cand;
        if (dev - devold).abs() / (dev.abs() + 0.1) < EPSILON {
            return LogitFit {
                coef,
                eta,
                mu: linkinv(eta),
                first_iteration: was_first && iter == 1,
                eta_prev,
            };
        }
        devold = dev;
        coefold = Some(cand);
    }
    LogitFit { coef, eta, mu: linkinv(eta), first_iteration: false, eta_prev }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    fn data() -> Vec<(f64, f64)> {
        // R: y <- as.numeric((0:49) %% 3 == 0); w <- 0.5 + ((0:49) %% 7) / 10
        (0..50).map(|i| (f64::from(u8::from(i % 3 == 0)), 0.5 + f64::from(i % 7) / 10.0)).collect()
    }

    #[test]
    fn reproduces_r_glm_iterations() {
        let rows = data();
        let s1: f64 = rows.iter().map(|r| r.0 * r.1).sum();
        let s0: f64 = rows.iter().map(|r| r.1).sum();
        // R: coef(glm(y ~ 1, family = quasibinomial, weights = w)), 4 iterations.
        let fit = fit_logit(&rows, s1, s0, None);
        assert!(rel(fit.coef, -0.65186552158662525) < 1e-13, "{:.17}", fit.coef);
        // The exact MLE differs in the 11th digit: R stops on its deviance criterion.
        let p = s1 / s0;
        assert!(rel((p / (1.0 - p)).ln(), -0.65186552158664168) < 1e-14);
        // R: glm.fit(rep(1, 50), y, weights = w / sum(w), start = coef + 0.3, family = quasibinomial()).
        let fit = fit_logit(&[], p, 1.0, Some(-0.65186552158662525 + 0.3));
        assert!(rel(fit.coef, -0.65186552155203348) < 1e-13, "{:.17}", fit.coef);
    }

    #[test]
    fn all_zeros_stop_where_r_stops() {
        // R: coef(glm(rep(0, 10) ~ 1, family = quasibinomial, weights = rep(0.1, 10))), 21
        // iterations: the loop ends once the deviance stops changing, not at -Inf.
        let rows = vec![(0.0, 0.1); 10];
        let fit = fit_logit(&rows, 0.0, 1.0, None);
        assert!(rel(fit.coef, -22.215553931499691) < 1e-13, "{:.17}", fit.coef);
    }
}
