//! A resolved statistic: what to sum per row. Every statistic is a total, or a ratio of two
//! weighted totals (a mean is a ratio to the total weight; a proportion is the mean of a level
//! indicator), so both engines need only these three shapes.

use crate::table::MISSING;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Total,
    Mean,
    Ratio,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Values<'a> {
    Numeric(&'a [f64]),
    /// Indicator of one level of a categorical column (missing stays missing).
    Level {
        codes: &'a [u32],
        level: u32,
    },
}

impl Values<'_> {
    #[inline]
    pub(crate) fn get(&self, i: usize) -> f64 {
        match *self {
            Values::Numeric(v) => v[i],
            Values::Level { codes, level } => {
                let c = codes[i];
                if c == MISSING {
                    f64::NAN
                } else if c == level {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Target<'a> {
    pub(crate) kind: Kind,
    pub(crate) y: Values<'a>,
    /// Denominator of a ratio.
    pub(crate) x: Option<&'a [f64]>,
    /// Name used in error messages ("api00", "stype=E", "api.stu/enroll").
    pub(crate) variable: String,
}

impl Target<'_> {
    /// Identifies the weighted sums the target needs (its y and x values), so that statistics
    /// sharing them (a mean and a total of the same column) share one replicate computation.
    pub(crate) fn sums_key(&self) -> (usize, u32, usize) {
        let (y, level) = match self.y {
            Values::Numeric(v) => (v.as_ptr() as usize, u32::MAX),
            Values::Level { codes, level } => (codes.as_ptr() as usize, level),
        };
        (y, level, self.x.map_or(0, |x| x.as_ptr() as usize))
    }

    /// Row i's (numerator, denominator), or `None` when either is missing (R's `na.rm = TRUE`:
    /// the row drops out of this statistic but stays in the design).
    #[inline]
    pub(crate) fn values(&self, i: usize) -> Option<(f64, f64)> {
        let y = self.y.get(i);
        if y.is_nan() {
            return None;
        }
        let x = match self.x {
            Some(x) => x[i],
            None => 1.0,
        };
        if x.is_nan() { None } else { Some((y, x)) }
    }
}

/// Per-domain result of one statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DomainStat {
    pub(crate) estimate: f64,
    pub(crate) var: f64,
    pub(crate) n: u64,
    pub(crate) deff: Option<f64>,
    pub(crate) deff_replace: Option<f64>,
    /// For logit intervals: the coefficient of R's quasibinomial `svyglm(y ~ 1)` and its
    /// variance (sandwich for linearisation, replicate refits for replicate designs).
    pub(crate) logit: Option<(f64, f64)>,
}

/// A ratio of variances that is not a finite number (0/0, x/0) becomes `None`.
pub(crate) fn ratio_or_none(num: f64, den: f64) -> Option<f64> {
    let r = num / den;
    r.is_finite().then_some(r)
}
