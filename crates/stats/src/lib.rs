//! Design-based estimation for victimisation surveys, agreeing with R's `survey` package
//! (Lumley; checked against survey 4.1-1 on R 4.2.2) to a relative 1e-9 or better.
//!
//! - [`Table`]: named numeric/text columns, from [`Table::from_csv_str`] or built in code.
//! - Designs: [`LinearDesign`] (strata, multistage clusters, fpc, lonely-PSU rules, as
//!   `svydesign`) and [`ReplicateDesign`] (JK1, JKn, BRR, Fay, bootstrap, other, as
//!   `svrepdesign` with combined weights, or jackknife weights built from a linear design, as
//!   `as.svrepdesign`).
//! - [`estimate()`]: totals, means, proportions and ratios, by domain (as `svyby`), with SE,
//!   CV, design effects, degrees of freedom and Wald / t / logit / Korn-Graubard intervals.
//! - [`dist`]: normal, t and beta quantiles accurate to ~1e-13; [`ci`]: the intervals.
//!
//! Pure: no IO, no threads, no global state.
//!
//! # R semantics worth knowing
//! - Missing values act as `na.rm = TRUE`: the row leaves that statistic, the design (strata,
//!   PSU counts) is kept. Domains are estimated on the full design (absent PSUs count as
//!   zeros), as `svyby` does.
//! - `df` is `degf()` of the design R's function sees: for a domain, the subset `svyby` passes
//!   on (PSUs with non-zero weight in the domain minus their strata; for replicate designs the
//!   rank of the domain's replicate weights minus one, which survey 4.1 recomputes on subsets).
//!   `svyciprop` inside `svyby` uses exactly that, and so do the t intervals here.
//! - Logit intervals reproduce R's quasibinomial `svyglm` fit (its IRLS and stopping rule),
//!   so they match R also where the exact MLE would differ in the 9th digit or diverge
//!   (a domain or replicate with only 0s or only 1s).
//! - A lonely PSU under `fail` is an error only if its stratum has rows in the estimation
//!   subset, and later-stage units are lonely too (R's `multistage`): a PSU with one sampled
//!   SSU and a second-stage fpc below 100% fails like a first-stage stratum.
//!
//! Deliberate differences, all where R would warn or silently produce something unusable:
//! `--reptype` is required with `--repweights` (R assumes BRR); `--scale` with BRR/Fay is
//! refused (R overrides it); replicate designs need `--weights` (R assumes 1); the full-sample
//! weight column is never matched as a replicate; Korn-Graubard bounds with a zero variance
//! are `null` (R returns NaN or 0.5); for jackknife weights from a design with fully sampled
//! strata, replicate totals keep those strata's rows (R drops them, which changes nothing
//! unless `mse` is set, where R's result is inflated).

// Published algorithm coefficients (AS 241) and R reference values are quoted digit for digit.
#![allow(clippy::excessive_precision)]

#[cfg(feature = "arrow")]
mod arrow_table;
pub mod ci;
mod csv;
pub mod design;
pub mod dist;
mod error;
mod estimate;
#[cfg(test)]
mod fuzz;
mod hash;
pub mod synthetic;
mod table;

pub use design::{
    DesignSpec, JackknifeKind, LinearDesign, LonelyPsu, RepType, ReplicateDesign, ReplicateSpec,
};
pub use error::StatsError;
pub use estimate::{
    CiMethod, Domain, Estimate, EstimateReport, EstimateRequest, Reliability, StatisticSpec,
    estimate,
};
pub use table::{Column, Table};
