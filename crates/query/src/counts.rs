//! Count aggregation over the committed counts table with Polars. Counts files hold deltas
//! (or compacted snapshots) per cell; summing every file of the manifest gives the totals.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use observatory_reference::Geography;
use observatory_store::{DataFile, Manifest, Projection, StoreError};
use polars::prelude::*;

use crate::request::{CountsRequest, Dimension, Rate};

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
    /// Counts of different units (offences, victims, reports) are never added together.
    #[error(
        "the selected counts mix units ({0}): an offence, a victim and a report are not the same thing; \
         choose one with unit=… or group with by=unit"
    )]
    MixedUnits(String),
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
    /// Reference data the projection was computed with (ICCS, crosswalk versions).
    pub reference: BTreeMap<String, String>,
}

pub struct CountsAnswer {
    pub as_of: AsOf,
    /// Grouping columns in request order, then `count` and `loss_eur`.
    pub frame: DataFrame,
}

/// Reads committed manifests and serves counts from the cells they add up to.
pub struct CountsEngine {
    projection: Projection,
    /// The serving manifest's counts netted per cell; rebuilt (or extended) when the manifest
    /// changes, then shared by every request on that manifest.
    netted: tokio::sync::Mutex<Option<Arc<Netted>>>,
    poll_interval: Duration,
}

/// Every counts file of one manifest summed per cell, zero cells dropped, with an `open`
/// column (1 where the source has not closed that month and département). The files hold
/// deltas and snapshots whose sum is the answer: summing them once per manifest instead of
/// once per request makes a request a filter and a group-by over live cells only.
pub struct Netted {
    version: u32,
    counts_files: HashSet<String>,
    coverage_files: Vec<String>,
    coverage: Arc<Coverage>,
    /// One row per live cell, dimensions as text (re-netted with the next files).
    frame: DataFrame,
    /// The same cells with every text dimension as a code into its dictionary (what
    /// requests scan).
    coded: Arc<Coded>,
}

impl CountsEngine {
    pub fn new(projection: Projection) -> CountsEngine {
        CountsEngine { projection, netted: tokio::sync::Mutex::new(None), poll_interval: Duration::from_millis(20) }
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
        let path = self.projection.object_path(version, &file.path);
        let bytes = self
            .projection
            .store()
            .get(&path)
            .await?
            .ok_or_else(|| QueryError::Read { path: path.to_string(), message: "named by the manifest but missing".into() })?;
        ParquetReader::new(std::io::Cursor::new(bytes))
            .finish()
            .map_err(|e| QueryError::Read { path: path.to_string(), message: e.to_string() })
    }

    /// The netted counts of `manifest`: the cached ones when they match it, extended by the
    /// new files when the manifest only added some (the usual flush), else built anew (a
    /// compaction or a rebuild replaced files).
    async fn netted(&self, manifest: &Manifest) -> Result<Arc<Netted>, QueryError> {
        let mut cached = self.netted.lock().await;
        let counts_files: HashSet<String> = manifest.files("counts").iter().map(|f| f.path.clone()).collect();
        let coverage_files: Vec<String> = manifest.files("coverage").iter().map(|f| f.path.clone()).collect();
        if let Some(netted) = cached.as_ref() {
            if netted.version == manifest.version && netted.counts_files == counts_files && netted.coverage_files == coverage_files {
                return Ok(netted.clone());
            }
        }
        let previous = cached.take().filter(|n| n.version == manifest.version && n.counts_files.is_subset(&counts_files));
        let coverage = match &previous {
            Some(netted) if netted.coverage_files == coverage_files => netted.coverage.clone(),
            _ => {
                let mut coverage = Coverage::default();
                for file in manifest.files("coverage") {
                    coverage.add(&self.load(manifest.version, file).await?)?;
                }
                Arc::new(coverage)
            }
        };
        let mut frames = Vec::new();
        if let Some(netted) = &previous {
            frames.push(netted.frame.clone().lazy().select([all().exclude_cols(["open"]).as_expr()]));
        }
        for file in manifest.files("counts") {
            if previous.as_ref().is_some_and(|n| n.counts_files.contains(&file.path)) {
                continue;
            }
            frames.push(self.load(manifest.version, file).await?.lazy());
        }
        let started = Instant::now();
        let for_task = coverage.clone();
        let (frame, coded) = tokio::task::spawn_blocking(move || -> Result<_, QueryError> {
            let frame = net(frames, &for_task)?;
            let coded = Coded::encode(&frame)?;
            Ok((frame, Arc::new(coded)))
        })
        .await
        .map_err(|e| QueryError::Compute(format!("netting task failed: {e}")))??;
        tracing::debug!(version = manifest.version, sequence = manifest.last_sequence, cells = frame.height(),
            incremental = previous.is_some(), elapsed_ms = started.elapsed().as_millis() as u64, "counts netted");
        let netted = Arc::new(Netted { version: manifest.version, counts_files, coverage_files, coverage, frame, coded });
        *cached = Some(netted.clone());
        Ok(netted)
    }

