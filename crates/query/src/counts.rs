//! Count aggregation over the committed counts table with Polars. Counts files hold deltas
//! (or compacted snapshots) per cell; summing every file of the manifest gives the totals.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use observatory_store::{DataFile, Manifest, Projection, StoreError};
use polars::prelude::*;

use crate::request::{CountsRequest, Dimension};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading {path}: {message}")]
    Read { path: String, message: String },
    #[error("aggregation failed: {0}")]
    Compute(String),
    #[error(
        "the projection has reached sequence {reached}, not the requested {wanted}, after waiting {waited:?}; \
         the projector may be behind or stopped: retry later"
    )]
    NotYet { reached: u64, wanted: u64, waited: Duration },
}

impl From<PolarsError> for QueryError {
    fn from(error: PolarsError) -> Self {
        QueryError::Compute(error.to_string())
    }
}

/// What an answer reflects.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AsOf {
    /// Stream sequence of the manifest: every event up to it is counted, none after.
    pub sequence: u64,
    pub version: u32,
    pub committed_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub struct CountsAnswer {
    pub as_of: AsOf,
    /// Grouping columns in request order, then `count` and `loss_eur`.
    pub frame: DataFrame,
}

/// Reads committed manifests and their counts files, caching decoded files (they are
/// immutable: a name is never reused for other content).
pub struct CountsEngine {
    projection: Projection,
    cache: Mutex<HashMap<String, DataFrame>>,
    poll_interval: Duration,
}

impl CountsEngine {
    pub fn new(projection: Projection) -> CountsEngine {
        CountsEngine { projection, cache: Mutex::new(HashMap::new()), poll_interval: Duration::from_millis(20) }
    }

    /// The serving manifest, waiting up to `wait` for it to reach `min_sequence`.
    pub async fn manifest(&self, min_sequence: Option<u64>, wait: Duration) -> Result<Option<Manifest>, QueryError> {
        let started = Instant::now();
        loop {
            let manifest = self.projection.serving_manifest().await?;
            let reached = manifest.as_ref().map_or(0, |m| m.last_sequence);
            match min_sequence {
                Some(wanted) if reached < wanted => {
                    if started.elapsed() >= wait {
                        return Err(QueryError::NotYet { reached, wanted, waited: started.elapsed() });
                    }
                    tokio::time::sleep(self.poll_interval).await;
                }
                _ => return Ok(manifest),
            }
        }
    }

    async fn load(&self, version: u32, file: &DataFile) -> Result<DataFrame, QueryError> {
        if let Some(frame) = self.cache.lock().expect("not poisoned").get(&file.path) {
            return Ok(frame.clone());
        }
        let path = self.projection.object_path(version, &file.path);
        let bytes = self
            .projection
            .store()
            .get(&path)
            .await?
            .ok_or_else(|| QueryError::Read { path: path.to_string(), message: "named by the manifest but missing".into() })?;
        let frame = ParquetReader::new(std::io::Cursor::new(bytes))
            .finish()
            .map_err(|e| QueryError::Read { path: path.to_string(), message: e.to_string() })?;
        self.cache.lock().expect("not poisoned").insert(file.path.clone(), frame.clone());
        Ok(frame)
    }

    /// Drops cached files no longer named by the manifest being served.
    fn retain_cache(&self, manifest: &Manifest) {
        let live: HashSet<&str> = manifest.files("counts").iter().map(|f| f.path.as_str()).collect();
        self.cache.lock().expect("not poisoned").retain(|path, _| live.contains(path.as_str()));
    }

    pub async fn counts(&self, request: &CountsRequest, wait: Duration) -> Result<CountsAnswer, QueryError> {
        let manifest = self.manifest(request.min_sequence, wait).await?;
        let as_of = AsOf {
            sequence: manifest.as_ref().map_or(0, |m| m.last_sequence),
            version: manifest.as_ref().map_or(0, |m| m.version),
            committed_at: manifest.as_ref().map(|m| m.committed_at),
        };
        let mut frames = Vec::new();
        if let Some(manifest) = &manifest {
            self.retain_cache(manifest);
            let (first_year, last_year) = request.year_range();
            for file in manifest.files("counts") {
                let year = file.year.unwrap_or_default();
                if first_year.is_some_and(|y| year < y) || last_year.is_some_and(|y| year > y) {
                    continue;
                }
                frames.push(self.load(manifest.version, file).await?.lazy());
            }
        }
        // Polars computes on its own threads and blocks: keep it off the async workers.
        let request = request.clone();
        let frame = tokio::task::spawn_blocking(move || aggregate(frames, &request))
            .await
            .map_err(|e| QueryError::Compute(format!("aggregation task failed: {e}")))??;
        Ok(CountsAnswer { as_of, frame })
    }
}

