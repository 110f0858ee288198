//! Count aggregation over the committed counts table with Polars. Counts files hold deltas
//! (or compacted snapshots) per cell; summing every file of the manifest gives the totals.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use observatory_reference::Geography;
use observatory_store::{DataFile, Manifest, Projection, StoreError, TableId};
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
    /// A filter names a source that has sent nothing to this projection.
    #[error(
        "source='{source_id}' has sent nothing to this projection (as of sequence {sequence}); known sources: {known}"
    )]
    UnknownSource { source_id: String, sequence: u64, known: String },
    /// An answer would be larger than the service serves in one response.
    #[error("{0}")]
    TooLarge(String),
    /// A loss total does not fit in 64-bit cents: summing it would be wrong.
    #[error(
        "the loss totals of this projection exceed what 64-bit integer cents can hold ({0}); \
         per-record losses are bounded at ingest, so this means corrupt or hostile data: check the feeds"
    )]
    LossOverflow(String),
}

impl QueryError {
    /// Whether the request (not the service) is at fault.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            QueryError::MixedUnits(_) | QueryError::UnknownSource { .. } | QueryError::TooLarge(_)
        )
    }
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
    /// Every (source, month) with at least one live cell.
    data_months: Arc<HashSet<(String, String)>>,
}

impl Netted {
    fn empty() -> Result<Netted, QueryError> {
        let frame = net(Vec::new(), &Coverage::default())?;
        let coded = Arc::new(Coded::encode(&frame)?);
        Ok(Netted {
            version: 0,
            counts_files: HashSet::new(),
            coverage_files: Vec::new(),
            coverage: Arc::default(),
            frame,
            coded,
            data_months: Arc::default(),
        })
    }

    /// What a request is answered against: the cells, the closures and where data exists.
    fn context(&self) -> Context {
        Context {
            coded: self.coded.clone(),
            coverage: self.coverage.clone(),
            data_months: self.data_months.clone(),
        }
    }
}

/// The pieces of one manifest's netting a request reads.
#[derive(Clone)]
pub struct Context {
    pub coded: Arc<Coded>,
    pub coverage: Arc<Coverage>,
    pub data_months: Arc<HashSet<(String, String)>>,
}

impl Context {
    /// Every source known to the projection: it sent data or closed a month.
    pub fn sources(&self) -> Vec<String> {
        let mut sources: Vec<String> = self
            .data_months
            .iter()
            .map(|(s, _)| s.clone())
            .chain(self.coverage.sources().map(str::to_owned))
            .collect();
        sources.sort();
        sources.dedup();
        sources
    }

    /// First and last month with data or a closure.
    pub fn known_months(&self) -> Option<(String, String)> {
        let months = self
            .data_months
            .iter()
            .map(|(_, m)| m.as_str())
            .chain(self.coverage.months().map(|(_, m)| m));
        let (mut first, mut last): (Option<&str>, Option<&str>) = (None, None);
        for m in months {
            first = Some(first.map_or(m, |f| f.min(m)));
            last = Some(last.map_or(m, |l| l.max(m)));
        }
        Some((first?.to_owned(), last?.to_owned()))
    }

    /// `closed`, `partial`, `open` or `missing` for one source and month, as `/v1/coverage`.
    pub fn status(&self, source: &str, month: &str) -> (&'static str, Option<Vec<String>>) {
        match self.coverage.entry(source, month) {
            Some(None) => ("closed", None),
            Some(Some(listed)) => {
                let mut listed: Vec<String> = listed.iter().cloned().collect();
                listed.sort();
                ("partial", Some(listed))
            }
            None if self.data_months.contains(&(source.to_owned(), month.to_owned())) => {
                ("open", None)
            }
            None => ("missing", None),
        }
    }

    /// Refuses a source filter naming a source the projection has never heard of.
    fn check_sources(&self, request: &CountsRequest, sequence: u64) -> Result<(), QueryError> {
        let Some(wanted) = request.filters.get(&Dimension::Source) else { return Ok(()) };
        let known = self.sources();
        match wanted.iter().find(|s| !known.contains(s)) {
            Some(unknown) => Err(QueryError::UnknownSource {
                source_id: unknown.clone(),
                sequence,
                known: if known.is_empty() { "none yet".to_owned() } else { known.join(", ") },
            }),
            None => Ok(()),
        }
    }
}

impl CountsEngine {
    pub fn new(projection: Projection) -> CountsEngine {
        CountsEngine {
            projection,
            netted: tokio::sync::Mutex::new(None),
            poll_interval: Duration::from_millis(20),
        }
    }

