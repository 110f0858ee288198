//! The front door: a table and a request in, estimates with SE, deff, df, CI and flags out.

mod domain;
mod glm;
mod linear;
mod replicate;
mod request;
mod target;

pub use request::{
    CiMethod, Domain, Estimate, EstimateReport, EstimateRequest, Reliability, StatisticSpec,
};

use std::collections::BTreeMap;

use crate::ci::{expit, korn_graubard, logit_interval, logit_se_from, t_interval, wald_interval};
use crate::design::{DesignSpec, LinearDesign, ReplicateDesign, ReplicateSpec};
use crate::dist::qt;
use crate::error::StatsError;
use crate::table::{Factor, Table};

use domain::Domains;
use linear::LinearEngine;
use replicate::ReplicateEngine;
use target::{DomainStat, Kind, Target, Values};

/// Estimates every requested statistic (for every domain of `--by`) on the design the request
/// describes. See [`EstimateRequest`] for the flags and [`Estimate`] for the output fields.
pub fn estimate(table: &Table, req: &EstimateRequest) -> Result<EstimateReport, StatsError> {
    validate(req)?;
    let design = build_design(table, req)?;
    let weights: &[f64] = match &design {
        AnyDesign::Linear(d) => d.weights(),
        AnyDesign::Replicate(d) => &d.pweights,
    };
    let domains = domain::build(table, &req.by, weights)?;
    let factors = categorical_factors(table, &req.statistics)?;
    let stats = resolve(table, &req.statistics, &factors, &req.ranges)?;
    let logit_of = |s: &Resolved| s.proportion && method_for(req.ci, s) == CiMethod::Logit;
    // Per statistic, per level, per domain.
    let (results, degf): (Vec<Vec<Vec<DomainStat>>>, Vec<i64>) = match &design {
        AnyDesign::Linear(d) => {
            let mut engine = LinearEngine::new(d, &domains);
            let results = stats
                .iter()
                .map(|s| {
                    s.levels
                        .iter()
                        .map(|(_, t)| engine.run(t, logit_of(s)))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            (results, engine.degf)
        }
        AnyDesign::Replicate(d) => {
            // One sweep over the replicate columns for every statistic of the request.
            let mut engine = ReplicateEngine::new(d, &domains)?;
            let flat: Vec<(&Target, bool)> = stats
                .iter()
                .flat_map(|s| s.levels.iter().map(move |(_, t)| (t, logit_of(s))))
                .collect();
            let mut flat_results = engine.run_all(&flat)?.into_iter();
            let results = stats
                .iter()
                .map(|s| {
                    s.levels
                        .iter()
                        .map(|_| flat_results.next().expect("one result per target"))
                        .collect()
                })
                .collect();
            (results, engine.degf)
        }
    };
    let mut estimates = Vec::new();
    for (stat, per_level) in stats.iter().zip(&results) {
        for d in 0..domains.part.n_domains {
            for (l, (level, _)) in stat.levels.iter().enumerate() {
                estimates.push(finish(
                    req,
                    stat,
                    level.clone(),
                    &domains,
                    d,
                    degf[d],
                    &per_level[l][d],
                ));
            }
        }
    }
    Ok(EstimateReport { estimates })
}

enum AnyDesign<'t> {
    Linear(LinearDesign),
    Replicate(ReplicateDesign<'t>),
}

fn validate(req: &EstimateRequest) -> Result<(), StatsError> {
    if !(req.level > 0.0 && req.level < 1.0) {
        return Err(StatsError::invalid(format!(
            "--level must be strictly between 0 and 1, got {}",
            req.level
        )));
    }
    if req.statistics.is_empty() {
        return Err(StatsError::invalid(
            "nothing to estimate: give --mean, --total, --prop or --ratio",
        ));
    }
    let has_structure = req.strata.is_some() || !req.clusters.is_empty() || !req.fpc.is_empty();
    if req.repweights.is_some() {
        if req.reptype.is_none() {
            return Err(StatsError::invalid(
                "--repweights needs --reptype (JK1, JKn, BRR, fay:RHO, bootstrap or other); R's svrepdesign would silently assume BRR",
            ));
        }
        if has_structure || req.replicates.is_some() {
            return Err(StatsError::invalid(
                "--repweights describes the whole design; drop --strata/--cluster/--fpc/--replicates (or drop --repweights to use them)",
            ));
        }
    } else {
        if req.reptype.is_some() {
            return Err(StatsError::invalid("--reptype only applies with --repweights"));
        }
        if req.scale.is_some() || req.rscales.is_some() {
            return Err(StatsError::invalid(
                "--scale/--rscales only apply with --repweights (jackknife weights from --replicates get R's own scales)",
            ));
        }
        if req.mse && req.replicates.is_none() {
            return Err(StatsError::invalid(
                "--mse only applies to replicate designs (--repweights or --replicates)",
            ));
        }
    }
    if req.rscales.as_ref().is_some_and(|rs| rs.is_empty() || rs.iter().any(|v| !v.is_finite())) {
        return Err(StatsError::invalid("--rscales must be finite numbers"));
    }
    if req.scale.is_some_and(|s| !s.is_finite()) {
        return Err(StatsError::invalid("--scale must be a finite number"));
    }
    if req.reliability.max_cv.is_nan() {
        return Err(StatsError::invalid("the CV threshold must be a number"));
    }
    Ok(())
}

fn build_design<'t>(table: &'t Table, req: &EstimateRequest) -> Result<AnyDesign<'t>, StatsError> {
    if let Some(pattern) = &req.repweights {
        let spec = ReplicateSpec {
            weights: req.weights.clone(),
            repweights: pattern.clone(),
            rep_type: req.reptype.expect("validated"),
            scale: req.scale,
            rscales: req.rscales.clone(),
            mse: req.mse,
        };
        return Ok(AnyDesign::Replicate(ReplicateDesign::from_table(table, &spec)?));
    }
    let spec = DesignSpec {
        weights: req.weights.clone(),
        strata: req.strata.clone(),
        clusters: req.clusters.clone(),
        fpc: req.fpc.clone(),
        nest: req.nest,
        lonely_psu: req.lonely_psu,
    };
    let linear = LinearDesign::from_table(table, &spec)?;
    match req.replicates {
        Some(kind) => Ok(AnyDesign::Replicate(linear.to_jackknife(kind, req.mse)?)),
        None => Ok(AnyDesign::Linear(linear)),
    }
}

