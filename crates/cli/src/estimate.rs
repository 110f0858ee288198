//! `observatory estimate`: design-based estimates from a CSV or Parquet microdata file,
//! with the formulas of R's `survey` package (see the `observatory-stats` crate).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use observatory_stats::{
    CiMethod, EstimateRequest, JackknifeKind, LonelyPsu, RepType, StatisticSpec, Table, estimate,
};

#[derive(Args, Debug, Clone)]
pub struct EstimateArgs {
    /// Microdata: a CSV file with a header row, or a Parquet file (by extension).
    #[arg(long, env = "OBSERVATORY_ESTIMATE_INPUT")]
    pub input: PathBuf,

    /// Sampling-weight column (default: from --fpc, the product of N/n over stages, else 1).
    #[arg(long, env = "OBSERVATORY_ESTIMATE_WEIGHTS", help_heading = "Design")]
    pub weights: Option<String>,
    /// Stratum column of the first stage.
    #[arg(long, env = "OBSERVATORY_ESTIMATE_STRATA", help_heading = "Design")]
    pub strata: Option<String>,
    /// Cluster column of each stage, first stage first (repeat the flag).
    #[arg(long = "cluster", env = "OBSERVATORY_ESTIMATE_CLUSTER", help_heading = "Design")]
    pub clusters: Vec<String>,
    /// Finite population correction of each stage: population sizes, or sampling fractions (≤ 1).
    #[arg(long, env = "OBSERVATORY_ESTIMATE_FPC", help_heading = "Design")]
    pub fpc: Vec<String>,
    /// fail | adjust | average | remove | certainty (R's survey.lonely.psu).
    #[arg(
        long,
        env = "OBSERVATORY_ESTIMATE_LONELY_PSU",
        default_value = "fail",
        help_heading = "Design"
    )]
    pub lonely_psu: String,

    /// Regular expression selecting the replicate-weight columns.
    #[arg(long, env = "OBSERVATORY_ESTIMATE_REPWEIGHTS", help_heading = "Replicate weights")]
    pub repweights: Option<String>,
    /// jk1 | jkn | brr | fay:RHO | bootstrap | other.
    #[arg(long, env = "OBSERVATORY_ESTIMATE_REPTYPE", help_heading = "Replicate weights")]
    pub reptype: Option<String>,
    /// Overall scale of the replicate variance (R's `scale`; default: from --reptype).
    #[arg(long, env = "OBSERVATORY_ESTIMATE_SCALE", help_heading = "Replicate weights")]
    pub scale: Option<f64>,
    /// Per-replicate scales (R's `rscales`): one value, or one per replicate separated by commas.
    #[arg(long, env = "OBSERVATORY_ESTIMATE_RSCALES", help_heading = "Replicate weights")]
    pub rscales: Option<String>,
    /// Centre the replicate variance on the full-sample estimate instead of the replicates'
    /// mean (R's `mse = TRUE`).
    #[arg(long, env = "OBSERVATORY_ESTIMATE_MSE", help_heading = "Replicate weights")]
    pub mse: bool,
    /// Build jackknife replicate weights (jk1 | jkn) from the linearisation design.
    #[arg(long, env = "OBSERVATORY_ESTIMATE_REPLICATES", help_heading = "Replicate weights")]
    pub replicates: Option<String>,

    /// Mean of a numeric column (repeat the flag for several).
    #[arg(long = "mean", env = "OBSERVATORY_ESTIMATE_MEAN", help_heading = "Statistics")]
    pub means: Vec<String>,
    /// Total of a numeric column (repeat the flag for several).
    #[arg(long = "total", env = "OBSERVATORY_ESTIMATE_TOTAL", help_heading = "Statistics")]
    pub totals: Vec<String>,
    /// Proportions of each level of a categorical column.
    #[arg(long = "prop", env = "OBSERVATORY_ESTIMATE_PROP", help_heading = "Statistics")]
    pub props: Vec<String>,
    /// Ratio of two numeric columns, written NUM/DEN.
    #[arg(long = "ratio", env = "OBSERVATORY_ESTIMATE_RATIO", help_heading = "Statistics")]
    pub ratios: Vec<String>,
    /// Domain columns (as svyby).
    #[arg(long, env = "OBSERVATORY_ESTIMATE_BY", help_heading = "Statistics")]
    pub by: Vec<String>,
    /// auto (logit for --prop, as svyciprop; t otherwise) | wald | t | logit | beta (Korn-Graubard).
    #[arg(
        long,
        env = "OBSERVATORY_ESTIMATE_CI",
        default_value = "auto",
        help_heading = "Statistics"
    )]
    pub ci: String,
    /// Confidence level of the intervals.
    #[arg(
        long,
        env = "OBSERVATORY_ESTIMATE_LEVEL",
        default_value_t = 0.95,
        help_heading = "Statistics"
    )]
    pub level: f64,

    /// Output: json | csv (one row per estimate, domain columns first).
    #[arg(long, env = "OBSERVATORY_ESTIMATE_FORMAT", default_value = "json")]
    pub format: String,
}