    /// Per source and month: `closed` (declared complete), `partial` (some départements
    /// closed), `open` (data but not closed) or `missing` (neither).
    pub async fn coverage(
        &self,
        from: Option<&str>,
        to: Option<&str>,
        sources: Option<&[String]>,
    ) -> Result<(AsOf, Vec<serde_json::Value>), QueryError> {
        let request = CountsRequest {
            by: vec![Dimension::Source, Dimension::Month, Dimension::Unit],
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            filters: Default::default(),
            format: crate::request::OutputFormat::Json,
            min_sequence: None,
            rate: None,
        };
        // One manifest for both: the data months and the closures must describe the same state.
        let manifest = self.projection.serving_manifest().await?;
        let (answer, coverage) = self.counts_on(manifest.as_ref(), &request).await?;
        let frame = &answer.frame;
        let mut with_data: HashSet<(String, String)> = HashSet::new();
        let source_column = frame.column("source")?.str()?;
        let month_column = frame.column("month")?.str()?;
        for i in 0..frame.height() {
            if let (Some(s), Some(m)) = (source_column.get(i), month_column.get(i)) {
                with_data.insert((s.to_owned(), m.to_owned()));
            }
        }
        let mut all_sources: Vec<String> =
            with_data.iter().map(|(s, _)| s.clone()).chain(coverage.sources().map(str::to_owned)).collect();
        all_sources.sort();
        all_sources.dedup();
        if let Some(wanted) = sources {
            all_sources.retain(|s| wanted.contains(s));
        }
        let months: Vec<String> = {
            let known = with_data.iter().map(|(_, m)| m.clone()).chain(coverage.months().map(|(_, m)| m.to_owned()));
            let mut known: Vec<String> = known.collect();
            known.sort();
            let first = from.map(str::to_owned).or_else(|| known.first().cloned());
            let last = to.map(str::to_owned).or_else(|| known.last().cloned());
            match (first, last) {
                (Some(first), Some(last)) => month_range(&first, &last),
                _ => Vec::new(),
            }
        };
        let mut rows = Vec::new();
        for source in &all_sources {
            for month in &months {
                let (status, closed) = match coverage.entry(source, month) {
                    Some(None) => ("closed", None),
                    Some(Some(listed)) => {
                        let mut listed: Vec<&String> = listed.iter().collect();
                        listed.sort();
                        ("partial", Some(listed.into_iter().cloned().collect::<Vec<_>>()))
                    }
                    None if with_data.contains(&(source.clone(), month.clone())) => ("open", None),
                    None => ("missing", None),
                };
                let mut row = serde_json::json!({"source": source, "month": month, "status": status});
                if let Some(closed) = closed {
                    row["closed_departements"] = serde_json::json!(closed);
                }
                rows.push(row);
            }
        }
        Ok((answer.as_of, rows))
    }

    pub async fn counts(&self, request: &CountsRequest, wait: Duration) -> Result<CountsAnswer, QueryError> {
        let manifest = self.manifest(request.min_sequence, wait).await?;
        Ok(self.counts_on(manifest.as_ref(), request).await?.0)
    }