/// Levels of the categorical statistics, computed before the targets borrow them.
/// A categorical statistic's levels: codes per row and the label of each level.
type Levels = Option<(Factor, Vec<String>)>;

fn categorical_factors(table: &Table, specs: &[StatisticSpec]) -> Result<Vec<Levels>, StatsError> {
    specs
        .iter()
        .map(|spec| {
            let (name, role, categorical) = match spec {
                StatisticSpec::Prop(c) => (c, "prop", true),
                StatisticSpec::Mean(c) => (c, "mean", false),
                StatisticSpec::Total(c) => (c, "total", false),
                StatisticSpec::Ratio { .. } => return Ok(None),
            };
            let col = table.require(name, role)?;
            if !categorical && col.is_numeric() {
                return Ok(None);
            }
            let f = col.factor(true);
            if f.n_levels() == 0 {
                return Err(StatsError::invalid(format!(
                    "column '{name}' ({role}) has no non-missing values"
                )));
            }
            let labels = f
                .first_row
                .iter()
                .map(|&r| col.text(r as usize).map(|t| t.into_owned()).unwrap_or_default())
                .collect();
            Ok(Some((f, labels)))
        })
        .collect()
}

struct Resolved<'a> {
    statistic: &'static str,
    variable: String,
    levels: Vec<(Option<String>, Target<'a>)>,
    /// Eligible for logit/beta intervals: a level proportion or the mean of a 0/1 variable.
    proportion: bool,
    /// The values the statistic can take (from the declared ranges; [0, 1] for proportions):
    /// an interval reaching outside them is flagged.
    range: (f64, f64),
}