    /// The serving manifest, waiting up to `wait` for it to reach `min_sequence`.
    pub async fn manifest(
        &self,
        min_sequence: Option<u64>,
        wait: Duration,
    ) -> Result<Option<Manifest>, QueryError> {
        let started = Instant::now();
        loop {
            let manifest = self.projection.serving_manifest().await?;
            let reached = manifest.as_ref().map_or(0, |m| m.last_sequence);
            match min_sequence {
                Some(wanted) if reached < wanted => {
                    if started.elapsed() >= wait {
                        return Err(QueryError::NotYet {
                            reached,
                            wanted,
                            waited: started.elapsed(),
                        });
                    }
                    tokio::time::sleep(self.poll_interval).await;
                }
                _ => return Ok(manifest),
            }
        }
    }

    async fn load(&self, version: u32, file: &DataFile) -> Result<DataFrame, QueryError> {
        let path = self.projection.object_path(version, &file.path);
        let bytes = self.projection.store().get(&path).await?.ok_or_else(|| QueryError::Read {
            path: path.to_string(),
            message: "named by the manifest but missing".into(),
        })?;
        ParquetReader::new(std::io::Cursor::new(bytes))
            .finish()
            .map_err(|e| QueryError::Read { path: path.to_string(), message: e.to_string() })
    }