    /// The answer to `request` on `manifest`, with the coverage table it was computed with.
    async fn counts_on(&self, manifest: Option<&Manifest>, request: &CountsRequest) -> Result<(CountsAnswer, Arc<Coverage>), QueryError> {
        let as_of = AsOf {
            sequence: manifest.as_ref().map_or(0, |m| m.last_sequence),
            version: manifest.as_ref().map_or(0, |m| m.version),
            committed_at: manifest.as_ref().map(|m| m.committed_at),
            reference: manifest.as_ref().map(|m| m.reference.clone()).unwrap_or_default(),
        };
        let (cells, coverage) = match manifest {
            Some(manifest) => {
                let netted = self.netted(manifest).await?;
                (netted.coded.clone(), netted.coverage.clone())
            }
            None => (Arc::new(Coded::encode(&net(Vec::new(), &Coverage::default())?)?), Arc::default()),
        };
        // Polars computes on its own threads and blocks: keep it off the async workers.
        let request = request.clone();
        let frame = tokio::task::spawn_blocking(move || aggregate(&cells, &request))
            .await
            .map_err(|e| QueryError::Compute(format!("aggregation task failed: {e}")))??;
        Ok((CountsAnswer { as_of, frame }, coverage))
    }
}

/// Months from `first` to `last` inclusive, both "YYYY-MM".
fn month_range(first: &str, last: &str) -> Vec<String> {
    let (Some(a), Some(b)) = (month_index(first), month_index(last)) else { return Vec::new() };
    (a..=b.min(a + 12 * 50)).map(|i| format!("{:04}-{:02}", i / 12, i % 12 + 1)).collect()
}

fn any_of(column: &str, values: &[String], matcher: impl Fn(Expr, &str) -> Expr) -> Expr {
    values.iter().map(|v| matcher(col(column), v)).reduce(|a, b| a.or(b)).expect("filters are non-empty")
}

fn empty_counts() -> LazyFrame {
    let text = |name: &str| Column::new(name.into(), Vec::<String>::new());
    let optional = |name: &str| Column::new(name.into(), Vec::<Option<String>>::new());
    let columns: Vec<Column> = vec![
        Column::new("year".into(), Vec::<i32>::new()),
        text("month"),
        optional("departement"),
        text("iccs"),
        Column::new("cyber".into(), Vec::<bool>::new()),
        text("victim_type"),
        text("channel"),
        text("source"),
        text("unit"),
        text("iccs_section"),
        optional("iccs_division"),
        optional("iccs_group"),
        optional("region"),
        Column::new("count".into(), Vec::<i64>::new()),
        Column::new("loss_cents".into(), Vec::<i64>::new()),
    ];
    DataFrame::new_infer_height(columns).expect("valid empty frame").lazy()
}

/// Which (source, month) an agency declared complete, as the coverage table says.
#[derive(Debug, Default, Clone)]
pub struct Coverage {
    /// source → month → `None`: the whole month; otherwise the closed départements.
    closed: HashMap<String, HashMap<String, Option<HashSet<String>>>>,
}

impl Coverage {
    fn add(&mut self, frame: &DataFrame) -> Result<(), QueryError> {
        let source = frame.column("source")?.str()?;
        let month = frame.column("month")?.str()?;
        let departement = frame.column("departement")?.str()?;
        for i in 0..frame.height() {
            let (Some(s), Some(m)) = (source.get(i), month.get(i)) else { continue };
            let entry = self
                .closed
                .entry(s.to_owned())
                .or_default()
                .entry(m.to_owned())
                .or_insert_with(|| Some(HashSet::new()));
            match (departement.get(i), entry.as_mut()) {
                (None, _) => *entry = None,
                (Some(d), Some(set)) => {
                    set.insert(d.to_owned());
                }
                (Some(_), None) => {}
            }
        }
        Ok(())
    }

    pub fn is_closed(&self, source: &str, month: &str, departement: Option<&str>) -> bool {
        match self.entry(source, month) {
            Some(None) => true,
            Some(Some(listed)) => departement.is_some_and(|d| listed.contains(d)),
            None => false,
        }
    }

    /// Closed départements of a partially closed (source, month); `None` when wholly closed
    /// or not closed at all.
    pub fn entry(&self, source: &str, month: &str) -> Option<&Option<HashSet<String>>> {
        self.closed.get(source)?.get(month)
    }

    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.closed.keys().map(String::as_str)
    }

    /// Every closed (source, month).
    pub fn months(&self) -> impl Iterator<Item = (&str, &str)> {
        self.closed.iter().flat_map(|(s, months)| months.keys().map(move |m| (s.as_str(), m.as_str())))
    }
}