/// The interval method for one statistic: `auto` is logit for `prop` (as `svyciprop`), t
/// otherwise; logit and beta apply to proportions only and fall back to t.
fn method_for(requested: CiMethod, stat: &Resolved) -> CiMethod {
    match requested {
        CiMethod::Auto if stat.statistic == "prop" && stat.proportion => CiMethod::Logit,
        CiMethod::Auto => CiMethod::T,
        CiMethod::Logit | CiMethod::Beta if !stat.proportion => CiMethod::T,
        other => other,
    }
}

/// The range a statistic of `kind` over variables with these declared bounds can take.
fn statistic_range(
    kind: Kind,
    y: (Option<f64>, Option<f64>),
    x: (Option<f64>, Option<f64>),
) -> (f64, f64) {
    let (lo, hi) = (y.0.unwrap_or(f64::NEG_INFINITY), y.1.unwrap_or(f64::INFINITY));
    match kind {
        Kind::Mean => (lo, hi),
        // A total of non-negative values is non-negative (and of non-positive ones, not positive).
        Kind::Total => (
            if lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY },
            if hi <= 0.0 { 0.0 } else { f64::INFINITY },
        ),
        Kind::Ratio if lo >= 0.0 && x.0.is_some_and(|m| m >= 0.0) => (0.0, f64::INFINITY),
        Kind::Ratio => (f64::NEG_INFINITY, f64::INFINITY),
    }
}

fn resolve<'a>(
    table: &'a Table,
    specs: &[StatisticSpec],
    factors: &'a [Levels],
    ranges: &BTreeMap<String, (Option<f64>, Option<f64>)>,
) -> Result<Vec<Resolved<'a>>, StatsError> {
    let declared = |name: &str| ranges.get(name).copied().unwrap_or((None, None));
    specs
        .iter()
        .zip(factors)
        .map(|(spec, factor)| {
            let (statistic, name, kind) = match spec {
                StatisticSpec::Mean(c) => ("mean", c, Kind::Mean),
                StatisticSpec::Total(c) => ("total", c, Kind::Total),
                StatisticSpec::Prop(c) => ("prop", c, Kind::Mean),
                StatisticSpec::Ratio { numerator, denominator } => {
                    let y = table
                        .require(numerator, "ratio numerator")?
                        .require_numeric("ratio numerator")?;
                    let x = table
                        .require(denominator, "ratio denominator")?
                        .require_numeric("ratio denominator")?;
                    let variable = format!("{numerator}/{denominator}");
                    let target = Target {
                        kind: Kind::Ratio,
                        y: Values::Numeric(y),
                        x: Some(x),
                        variable: variable.clone(),
                    };
                    return Ok(Resolved {
                        statistic: "ratio",
                        variable,
                        levels: vec![(None, target)],
                        proportion: false,
                        range: statistic_range(
                            Kind::Ratio,
                            declared(numerator),
                            declared(denominator),
                        ),
                    });
                }
            };
            match factor {
                Some((f, labels)) => {
                    let levels = labels
                        .iter()
                        .enumerate()
                        .map(|(l, label)| {
                            let target = Target {
                                kind,
                                y: Values::Level { codes: &f.codes, level: l as u32 },
                                x: None,
                                variable: format!("{name}={label}"),
                            };
                            (Some(label.clone()), target)
                        })
                        .collect();
                    // A level's mean is a proportion and its total a count.
                    let range = if kind == Kind::Mean { (0.0, 1.0) } else { (0.0, f64::INFINITY) };
                    Ok(Resolved {
                        statistic,
                        variable: name.clone(),
                        levels,
                        proportion: kind == Kind::Mean,
                        range,
                    })
                }
                None => {
                    let y = table.require(name, statistic)?.require_numeric(statistic)?;
                    let binary =
                        kind == Kind::Mean && y.iter().all(|&v| v.is_nan() || v == 0.0 || v == 1.0);
                    let target =
                        Target { kind, y: Values::Numeric(y), x: None, variable: name.clone() };
                    let range = if binary && kind == Kind::Mean {
                        (0.0, 1.0)
                    } else {
                        statistic_range(kind, declared(name), (None, None))
                    };
                    Ok(Resolved {
                        statistic,
                        variable: name.clone(),
                        levels: vec![(None, target)],
                        proportion: binary,
                        range,
                    })
                }
            }
        })
        .collect()
}