fn any_of(column: &str, values: &[String], matcher: impl Fn(Expr, &str) -> Expr) -> Expr {
    values.iter().map(|v| matcher(col(column), v)).reduce(|a, b| a.or(b)).expect("filters are non-empty")
}

fn empty_counts() -> LazyFrame {
    let columns: Vec<Column> = vec![
        Column::new("year".into(), Vec::<i32>::new()),
        Column::new("month".into(), Vec::<String>::new()),
        Column::new("departement".into(), Vec::<Option<String>>::new()),
        Column::new("iccs".into(), Vec::<String>::new()),
        Column::new("cyber".into(), Vec::<bool>::new()),
        Column::new("victim_type".into(), Vec::<String>::new()),
        Column::new("channel".into(), Vec::<String>::new()),
        Column::new("source".into(), Vec::<String>::new()),
        Column::new("count".into(), Vec::<i64>::new()),
        Column::new("loss_cents".into(), Vec::<i64>::new()),
    ];
    DataFrame::new_infer_height(columns).expect("valid empty frame").lazy()
}

/// Filters, groups and sums. Pure over its input frames.
pub fn aggregate(frames: Vec<LazyFrame>, request: &CountsRequest) -> Result<DataFrame, QueryError> {
    let mut frame = if frames.is_empty() { empty_counts() } else { concat(frames, UnionArgs::default())? };
    if let Some(from) = &request.from {
        frame = frame.filter(col("month").gt_eq(lit(from.as_str())));
    }
    if let Some(to) = &request.to {
        frame = frame.filter(col("month").lt_eq(lit(to.as_str())));
    }
    for (dimension, values) in &request.filters {
        let name = dimension.name();
        let predicate = match dimension {
            Dimension::Iccs => any_of(name, values, |c, v| {
                // Codes are digit strings: the subtree of "09" is exactly "09" ≤ code < "0:".
                let mut upper = v.as_bytes().to_vec();
                *upper.last_mut().expect("non-empty") += 1;
                let upper = String::from_utf8(upper).expect("ascii");
                c.clone().gt_eq(lit(v)).and(c.lt(lit(upper)))
            }),
            Dimension::Cyber => any_of(name, values, |c, v| c.eq(lit(v == "true"))),
            Dimension::Year => any_of(name, values, |c, v| c.eq(lit(v.parse::<i32>().unwrap_or_default()))),
            _ => any_of(name, values, |c, v| c.eq(lit(v))),
        };
        frame = frame.filter(predicate);
    }
    let sums = [col("count").sum().alias("count"), col("loss_cents").sum().alias("loss_cents")];
    let keys: Vec<Expr> = request.by.iter().map(|d| col(d.name())).collect();
    let grouped = if keys.is_empty() { frame.select(sums) } else { frame.group_by(keys.clone()).agg(sums) };
    let by_names: Vec<PlSmallStr> = request.by.iter().map(|d| PlSmallStr::from(d.name())).collect();
    let mut out = grouped;
    if keys.is_empty() {
        // A national total with no data is a zero, not a null.
        out = out.with_columns([col("count").fill_null(lit(0i64)), col("loss_cents").fill_null(lit(0i64))]);
    } else {
        // A cell whose deltas net to zero is no incident: drop it from grouped answers.
        out = out.filter(col("count").neq(lit(0i64))).sort(by_names, SortMultipleOptions::default().with_nulls_last(true));
    }
    let mut result = out.collect()?;
    // Euros from exact integer cents with one correctly rounded division, so 1234.56 prints
    // as 1234.56 and not as the sum of binary fractions.
    let euros: Float64Chunked = result.column("loss_cents")?.i64()?.iter().map(|c| c.map(|c| c as f64 / 100.0)).collect();
    result.with_column(euros.into_series().with_name("loss_eur".into()).into_column())?;
    Ok(result.drop("loss_cents")?)
}