/// Marks rows whose (source, month, département) the source has not closed yet.
fn open_flags(frame: &DataFrame, coverage: &Coverage) -> Result<Column, QueryError> {
    let source = frame.column("source")?.str()?;
    let month = frame.column("month")?.str()?;
    let departement = frame.column("departement")?.str()?;
    let open: Vec<i64> = (0..frame.height())
        .map(|i| {
            let closed = match (source.get(i), month.get(i)) {
                (Some(s), Some(m)) => coverage.is_closed(s, m, departement.get(i)),
                _ => false,
            };
            i64::from(!closed)
        })
        .collect();
    Ok(Column::new("open".into(), open))
}

/// The dimensions of a cell: every column of the counts table but the two measures.
const CELL_COLUMNS: [&str; 13] = [
    "year", "month", "departement", "iccs", "cyber", "victim_type", "channel", "source", "unit", "iccs_section",
    "iccs_division", "iccs_group", "region",
];

/// Sums counts files (and a previous netted table) per cell, drops cells that net to
/// nothing, and flags the cells not yet closed. Pure over its inputs.
pub fn net(frames: Vec<LazyFrame>, coverage: &Coverage) -> Result<DataFrame, QueryError> {
    let frame = if frames.is_empty() { empty_counts() } else { concat(frames, UnionArgs::default())? };
    let keys: Vec<Expr> = CELL_COLUMNS.iter().map(|c| col(*c)).collect();
    let mut cells = frame
        .group_by(keys)
        .agg([col("count").sum().alias("count"), col("loss_cents").sum().alias("loss_cents")])
        // An amendment that only changes the loss leaves a count of 0: keep it.
        .filter(col("count").neq(lit(0i64)).or(col("loss_cents").neq(lit(0i64))))
        .collect()?;
    let open = open_flags(&cells, coverage)?;
    cells.with_column(open)?;
    Ok(cells)
}

/// Text dimensions of a cell, coded for requests.
const TEXT_COLUMNS: [&str; 11] = [
    "month", "departement", "iccs", "victim_type", "channel", "source", "unit", "iccs_section", "iccs_division",
    "iccs_group", "region",
];

/// Netted cells with every text dimension dictionary-encoded: sorted distinct values, and per
/// cell the index of its value. Requests filter and group on small integers; sorted
/// dictionaries keep order (an ICCS subtree or a month range is a range of codes), so only
/// the few result rows are decoded back to text.
pub struct Coded {
    frame: DataFrame,
    dictionaries: HashMap<&'static str, Vec<String>>,
}

impl Coded {
    pub fn encode(cells: &DataFrame) -> Result<Coded, QueryError> {
        let mut columns: Vec<Column> = Vec::new();
        let mut dictionaries = HashMap::new();
        for name in TEXT_COLUMNS {
            let text = cells.column(name)?.str()?;
            let mut values: Vec<&str> = text.iter().flatten().collect::<HashSet<_>>().into_iter().collect();
            values.sort_unstable();
            let index: HashMap<&str, u32> = values.iter().enumerate().map(|(i, v)| (*v, i as u32)).collect();
            let codes: Vec<Option<u32>> = text.iter().map(|v| v.map(|v| index[v])).collect();
            columns.push(Column::new(name.into(), codes));
            dictionaries.insert(name, values.into_iter().map(str::to_owned).collect());
        }
        for name in ["year", "cyber", "count", "loss_cents", "open"] {
            columns.push(cells.column(name)?.clone());
        }
        Ok(Coded { frame: DataFrame::new_infer_height(columns)?, dictionaries })
    }

    fn dictionary(&self, name: &str) -> Option<&Vec<String>> {
        self.dictionaries.get(name)
    }

    /// Codes of the values in `[low, high)` of a text dimension (its dictionary is sorted).
    fn code_range(&self, name: &str, low: &str, high: &str) -> (u32, u32) {
        let values = self.dictionary(name).map(Vec::as_slice).unwrap_or_default();
        let start = values.partition_point(|v| v.as_str() < low);
        let end = values.partition_point(|v| v.as_str() < high);
        (start as u32, end as u32)
    }

    /// A code column of a result back to text.
    fn decode(&self, frame: &mut DataFrame, name: &str) -> Result<(), QueryError> {
        let Some(values) = self.dictionary(name) else { return Ok(()) };
        let text: Vec<Option<&str>> =
            frame.column(name)?.u32()?.iter().map(|code| code.map(|c| values[c as usize].as_str())).collect();
        frame.with_column(Column::new(name.into(), text))?;
        Ok(())
    }
}