/// SE, CV, CI and flags for one (statistic, level, domain).
fn finish(
    req: &EstimateRequest,
    stat: &Resolved,
    level: Option<String>,
    domains: &Domains,
    d: usize,
    df: i64,
    ds: &DomainStat,
) -> Estimate {
    let est = ds.estimate;
    let se = ds.var.sqrt();
    let cv = if est != 0.0 && se.is_finite() { Some(se / est) } else { None };
    let mut flags: Vec<String> = Vec::new();
    let method = method_for(req.ci, stat);
    let dff = df as f64;
    let (lower, upper) = match method {
        CiMethod::Auto => unreachable!("method_for resolves auto"),
        CiMethod::Wald => {
            let (l, u) = wald_interval(est, se, req.level);
            (Some(l), Some(u))
        }
        CiMethod::T if df <= 0 => {
            flags.push("no_df".into());
            (None, None)
        }
        CiMethod::T => {
            let (l, u) = t_interval(est, se, req.level, dff);
            (Some(l), Some(u))
        }
        CiMethod::Logit if df <= 0 => {
            flags.push("no_df".into());
            (None, None)
        }
        // logit(0) and logit(1) are infinite: no interval on that scale (R's glm fit does
        // not converge and its bounds exclude the estimate).
        CiMethod::Logit if est <= 0.0 || est >= 1.0 => (None, None),
        CiMethod::Logit => {
            // R's interval comes from its glm fit: expit(coef ∓ qt · se(coef)).
            let (lower, upper) = match ds.logit {
                Some((coef, var)) => {
                    let crit = qt(1.0 - (1.0 - req.level) / 2.0, dff);
                    (expit(coef - crit * var.sqrt()), expit(coef + crit * var.sqrt()))
                }
                None => {
                    let li = logit_interval(est, logit_se_from(est, se), req.level, dff);
                    (li.lower, li.upper)
                }
            };
            (lower.is_finite().then_some(lower), upper.is_finite().then_some(upper))
        }
        CiMethod::Beta if df <= 0 || domains.rows[d] < 2 => {
            flags.push("no_df".into());
            (None, None)
        }
        // No effective sample size without a variance (a proportion constant within strata,
        // or 0 or 1): R returns NaN or the degenerate Beta(Inf, Inf) median 0.5 here.
        CiMethod::Beta if ds.var.is_nan() || ds.var <= 1e-24 * est * (1.0 - est) => (None, None),
        CiMethod::Beta => {
            let kg = korn_graubard(est, ds.var, domains.rows[d] as f64, dff, req.level);
            (kg.lower.is_finite().then_some(kg.lower), kg.upper.is_finite().then_some(kg.upper))
        }
    };
    // An interval must contain its estimate; one that does not is numerically meaningless.
    let (lower, upper) = match (lower, upper) {
        (Some(l), Some(u))
            if l.is_finite() && u.is_finite() && est.is_finite() && !(l <= est && est <= u) =>
        {
            (None, None)
        }
        other => other,
    };
    if (lower.is_none() || upper.is_none()) && !flags.iter().any(|f| f == "no_df") {
        flags.push("ci_undefined".into());
    }
    let (low, high) = stat.range;
    if lower.is_some_and(|l| l < low) || upper.is_some_and(|u| u > high) {
        flags.push("ci_outside_range".into());
    }
    if ds.n <= req.reliability.min_n {
        flags.push("low_n".into());
    }
    let high_cv = match cv {
        Some(c) => c.abs() > req.reliability.max_cv,
        None => est == 0.0 && se > 0.0,
    };
    if high_cv {
        flags.push("high_cv".into());
    }
    Estimate {
        statistic: stat.statistic.to_string(),
        variable: stat.variable.clone(),
        level,
        domain: domains.has_by().then(|| domains.labels[d].clone()),
        estimate: est,
        se,
        var: ds.var,
        cv,
        deff: ds.deff,
        deff_replace: ds.deff_replace,
        df,
        n: ds.n,
        ci_lower: lower,
        ci_upper: upper,
        ci_method: method,
        flags,
    }
}