fn parse_flag<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value.parse::<T>().map_err(|e| anyhow::anyhow!("--{flag} {value}: {e}"))
}

/// Reads CSV or Parquet microdata into the estimation table.
pub fn load_table(path: &Path) -> Result<Table> {
    let is_parquet = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    if !is_parquet {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Table::from_csv_str(&text)
            .with_context(|| format!("{} is not a readable CSV file", path.display()));
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a Parquet file", path.display()))?
        .build()?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    parquet_table(&batches)
}

/// Numeric Arrow columns become numeric columns (nulls missing); strings, booleans and
/// dictionaries become categorical text columns (the conversion lives in `observatory-stats`,
/// shared with the survey ingest and query, so a file reads the same everywhere).
pub fn parquet_table(batches: &[arrow::array::RecordBatch]) -> Result<Table> {
    if batches.is_empty() {
        bail!("the Parquet file has no rows");
    }
    Ok(Table::from_record_batches(batches)?)
}

pub fn request(args: &EstimateArgs, table: &Table) -> Result<EstimateRequest> {
    let mut statistics: Vec<StatisticSpec> = Vec::new();
    statistics.extend(args.means.iter().cloned().map(StatisticSpec::Mean));
    statistics.extend(args.totals.iter().cloned().map(StatisticSpec::Total));
    statistics.extend(args.props.iter().cloned().map(StatisticSpec::Prop));
    for ratio in &args.ratios {
        statistics.push(StatisticSpec::parse_ratio(ratio, table)?);
    }
    if statistics.is_empty() {
        bail!(
            "nothing to estimate: give at least one of --mean COL, --total COL, --prop COL, --ratio NUM/DEN"
        );
    }
    let rscales = match &args.rscales {
        Some(text) => Some(
            text.split(',')
                .map(|v| parse_flag::<f64>("rscales", v.trim()))
                .collect::<Result<Vec<f64>>>()?,
        ),
        None => None,
    };
    Ok(EstimateRequest {
        weights: args.weights.clone(),
        strata: args.strata.clone(),
        clusters: args.clusters.clone(),
        fpc: args.fpc.clone(),
        lonely_psu: parse_flag::<LonelyPsu>("lonely-psu", &args.lonely_psu)?,
        repweights: args.repweights.clone(),
        reptype: args
            .reptype
            .as_deref()
            .map(|t| parse_flag::<RepType>("reptype", t))
            .transpose()?,
        scale: args.scale,
        rscales,
        mse: args.mse,
        replicates: args
            .replicates
            .as_deref()
            .map(|t| parse_flag::<JackknifeKind>("replicates", t))
            .transpose()?,
        statistics,
        by: args.by.clone(),
        ci: parse_flag::<CiMethod>("ci", &args.ci)?,
        level: args.level,
        ..Default::default()
    })
}

pub fn run(args: &EstimateArgs) -> Result<()> {
    if !matches!(args.format.as_str(), "json" | "csv") {
        bail!("--format {} is not supported; use json or csv", args.format);
    }
    let table = load_table(&args.input)?;
    let request = request(args, &table)?;
    let report = estimate(&table, &request)?;
    let value = serde_json::to_value(&report)?;
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", report_csv(&value));
    }
    Ok(())
}

/// Flattens the estimates to CSV: one row per estimate, domain columns first.
pub fn report_csv(report: &serde_json::Value) -> String {
    let estimates = report["estimates"].as_array().cloned().unwrap_or_default();
    let mut domain_columns: Vec<String> = Vec::new();
    for estimate in &estimates {
        if let Some(domain) = estimate["domain"].as_object() {
            for key in domain.keys() {
                if !domain_columns.contains(key) {
                    domain_columns.push(key.clone());
                }
            }
        }
    }
    const FIELDS: &[&str] = &[
        "statistic",
        "variable",
        "level",
        "estimate",
        "se",
        "var",
        "cv",
        "deff",
        "deff_replace",
        "df",
        "n",
        "ci_lower",
        "ci_upper",
        "ci_method",
    ];
    let quote = |text: String| {
        if text.contains([',', '"', '\n']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text
        }
    };
    let cell = |value: &serde_json::Value| match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => quote(s.clone()),
        other => quote(other.to_string()),
    };
    let mut out: Vec<String> = domain_columns.iter().cloned().map(quote).collect();
    out.extend(FIELDS.iter().map(|f| f.to_string()));
    out.push("flags".into());
    let mut text = out.join(",") + "\n";
    for estimate in &estimates {
        let mut row: Vec<String> =
            domain_columns.iter().map(|c| cell(&estimate["domain"][c])).collect();
        row.extend(FIELDS.iter().map(|f| cell(&estimate[*f])));
        let flags: Vec<String> = estimate["flags"]
            .as_array()
            .map(|f| f.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        row.push(quote(flags.join(";")));
        text.push_str(&row.join(","));
        text.push('\n');
    }
    text
}