    /// The netted counts of `manifest`: the cached ones when they match it, extended by the
    /// new files when the manifest only added some (the usual flush), else built anew (a
    /// compaction or a rebuild replaced files).
    async fn netted(&self, manifest: &Manifest) -> Result<Arc<Netted>, QueryError> {
        let mut cached = self.netted.lock().await;
        let counts_files: HashSet<String> =
            manifest.files(&TableId::Counts).iter().map(|f| f.path.clone()).collect();
        let coverage_files: Vec<String> =
            manifest.files(&TableId::Coverage).iter().map(|f| f.path.clone()).collect();
        if let Some(netted) = cached.as_ref() {
            if netted.version == manifest.version
                && netted.counts_files == counts_files
                && netted.coverage_files == coverage_files
            {
                return Ok(netted.clone());
            }
        }
        let previous = cached
            .take()
            .filter(|n| n.version == manifest.version && n.counts_files.is_subset(&counts_files));
        let coverage = match &previous {
            Some(netted) if netted.coverage_files == coverage_files => netted.coverage.clone(),
            _ => {
                let mut coverage = Coverage::default();
                for file in manifest.files(&TableId::Coverage) {
                    coverage.add(&self.load(manifest.version, file).await?)?;
                }
                Arc::new(coverage)
            }
        };
        let mut frames = Vec::new();
        if let Some(netted) = &previous {
            frames
                .push(netted.frame.clone().lazy().select([all().exclude_cols(["open"]).as_expr()]));
        }
        for file in manifest.files(&TableId::Counts) {
            if previous.as_ref().is_some_and(|n| n.counts_files.contains(&file.path)) {
                continue;
            }
            frames.push(self.load(manifest.version, file).await?.lazy());
        }
        let started = Instant::now();
        let for_task = coverage.clone();
        let (frame, coded, data_months) =
            tokio::task::spawn_blocking(move || -> Result<_, QueryError> {
                let frame = net(frames, &for_task)?;
                let coded = Coded::encode(&frame)?;
                let data_months = data_months(&frame)?;
                Ok((frame, Arc::new(coded), Arc::new(data_months)))
            })
            .await
            .map_err(|e| QueryError::Compute(format!("netting task failed: {e}")))??;
        tracing::debug!(
            version = manifest.version,
            sequence = manifest.last_sequence,
            cells = frame.height(),
            incremental = previous.is_some(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "counts netted"
        );
        let netted = Arc::new(Netted {
            version: manifest.version,
            counts_files,
            coverage_files,
            coverage,
            frame,
            coded,
            data_months,
        });
        *cached = Some(netted.clone());
        Ok(netted)
    }

    /// Per source and month: `closed` (declared complete), `partial` (some départements
    /// closed), `open` (data but not closed) or `missing` (neither). At most
    /// [`MAX_COVERAGE_ROWS`] rows: a larger answer is an error saying so, never a silent cut.
    pub async fn coverage(
        &self,
        from: Option<&str>,
        to: Option<&str>,
        sources: Option<&[String]>,
    ) -> Result<(AsOf, Vec<serde_json::Value>), QueryError> {
        // One manifest for both: the data months and the closures must describe the same state.
        let manifest = self.projection.serving_manifest().await?;
        let as_of = as_of(manifest.as_ref());
        let context = self.snapshot(manifest.as_ref()).await?.context();
        let mut all_sources = context.sources();
        if let Some(wanted) = sources {
            let request = CountsRequest {
                filters: [(Dimension::Source, wanted.to_vec())].into_iter().collect(),
                ..CountsRequest::default()
            };
            context.check_sources(&request, as_of.sequence)?;
            all_sources.retain(|s| wanted.contains(s));
        }
        let known = context.known_months();
        let first = from.map(str::to_owned).or_else(|| known.as_ref().map(|k| k.0.clone()));
        let last = to.map(str::to_owned).or_else(|| known.as_ref().map(|k| k.1.clone()));
        let months = match (first, last) {
            (Some(first), Some(last)) => {
                let span = month_index(&last).unwrap_or(0) - month_index(&first).unwrap_or(0) + 1;
                let rows = span.max(0) as u64 * all_sources.len() as u64;
                if rows > MAX_COVERAGE_ROWS {
                    return Err(QueryError::TooLarge(format!(
                        "{first} to {last} is {span} months for {} sources, {rows} rows; at most {MAX_COVERAGE_ROWS} rows \
                         per answer: narrow from/to or choose source=",
                        all_sources.len()
                    )));
                }
                month_range(&first, &last)
            }
            _ => Vec::new(),
        };
        let mut rows = Vec::with_capacity(months.len() * all_sources.len());
        for source in &all_sources {
            for month in &months {
                let (status, closed) = context.status(source, month);
                let mut row =
                    serde_json::json!({"source": source, "month": month, "status": status});
                if let Some(closed) = closed {
                    row["closed_departements"] = serde_json::json!(closed);
                }
                rows.push(row);
            }
        }
        Ok((as_of, rows))
    }

    pub async fn counts(
        &self,
        request: &CountsRequest,
        wait: Duration,
    ) -> Result<CountsAnswer, QueryError> {
        let manifest = self.manifest(request.min_sequence, wait).await?;
        self.counts_on(manifest.as_ref(), request).await
    }

    /// The netting of `manifest` (an empty one before the first manifest).
    async fn snapshot(&self, manifest: Option<&Manifest>) -> Result<Arc<Netted>, QueryError> {
        match manifest {
            Some(manifest) => self.netted(manifest).await,
            None => Ok(Arc::new(Netted::empty()?)),
        }
    }

    /// The answer to `request` on `manifest`.
    async fn counts_on(
        &self,
        manifest: Option<&Manifest>,
        request: &CountsRequest,
    ) -> Result<CountsAnswer, QueryError> {
        let as_of = as_of(manifest);
        let context = self.snapshot(manifest).await?.context();
        context.check_sources(request, as_of.sequence)?;
        // Polars computes on its own threads and blocks: keep it off the async workers.
        let request = request.clone();
        let frame = tokio::task::spawn_blocking(move || aggregate(&context, &request))
            .await
            .map_err(|e| QueryError::Compute(format!("aggregation task failed: {e}")))??;
        Ok(CountsAnswer { as_of, frame })
    }
}

/// The most rows `/v1/coverage` answers at once (about 80 years of 100 sources).
pub const MAX_COVERAGE_ROWS: u64 = 100_000;

fn as_of(manifest: Option<&Manifest>) -> AsOf {
    AsOf {
        sequence: manifest.map_or(0, |m| m.last_sequence),
        version: manifest.map_or(0, |m| m.version),
        committed_at: manifest.map(|m| m.committed_at),
        reference: manifest.map(|m| m.reference.clone()).unwrap_or_default(),
    }
}

/// Every (source, month) that has a live cell.
fn data_months(cells: &DataFrame) -> Result<HashSet<(String, String)>, QueryError> {
    let pairs =
        cells.select(["source", "month"])?.unique_stable(None, UniqueKeepStrategy::First, None)?;
    let source = pairs.column("source")?.str()?;
    let month = pairs.column("month")?.str()?;
    Ok(source
        .iter()
        .zip(month.iter())
        .filter_map(|(s, m)| Some((s?.to_owned(), m?.to_owned())))
        .collect())
}

/// Months from `first` to `last` inclusive, both "YYYY-MM".
fn month_range(first: &str, last: &str) -> Vec<String> {
    let (Some(a), Some(b)) = (month_index(first), month_index(last)) else { return Vec::new() };
    (a..=b).map(month_label).collect()
}

fn month_label(index: i32) -> String {
    format!("{:04}-{:02}", index / 12, index % 12 + 1)
}

fn any_of(column: &str, values: &[String], matcher: impl Fn(Expr, &str) -> Expr) -> Expr {
    values
        .iter()
        .map(|v| matcher(col(column), v))
        .reduce(|a, b| a.or(b))
        .expect("filters are non-empty")
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
        self.closed
            .iter()
            .flat_map(|(s, months)| months.keys().map(move |m| (s.as_str(), m.as_str())))
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
    "year",
    "month",
    "departement",
    "iccs",
    "cyber",
    "victim_type",
    "channel",
    "source",
    "unit",
    "iccs_section",
    "iccs_division",
    "iccs_group",
    "region",
];

/// Sums counts files (and a previous netted table) per cell, drops cells that net to
/// nothing, and flags the cells not yet closed. Pure over its inputs.
pub fn net(frames: Vec<LazyFrame>, coverage: &Coverage) -> Result<DataFrame, QueryError> {
    let frame =
        if frames.is_empty() { empty_counts() } else { concat(frames, UnionArgs::default())? };
    let keys: Vec<Expr> = CELL_COLUMNS.iter().map(|c| col(*c)).collect();
    let mut cells = frame
        .group_by(keys)
        .agg([col("count").sum().alias("count"), col("loss_cents").sum().alias("loss_cents")])
        // An amendment that only changes the loss leaves a count of 0: keep it.
        .filter(col("count").neq(lit(0i64)).or(col("loss_cents").neq(lit(0i64))))
        .collect()?;
    check_losses(&cells)?;
    let open = open_flags(&cells, coverage)?;
    cells.with_column(open)?;
    Ok(cells)
}

/// Deltas are summed with wrapping arithmetic, which is exact when the true totals fit in i64.
/// Losses are never negative, so a negative cell, or cells whose sum exceeds i64 (which any
/// request's sum could reach), mean a total that did not fit.
fn check_losses(cells: &DataFrame) -> Result<(), QueryError> {
    let mut total: i128 = 0;
    for loss in cells.column("loss_cents")?.i64()?.iter().flatten() {
        if loss < 0 {
            return Err(QueryError::LossOverflow(format!("a cell totals {loss} cents")));
        }
        total += i128::from(loss);
    }
    if total > i128::from(i64::MAX) {
        return Err(QueryError::LossOverflow(format!("all cells total {total} cents")));
    }
    Ok(())
}

/// Text dimensions of a cell, coded for requests.
const TEXT_COLUMNS: [&str; 11] = [
    "month",
    "departement",
    "iccs",
    "victim_type",
    "channel",
    "source",
    "unit",
    "iccs_section",
    "iccs_division",
    "iccs_group",
    "region",
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
            let mut values: Vec<&str> =
                text.iter().flatten().collect::<HashSet<_>>().into_iter().collect();
            values.sort_unstable();
            let index: HashMap<&str, u32> =
                values.iter().enumerate().map(|(i, v)| (*v, i as u32)).collect();
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
        let text: Vec<Option<&str>> = frame
            .column(name)?
            .u32()?
            .iter()
            .map(|code| code.map(|c| values[c as usize].as_str()))
            .collect();
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
pub fn aggregate(context: &Context, request: &CountsRequest) -> Result<DataFrame, QueryError> {
    let coded = &*context.coded;
    let mut frame = coded.frame.clone().lazy();
    // Months are "YYYY-MM" and their dictionary is sorted: a range of months is a range of codes.
    if request.from.is_some() || request.to.is_some() {
        let (low, _) = coded.code_range("month", request.from.as_deref().unwrap_or(""), "");
        let (_, high) = coded.code_range(
            "month",
            "",
            &format!("{}\u{7f}", request.to.as_deref().unwrap_or("\u{7f}")),
        );
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
            Dimension::Year => {
                any_of(name, values, |c, v| c.eq(lit(v.parse::<i32>().unwrap_or_default())))
            }
            _ => any_of(name, values, |c, v| {
                match coded
                    .dictionary(name)
                    .and_then(|d| d.binary_search_by(|x| x.as_str().cmp(v)).ok())
                {
                    Some(code) => c.eq(lit(code as u32)),
                    None => lit(false),
                }
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
    // What an ungrouped rate covers in time when from/to leave it open: the months with data.
    let time_grouped =
        request.by.contains(&Dimension::Year) || request.by.contains(&Dimension::Month);
    let data_span = if request.rate.is_some() && !time_grouped {
        let span = frame
            .clone()
            .select([col("month").min().alias("first"), col("month").max().alias("last")])
            .collect()?;
        let code = |name: &str| -> Result<Option<String>, QueryError> {
            let code = span.column(name)?.u32()?.get(0);
            Ok(code.and_then(|c| coded.dictionary("month").map(|d| d[c as usize].clone())))
        };
        code("first")?.zip(code("last")?)
    } else {
        None
    };
    let mut result = frame.group_by(keys).agg(sums).collect()?;
    coded.decode(&mut result, "unit")?;
    let mut units: Vec<String> =
        result.column("unit")?.str()?.iter().flatten().map(str::to_owned).collect();
    units.sort();
    units.dedup();
    if units.len() > 1 && !by_unit {
        return Err(QueryError::MixedUnits(units.join(", ")));
    }
    if request.by.is_empty() && result.height() == 0 {
        // A total with no data is a zero only where every source has closed every month it
        // spans; otherwise nothing was reported, which is not zero: provisional.
        let open = i64::from(!zero_is_final(context, request));
        result = DataFrame::new_infer_height(vec![
            Column::new("count".into(), vec![0i64]),
            Column::new("loss_cents".into(), vec![0i64]),
            Column::new("open".into(), vec![open]),
        ])?;
    }
    if !request.by.is_empty() {
        // A cell whose deltas net to zero is no incident: drop it from grouped answers.
        let by_names: Vec<PlSmallStr> =
            request.by.iter().map(|d| PlSmallStr::from(d.name())).collect();
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
        let unit = units
            .first()
            .cloned()
            .or_else(|| request.filters.get(&Dimension::Unit).and_then(|u| u.first().cloned()));
        result.with_column(Column::new("unit".into(), vec![unit; height]))?;
    }
    // Euros from exact integer cents with one correctly rounded division, so 1234.56 prints
    // as 1234.56 and not as the sum of binary fractions.
    let euros: Float64Chunked =
        result.column("loss_cents")?.i64()?.iter().map(|c| c.map(|c| c as f64 / 100.0)).collect();
    result.with_column(euros.into_series().with_name("loss_eur".into()).into_column())?;
    let provisional: Vec<bool> =
        result.column("open")?.i64()?.iter().map(|open| open.unwrap_or(0) > 0).collect();
    result.with_column(Column::new("provisional".into(), provisional))?;
    let mut order: Vec<&str> = request.by.iter().map(|d| d.name()).collect();
    if !request.by.contains(&Dimension::Unit) {
        order.push("unit");
    }
    order.extend(["count", "loss_eur", "provisional"]);
    let mut result = result.select(order)?;
    if request.rate == Some(Rate::Per100k) {
        add_rates(&mut result, request, data_span)?;
    }
    Ok(result)
}

/// Whether a zero total is final: every source the request covers (its `source=` filter, or
/// every known source) has closed every month of the range (the request's, or the months the
/// projection knows), for the départements the request selects.
fn zero_is_final(context: &Context, request: &CountsRequest) -> bool {
    let sources = match request.filters.get(&Dimension::Source) {
        Some(listed) => listed.clone(),
        None => context.sources(),
    };
    let known = context.known_months();
    let (Some(first), Some(last)) = (
        request.from.clone().or_else(|| known.as_ref().map(|k| k.0.clone())),
        request.to.clone().or_else(|| known.as_ref().map(|k| k.1.clone())),
    ) else {
        return false;
    };
    // Months named by a filter count whether or not anything is known of them.
    let within = |m: &String| {
        request.from.as_ref().is_none_or(|f| f <= m) && request.to.as_ref().is_none_or(|t| m <= t)
    };
    let months: Vec<String> =
        match (request.filters.get(&Dimension::Month), request.filters.get(&Dimension::Year)) {
            (Some(listed), _) => listed.iter().filter(|m| within(m)).cloned().collect(),
            (None, Some(years)) => years
                .iter()
                .flat_map(|y| month_range(&format!("{y}-01"), &format!("{y}-12")))
                .filter(within)
                .collect(),
            (None, None) => month_range(&first, &last),
        };
    let geography = Geography::france();
    let listed = request.filters.get(&Dimension::Departement);
    let regions = request.filters.get(&Dimension::Region);
    let departements: Option<Vec<&str>> = (listed.is_some() || regions.is_some()).then(|| {
        geography
            .departements()
            .iter()
            .filter(|d| {
                listed.is_none_or(|l| l.contains(&d.code))
                    && regions.is_none_or(|r| r.contains(&d.region))
            })
            .map(|d| d.code.as_str())
            .collect()
    });
    !sources.is_empty()
        && sources.iter().all(|source| {
            months.iter().all(|month| match &departements {
                None => context.coverage.is_closed(source, month, None),
                Some(list) => {
                    list.iter().all(|d| context.coverage.is_closed(source, month, Some(d)))
                }
            })
        })
}

/// The months a row counts, as "YYYY-MM" bounds: its month, its year within from/to, or the
/// requested range (from/to, else the months with data) when time is not grouped.
fn row_period(
    result: &DataFrame,
    request: &CountsRequest,
    data_span: &Option<(String, String)>,
    i: usize,
) -> Result<Option<(String, String)>, QueryError> {
    if request.by.contains(&Dimension::Month) {
        return Ok(result.column("month")?.str()?.get(i).map(|m| (m.to_owned(), m.to_owned())));
    }
    if request.by.contains(&Dimension::Year) {
        return Ok(result.column("year")?.i32()?.get(i).map(|y| {
            let first = format!("{y:04}-01").max(request.from.clone().unwrap_or_default());
            let last = format!("{y:04}-12");
            let last = request.to.clone().map_or(last.clone(), |to| to.min(last));
            (first, last)
        }));
    }
    let first = request.from.clone().or_else(|| data_span.as_ref().map(|s| s.0.clone()));
    let last = request.to.clone().or_else(|| data_span.as_ref().map(|s| s.1.clone()));
    Ok(first.zip(last))
}

/// The départements a row counts (every filter and the row's own geography applied), and
/// how the answer names them: `FR`, `region 11`, `departement 75`, `departements 75,92`.
fn row_area(
    geography: &Geography,
    request: &CountsRequest,
    departement: Option<&str>,
    region: Option<&str>,
) -> (Vec<String>, String) {
    let all = geography.departements();
    let listed = request.filters.get(&Dimension::Departement);
    let regions = request.filters.get(&Dimension::Region);
    let by_departement = request.by.contains(&Dimension::Departement);
    let by_region = request.by.contains(&Dimension::Region);
    let codes: Vec<String> = all
        .iter()
        .filter(|d| listed.is_none_or(|l| l.contains(&d.code)))
        .filter(|d| regions.is_none_or(|r| r.contains(&d.region)))
        .filter(|d| !by_departement || departement == Some(d.code.as_str()))
        .filter(|d| !by_region || region == Some(d.region.as_str()))
        .map(|d| d.code.clone())
        .collect();
    let label = if codes.len() == all.len() {
        "FR".to_owned()
    } else {
        // Whole régions are named as régions; anything else by its départements.
        let mut touched: Vec<&str> =
            all.iter().filter(|d| codes.contains(&d.code)).map(|d| d.region.as_str()).collect();
        touched.sort_unstable();
        touched.dedup();
        let covered: usize = touched.iter().map(|r| geography.departements_of(r).count()).sum();
        let plural = |n: usize| if n > 1 { "s" } else { "" };
        if covered == codes.len() && !codes.is_empty() && !by_departement {
            format!("region{} {}", plural(touched.len()), touched.join(","))
        } else {
            format!("departement{} {}", plural(codes.len()), codes.join(","))
        }
    };
    (codes, label)
}

/// Adds `population`, `population_year`, `population_area`, `rate_period` and
/// `rate_per_100k`: the row's count over `rate_period` divided by the legal population of the
/// départements the row counts (`population_area`: its département or région within the
/// geographic filters, else France) for the latest reference year not after the period's
/// end. Over a period other than one year the rate is cumulative, not annualised.
fn add_rates(
    result: &mut DataFrame,
    request: &CountsRequest,
    data_span: Option<(String, String)>,
) -> Result<(), QueryError> {
    let geography = Geography::france();
    let height = result.height();
    let mut population: Vec<Option<i64>> = Vec::with_capacity(height);
    let mut population_year: Vec<Option<i32>> = Vec::with_capacity(height);
    let mut areas: Vec<Option<String>> = Vec::with_capacity(height);
    let mut periods: Vec<Option<String>> = Vec::with_capacity(height);
    let departements = if request.by.contains(&Dimension::Departement) {
        Some(result.column("departement")?.str()?.clone())
    } else {
        None
    };
    let regions = if request.by.contains(&Dimension::Region) {
        Some(result.column("region")?.str()?.clone())
    } else {
        None
    };
    type Area = (Option<(u64, i32)>, String);
    let mut memo: HashMap<(Option<String>, Option<String>, i32), Area> = HashMap::new();
    for i in 0..height {
        let period = row_period(result, request, &data_span, i)?;
        let year = period.as_ref().and_then(|(_, last)| last[..4].parse().ok()).unwrap_or(i32::MAX);
        let departement = departements.as_ref().and_then(|d| d.get(i)).map(str::to_owned);
        let region = regions.as_ref().and_then(|r| r.get(i)).map(str::to_owned);
        let (figure, label) = memo
            .entry((departement.clone(), region.clone(), year))
            .or_insert_with(|| {
                let (codes, label) =
                    row_area(geography, request, departement.as_deref(), region.as_deref());
                let codes: Vec<&str> = codes.iter().map(String::as_str).collect();
                (geography.departements_population(&codes, year), label)
            })
            .clone();
        population.push(figure.map(|(p, _)| p as i64));
        population_year.push(figure.map(|(_, y)| y));
        areas.push(figure.map(|_| label));
        periods.push(period.map(|(first, last)| format!("{first}/{last}")));
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
    result.with_column(Column::new("population_area".into(), areas))?;
    result.with_column(Column::new("rate_period".into(), periods))?;
    result.with_column(Column::new("rate_per_100k".into(), rates))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One counts row: (month, département, iccs, source, unit, count, loss in cents).
    type Row<'a> = (&'a str, Option<&'a str>, &'a str, &'a str, &'a str, i64, i64);

    fn counts_file(rows: &[Row]) -> LazyFrame {
        let geography = Geography::france();
        let text = |name: &str, f: &dyn Fn(&Row) -> String| {
            Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>())
        };
        let optional = |name: &str, f: &dyn Fn(&Row) -> Option<String>| {
            Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>())
        };
        DataFrame::new_infer_height(vec![
            Column::new(
                "year".into(),
                rows.iter().map(|r| r.0[..4].parse::<i32>().unwrap()).collect::<Vec<_>>(),
            ),
            text("month", &|r| r.0.to_owned()),
            optional("departement", &|r| r.1.map(str::to_owned)),
            text("iccs", &|r| r.2.to_owned()),
            Column::new("cyber".into(), vec![true; rows.len()]),
            text("victim_type", &|_| "individual".to_owned()),
            text("channel", &|_| "email".to_owned()),
            text("source", &|r| r.3.to_owned()),
            text("unit", &|r| r.4.to_owned()),
            text("iccs_section", &|r| r.2[..2].to_owned()),
            optional("iccs_division", &|r| r.2.get(..4).map(str::to_owned)),
            optional("iccs_group", &|r| r.2.get(..5).map(str::to_owned)),
            optional("region", &|r| {
                r.1.and_then(|d| geography.region_of(d)).map(|g| g.code.clone())
            }),
            Column::new("count".into(), rows.iter().map(|r| r.5).collect::<Vec<_>>()),
            Column::new("loss_cents".into(), rows.iter().map(|r| r.6).collect::<Vec<_>>()),
        ])
        .unwrap()
        .lazy()
    }

    fn context(rows: &[Row], coverage: Coverage) -> Context {
        let frame = net(vec![counts_file(rows)], &coverage).unwrap();
        Context {
            coded: Arc::new(Coded::encode(&frame).unwrap()),
            data_months: Arc::new(data_months(&frame).unwrap()),
            coverage: Arc::new(coverage),
        }
    }

    fn request(query: &[(&str, &str)]) -> CountsRequest {
        CountsRequest::parse(
            &query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    fn closed(source: &str, month: &str) -> DataFrame {
        df!("source" => [source], "month" => [month], "departement" => [None::<&str>]).unwrap()
    }

    const ROWS: &[Row] = &[
        ("2024-01", Some("75"), "0701", "pn", "offence", 3, 1_000),
        ("2024-02", Some("92"), "0701", "pn", "offence", 1, 0),
        ("2024-02", Some("13"), "09031", "gn", "offence", 2, 250),
        ("2024-02", Some("75"), "0701", "pharos", "report", 4, 0),
        // An amendment moved one incident from 92 to 75: the deltas net out.
        ("2024-02", Some("92"), "0701", "pn", "offence", -1, 0),
        ("2024-02", Some("75"), "0701", "pn", "offence", 1, 0),
    ];

    #[test]
    fn deltas_net_per_cell_and_units_are_never_added() {
        let context = context(ROWS, Coverage::default());
        let frame =
            aggregate(&context, &request(&[("by", "departement"), ("unit", "offence")])).unwrap();
        let rows = crate::api::frame_rows(&frame);
        let counts: Vec<(String, i64)> = rows
            .iter()
            .map(|r| (r["departement"].as_str().unwrap().to_owned(), r["count"].as_i64().unwrap()))
            .collect();
        assert_eq!(counts, [("13".to_owned(), 2), ("75".to_owned(), 4)]);
        assert!(matches!(aggregate(&context, &request(&[])), Err(QueryError::MixedUnits(_))));
        let by_unit = aggregate(&context, &request(&[("by", "unit")])).unwrap();
        assert_eq!(by_unit.height(), 2);
    }

    #[test]
    fn the_rate_of_a_row_is_over_what_the_row_counts() {
        let context = context(ROWS, Coverage::default());
        let geography = Geography::france();
        let frame = aggregate(
            &context,
            &request(&[
                ("by", "region"),
                ("departement", "75,75"),
                ("unit", "offence"),
                ("rate", "per100k"),
                ("from", "2024"),
            ]),
        )
        .unwrap();
        let row = &crate::api::frame_rows(&frame)[0];
        let paris = geography.population("75", 2024).unwrap();
        assert_eq!(row["population"].as_u64(), Some(paris.0), "{row:?}");
        assert_eq!(row["population_area"], "departement 75");
        // `to` left open: up to the last month with data.
        assert_eq!(row["rate_period"], "2024-01/2024-02");
        assert_eq!(row["rate_per_100k"].as_f64(), Some(4.0 * 100_000.0 / paris.0 as f64));
        let frame =
            aggregate(&context, &request(&[("unit", "offence"), ("rate", "per100k")])).unwrap();
        let row = &crate::api::frame_rows(&frame)[0];
        assert_eq!(
            (row["population_area"].as_str(), row["rate_period"].as_str()),
            (Some("FR"), Some("2024-01/2024-02"))
        );
        assert_eq!(row["population"].as_u64(), geography.national_population(2024).map(|p| p.0));
    }

    #[test]
    fn a_zero_is_final_only_where_every_source_closed_every_month() {
        let mut coverage = Coverage::default();
        for (source, month) in
            [("pn", "2023-06"), ("gn", "2023-06"), ("pharos", "2023-06"), ("pn", "2023-07")]
        {
            coverage.add(&closed(source, month)).unwrap();
        }
        let context = context(ROWS, coverage);
        let provisional = |query: &[(&str, &str)]| {
            let frame = aggregate(&context, &request(query)).unwrap();
            let row = &crate::api::frame_rows(&frame)[0];
            assert_eq!(row["count"], 0, "{query:?}");
            row["provisional"].as_bool().unwrap()
        };
        assert!(!provisional(&[("unit", "offence"), ("month", "2023-06")]));
        assert!(
            provisional(&[("unit", "offence"), ("month", "2023-07")]),
            "gn and pharos did not close July"
        );
        assert!(!provisional(&[("unit", "offence"), ("month", "2023-07"), ("source", "pn")]));
        assert!(provisional(&[("unit", "offence"), ("month", "2023-05")]));
        assert!(provisional(&[
            ("unit", "offence"),
            ("from", "2023-06"),
            ("to", "2023-07"),
            ("iccs", "0903")
        ]));
    }

    #[test]
    fn loss_totals_that_do_not_fit_are_refused() {
        let big = i64::MAX / 2 + 1;
        let rows: &[Row] = &[
            ("2024-01", Some("75"), "0701", "pn", "offence", 1, big),
            ("2024-01", Some("92"), "0701", "pn", "offence", 1, big),
        ];
        assert!(matches!(
            net(vec![counts_file(rows)], &Coverage::default()),
            Err(QueryError::LossOverflow(_))
        ));
        let rows: &[Row] = &[("2024-01", Some("75"), "0701", "pn", "offence", 1, -5)];
        assert!(matches!(
            net(vec![counts_file(rows)], &Coverage::default()),
            Err(QueryError::LossOverflow(_))
        ));
    }

    #[test]
    fn month_ranges_are_never_cut() {
        assert_eq!(month_range("1900-01", "2100-12").len(), 201 * 12);
        assert_eq!(month_range("2024-11", "2025-02"), ["2024-11", "2024-12", "2025-01", "2025-02"]);
    }
}