/// "YYYY-MM" as months since year 0.
fn month_index(month: &str) -> Option<i32> {
    Some(month.get(..4)?.parse::<i32>().ok()? * 12 + month.get(5..7)?.parse::<i32>().ok()? - 1)
}

/// Filters the netted cells, checks units, groups and sums, then adds provisional flags and
/// rates. Pure over its inputs.
pub fn aggregate(coded: &Coded, request: &CountsRequest) -> Result<DataFrame, QueryError> {
    let mut frame = coded.frame.clone().lazy();
    // Months are "YYYY-MM" and their dictionary is sorted: a range of months is a range of codes.
    if request.from.is_some() || request.to.is_some() {
        let (low, _) = coded.code_range("month", request.from.as_deref().unwrap_or(""), "");
        let (_, high) = coded.code_range("month", "", &format!("{}\u{7f}", request.to.as_deref().unwrap_or("\u{7f}")));
        frame = frame.filter(col("month").gt_eq(lit(low)).and(col("month").lt(lit(high))));
    }
    for (dimension, values) in &request.filters {
        let name = dimension.name();
        let predicate = match dimension {
            Dimension::Iccs => any_of(name, values, |c, v| {
                // Codes are digit strings: the subtree of "09" is exactly "09" ≤ code < "0:".
                let mut upper = v.as_bytes().to_vec();
                *upper.last_mut().expect("non-empty") += 1;
                let upper = String::from_utf8(upper).expect("ascii");
                let (low, high) = coded.code_range(name, v, &upper);
                c.clone().gt_eq(lit(low)).and(c.lt(lit(high)))
            }),
            Dimension::Cyber => any_of(name, values, |c, v| c.eq(lit(v == "true"))),
            Dimension::Year => any_of(name, values, |c, v| c.eq(lit(v.parse::<i32>().unwrap_or_default()))),
            _ => any_of(name, values, |c, v| match coded.dictionary(name).and_then(|d| d.binary_search_by(|x| x.as_str().cmp(v)).ok()) {
                Some(code) => c.eq(lit(code as u32)),
                None => lit(false),
            }),
        };
        frame = frame.filter(predicate);
    }
    // Grouped by unit as well: when `by` has no unit, more than one unit in the result means
    // the request would add different things together.
    let by_unit = request.by.contains(&Dimension::Unit);
    let mut keys: Vec<Expr> = request.by.iter().map(|d| col(d.name())).collect();
    if !by_unit {
        keys.push(col("unit"));
    }
    let sums = [
        col("count").sum().alias("count"),
        col("loss_cents").sum().alias("loss_cents"),
        col("open").sum().alias("open"),
    ];
    let mut result = frame.group_by(keys).agg(sums).collect()?;
    coded.decode(&mut result, "unit")?;
    let mut units: Vec<String> = result.column("unit")?.str()?.iter().flatten().map(str::to_owned).collect();
    units.sort();
    units.dedup();
    if units.len() > 1 && !by_unit {
        return Err(QueryError::MixedUnits(units.join(", ")));
    }
    if request.by.is_empty() && result.height() == 0 {
        // A national total with no data is a zero, not an empty answer.
        result = DataFrame::new_infer_height(vec![
            Column::new("count".into(), vec![0i64]),
            Column::new("loss_cents".into(), vec![0i64]),
            Column::new("open".into(), vec![0i64]),
        ])?;
    }
    if !request.by.is_empty() {
        // A cell whose deltas net to zero is no incident: drop it from grouped answers.
        let by_names: Vec<PlSmallStr> = request.by.iter().map(|d| PlSmallStr::from(d.name())).collect();
        // Codes sort as their text does (sorted dictionaries), units aside (already text).
        result = result
            .lazy()
            .filter(col("count").neq(lit(0i64)))
            .sort(by_names, SortMultipleOptions::default().with_nulls_last(true))
            .collect()?;
        for dimension in &request.by {
            if *dimension != Dimension::Unit {
                coded.decode(&mut result, dimension.name())?;
            }
        }
    }
    let height = result.height();
    if !by_unit {
        // Every row says what it counts; with no data, the unit asked for (if any).
        let unit = units.first().cloned().or_else(|| request.filters.get(&Dimension::Unit).and_then(|u| u.first().cloned()));
        result.with_column(Column::new("unit".into(), vec![unit; height]))?;
    }
    // Euros from exact integer cents with one correctly rounded division, so 1234.56 prints
    // as 1234.56 and not as the sum of binary fractions.
    let euros: Float64Chunked = result.column("loss_cents")?.i64()?.iter().map(|c| c.map(|c| c as f64 / 100.0)).collect();
    result.with_column(euros.into_series().with_name("loss_eur".into()).into_column())?;
    let provisional: Vec<bool> = result.column("open")?.i64()?.iter().map(|open| open.unwrap_or(0) > 0).collect();
    result.with_column(Column::new("provisional".into(), provisional))?;
    let mut order: Vec<&str> = request.by.iter().map(|d| d.name()).collect();
    if !request.by.contains(&Dimension::Unit) {
        order.push("unit");
    }
    order.extend(["count", "loss_eur", "provisional"]);
    let mut result = result.select(order)?;
    if request.rate == Some(Rate::Per100k) {
        add_rates(&mut result, request)?;
    }
    Ok(result)
}

