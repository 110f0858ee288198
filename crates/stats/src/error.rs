//! Typed errors. Every message says what is wrong, where (column, stratum, domain, row) and what
//! to do about it, because these messages end up in front of analysts running the CLI.

use thiserror::Error;

/// Everything that can go wrong while reading a table, building a design or estimating.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum StatsError {
    #[error("CSV line {line}: {message}")]
    Csv { line: usize, message: String },

    #[error("unknown column '{column}' (asked for as {role}); the table has: {available}")]
    UnknownColumn { column: String, role: String, available: String },

    #[error("duplicate column name '{column}' in the table; rename one of them")]
    DuplicateColumn { column: String },

    #[error(
        "column '{column}' has {actual} rows but the table has {expected}; all columns must have the same length"
    )]
    ColumnLength { column: String, expected: usize, actual: usize },

    #[error(
        "column '{column}' ({role}) must be numeric, but row {row} holds '{value}'; fix the data or choose a numeric column"
    )]
    NotNumeric { column: String, role: String, row: usize, value: String },

    #[error(
        "column '{column}' ({role}) is missing at row {row}; design variables may not be missing: drop or impute that row"
    )]
    MissingDesignValue { column: String, role: String, row: usize },

    #[error(
        "stratum '{stratum}' has only one PSU at stage {stage}{context}; with --lonely-psu fail this is an error: choose --lonely-psu adjust|average|remove|certainty, or merge the stratum with a neighbour"
    )]
    LonelyPsu { stratum: String, stage: usize, context: String },

    #[error(
        "the design has only one primary sampling unit (column '{column}'); a variance needs at least two PSUs"
    )]
    SinglePsu { column: String },

    #[error(
        "cluster '{cluster}' (column '{column}') appears in strata '{stratum_a}' and '{stratum_b}'; PSU ids must be nested in strata: make them unique within the whole file or set nest (R: nest=TRUE)"
    )]
    ClusterNotNested { column: String, cluster: String, stratum_a: String, stratum_b: String },

    #[error(
        "{count} fpc column(s) given for {stages} sampling stage(s); give one fpc per stage (one per --cluster, or one for an unclustered design) or none"
    )]
    FpcStageCount { count: usize, stages: usize },

    #[error(
        "fpc values mix sampling fractions (<1) and population sizes (>1), e.g. column '{column}' row {row} holds {value}; R requires all fpc >= 1 (population sizes) or all <= 1 (fractions), and not all exactly 1"
    )]
    FpcMixed { column: String, row: usize, value: f64 },

    #[error(
        "fpc column '{column}' varies within stratum '{stratum}' at stage {stage} ({a} and {b}); a population size or sampling fraction must be constant within each stratum"
    )]
    FpcVaries { column: String, stratum: String, stage: usize, a: f64, b: f64 },

    #[error(
        "fpc column '{column}' implies more than 100% sampling in stratum '{stratum}' at stage {stage}: population {popsize} but {sampsize} units sampled"
    )]
    FpcTooSmall { column: String, stratum: String, stage: usize, popsize: f64, sampsize: usize },

    #[error(
        "no weights given and the fpc cannot supply them (population sizes above 1e12 or missing); give --weights"
    )]
    WeightsFromFpc,

    #[error("no column matches the replicate-weight pattern '{pattern}'; check --repweights")]
    NoReplicateColumns { pattern: String },

    #[error("invalid replicate-weight pattern '{pattern}': {message}")]
    BadPattern { pattern: String, message: String },

    #[error("{0}")]
    Replicate(String),

    #[error(
        "domain {domain} has no rows with a non-missing '{variable}'; drop that domain (or the variable) or check the data"
    )]
    EmptyDomain { domain: String, variable: String },

    #[error(
        "the total of denominator '{column}' is zero in {domain}; the ratio is undefined there"
    )]
    ZeroDenominator { column: String, domain: String },

    #[error(
        "all {replicates} replicate estimates of {what} are missing (NaN); the replicate variance is undefined"
    )]
    AllReplicatesNaN { replicates: usize, what: String },

    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl StatsError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        StatsError::InvalidRequest(msg.into())
    }
}