/// The year whose population a row is divided by: the row's own year when time is grouped,
/// else the last year of the requested range, else the latest legal population.
fn row_year(result: &DataFrame, request: &CountsRequest, i: usize) -> Result<Option<i32>, QueryError> {
    if request.by.contains(&Dimension::Year) {
        return Ok(result.column("year")?.i32()?.get(i));
    }
    if request.by.contains(&Dimension::Month) {
        return Ok(result.column("month")?.str()?.get(i).and_then(|m| m[..4].parse().ok()));
    }
    let (from, to) = request.year_range();
    Ok(to.or(from))
}

/// Adds `population`, `population_year` and `rate_per_100k` where the grouping allows: a
/// geography in `by`, or the whole of France (or the filtered départements/régions).
fn add_rates(result: &mut DataFrame, request: &CountsRequest) -> Result<(), QueryError> {
    let geography = Geography::france();
    let height = result.height();
    let latest = i32::MAX;
    let mut population: Vec<Option<i64>> = Vec::with_capacity(height);
    let mut population_year: Vec<Option<i32>> = Vec::with_capacity(height);
    let departements = if request.by.contains(&Dimension::Departement) { Some(result.column("departement")?.str()?.clone()) } else { None };
    let regions = if request.by.contains(&Dimension::Region) { Some(result.column("region")?.str()?.clone()) } else { None };
    for i in 0..height {
        let year = row_year(result, request, i)?.unwrap_or(latest);
        let figure = if let Some(departements) = &departements {
            departements.get(i).and_then(|d| geography.population(d, year))
        } else if let Some(regions) = &regions {
            regions.get(i).and_then(|r| geography.region_population(r, year))
        } else if let Some(listed) = request.filters.get(&Dimension::Departement) {
            sum_populations(listed.iter().map(|d| geography.population(d, year)))
        } else if let Some(listed) = request.filters.get(&Dimension::Region) {
            sum_populations(listed.iter().map(|r| geography.region_population(r, year)))
        } else {
            geography.national_population(year)
        };
        population.push(figure.map(|(p, _)| p as i64));
        population_year.push(figure.map(|(_, y)| y));
    }
    let counts = result.column("count")?.i64()?.clone();
    let rates: Vec<Option<f64>> = (0..height)
        .map(|i| match (counts.get(i), population[i]) {
            (Some(count), Some(pop)) if pop > 0 => Some(count as f64 * 100_000.0 / pop as f64),
            _ => None,
        })
        .collect();
    result.with_column(Column::new("population".into(), population))?;
    result.with_column(Column::new("population_year".into(), population_year))?;
    result.with_column(Column::new("rate_per_100k".into(), rates))?;
    Ok(())
}

/// Sum of several populations, using the same (oldest) reference year for all; `None` if any
/// is unknown.
fn sum_populations(figures: impl Iterator<Item = Option<(u64, i32)>>) -> Option<(u64, i32)> {
    let mut total = 0;
    let mut year = i32::MAX;
    for figure in figures {
        let (population, used) = figure?;
        total += population;
        year = year.min(used);
    }
    (year != i32::MAX).then_some((total, year))
}
