//! Count aggregation over the committed counts table with Polars. Counts files hold deltas
//! (or compacted snapshots) per cell; summing every file of the manifest gives the totals.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use observatory_reference::Geography;
use observatory_store::layout::{counts as stored, coverage as closures};
use observatory_store::{DataFile, Manifest, Projection, StoreError, TableId};
use polars::prelude::*;
use tokio::sync::watch;

use observatory_disclosure::Policy;

use crate::disclosure::{Disclosure, Tier};
use crate::error::ApiError;
use crate::request::{CountsRequest, Dimension, Rate};
use crate::serving::{AsOf, NotYet, ServingError, ServingManifest};
use crate::vintage::{Resolved, Vintages};

mod coded;
pub use coded::Coded;

/// The netting's own column: 1 where the cell's source has not closed its month and
/// département (summed, it says whether a row is provisional).
const OPEN: &str = "open";
/// The answer's count field (the API's name; the stored column is [`stored::COUNT`]).
const COUNT: &str = "count";

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading {path}: named by the manifest but missing")]
    Missing { path: String },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: PolarsError,
    },
    #[error("aggregation failed: {0}")]
    Compute(#[from] PolarsError),
    /// The blocking task computing an answer panicked or was cancelled.
    #[error("aggregation failed: {task} task failed: {source}")]
    Task {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error(transparent)]
    NotYet(#[from] NotYet),
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
    /// The projection is larger than the in-memory netting is built for.
    #[error("{0}; partition the projection (see ARCHITECTURE.md, things not done yet)")]
    Capacity(String),
    /// An answer could not be written in the format asked for (Arrow, Parquet).
    #[error("could not encode the answer: {0}")]
    Encode(String),
    /// The vintage asked for does not exist (404) or could not be read.
    #[error(transparent)]
    Vintage(#[from] crate::vintage::VintageError),
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

impl From<ServingError> for QueryError {
    fn from(error: ServingError) -> Self {
        match error {
            ServingError::Store(e) => QueryError::Store(e),
            ServingError::NotYet(e) => QueryError::NotYet(e),
        }
    }
}

pub struct CountsAnswer {
    pub as_of: AsOf,
    /// Grouping columns in request order, then `count` and `loss_eur`.
    pub frame: DataFrame,
}

/// Reads committed manifests and serves counts from the cells they add up to.
pub struct CountsEngine {
    serving: ServingManifest,
    /// The serving manifests' counts netted per cell, newest last: the one served and the one
    /// before it (a request resolved just before a swap still finds its own). Rebuilt, or
    /// extended, when the manifest changes, then shared by every request on that manifest.
    recent: std::sync::Mutex<VecDeque<Arc<Netted>>>,
    /// Held while a serving netting is built: one build at a time, never a lock a request on
    /// an already built netting waits for.
    building: tokio::sync::Mutex<()>,
    /// Nettings of other manifests (releases, `as_of`), newest use last: a release is asked
    /// for again and again, and must not evict the serving netting.
    vintages: tokio::sync::Mutex<Vec<(u32, u64, Arc<Netted>)>>,
}

/// How many non-serving nettings are kept.
const VINTAGE_CACHE: usize = 4;

/// How many serving nettings are kept: the served one and the one before it.
const RECENT_NETTINGS: usize = 2;

/// Frees nettings no cache holds any more, on a blocking thread. A netting of 10M events holds
/// millions of cells in many buffers; freed where it was evicted, it was freed under the lock
/// every request takes to find its netting, on an async worker that answers requests. (A
/// request still holding one frees it when it is done. Moving the free did not remove the slow
/// requests seen during nettings at 10M: BENCHMARKS.md, thirteenth steps.)
fn free_apart(evicted: Vec<Arc<Netted>>) {
    if !evicted.is_empty() {
        tokio::task::spawn_blocking(move || drop(evicted));
    }
}

/// How often [`CountsEngine::keep_netted`] looks for a new manifest (as often as a waiting
/// reader looks, within the projector's one-second flush).
const PREPARE_POLL: Duration = Duration::from_millis(50);

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

    /// Whether this netting is of exactly the files `manifest` names.
    fn describes(&self, manifest: &Manifest) -> bool {
        self.version == manifest.version
            && self.coverage_files
                == manifest
                    .files(&TableId::Coverage)
                    .iter()
                    .map(|f| f.path.clone())
                    .collect::<Vec<_>>()
            && self.counts_files.len() == manifest.files(&TableId::Counts).len()
            && manifest.files(&TableId::Counts).iter().all(|f| self.counts_files.contains(&f.path))
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
            serving: ServingManifest::new(projection),
            recent: std::sync::Mutex::new(VecDeque::new()),
            building: tokio::sync::Mutex::new(()),
            vintages: tokio::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn serving(&self) -> &ServingManifest {
        &self.serving
    }

    /// The serving manifest, waiting up to `wait` for it to reach `min_sequence`.
    pub async fn manifest(
        &self,
        min_sequence: Option<u64>,
        wait: Duration,
    ) -> Result<Option<Manifest>, QueryError> {
        Ok(self.serving.wait_for(min_sequence, wait).await?)
    }

    async fn load(&self, version: u32, file: &DataFile) -> Result<DataFrame, QueryError> {
        let projection = self.serving.projection();
        let path = projection.object_path(version, &file.path);
        let bytes = projection
            .store()
            .get(&path)
            .await?
            .ok_or_else(|| QueryError::Missing { path: path.to_string() })?;
        // Decoding a file takes tens of milliseconds: on an async worker it would hold back
        // the requests queued there, which a netting in the background must not.
        let mut frame = tokio::task::spawn_blocking(move || {
            ParquetReader::new(std::io::Cursor::new(bytes)).finish()
        })
        .await
        .map_err(|source| QueryError::Task { task: "reading a Parquet file", source })?
        .map_err(|source| QueryError::Read { path: path.to_string(), source })?;
        // Counts written before record keys existed: exact answers still add up; public ones
        // are refused for such a projection (its manifest names no record keys).
        if file.path.starts_with(&TableId::Counts.dir()) && frame.column(stored::KEY_SUM).is_err() {
            frame.with_column(Column::new(stored::KEY_SUM.into(), vec![0i64; frame.height()]))?;
        }
        Ok(frame)
    }

    /// The netted counts of `manifest`: the cached ones when they match it, extended by the
    /// new files when the manifest only added some (the usual flush), else built anew (a
    /// compaction or a rebuild replaced files).
    async fn netted(&self, manifest: &Manifest) -> Result<Arc<Netted>, QueryError> {
        if let Some(netted) = self.recent_for(manifest) {
            return Ok(netted);
        }
        let _building = self.building.lock().await;
        if let Some(netted) = self.recent_for(manifest) {
            return Ok(netted);
        }
        let newest = self.recent.lock().expect("nettings lock").back().cloned();
        let netted = self.build(manifest, newest).await?;
        let evicted: Vec<Arc<Netted>> = {
            let mut recent = self.recent.lock().expect("nettings lock");
            recent.push_back(netted.clone());
            let excess = recent.len().saturating_sub(RECENT_NETTINGS);
            recent.drain(..excess).collect()
        };
        free_apart(evicted);
        Ok(netted)
    }

    fn recent_for(&self, manifest: &Manifest) -> Option<Arc<Netted>> {
        let recent = self.recent.lock().expect("nettings lock");
        recent.iter().rev().find(|n| n.describes(manifest)).cloned()
    }

    /// Nets each new serving manifest as soon as it is committed, and only then serves it:
    /// until the next one is netted, requests are answered from the one before, with its
    /// own `as_of` (a request asking for a later `min_sequence` waits for it as it waits for
    /// the projector). So no request pays for a netting, whether a flush extends it or a
    /// compaction or a rebuild makes it anew. Runs until the process ends; call it once, on
    /// a spawned task, in a service that answers requests (a one-off reader such as a
    /// report has nothing to gain from it).
    pub async fn keep_netted(&self) {
        let (front, follow) = watch::channel(None);
        if !self.serving.follow(follow) {
            return;
        }
        let mut failing = false;
        loop {
            let prepared = match self.serving.committed().await {
                Ok(None) => Ok(None),
                Ok(Some(manifest)) => self.netted(&manifest).await.map(|_| Some(manifest)),
                Err(error) => Err(QueryError::from(error)),
            };
            match prepared {
                Ok(manifest) => {
                    failing = false;
                    front.send_if_modified(|served| {
                        let key = |m: &Option<Manifest>| {
                            m.as_ref().map(|m| (m.version, m.last_sequence, m.committed_at))
                        };
                        let changed = served.as_ref().is_none_or(|s| key(s) != key(&manifest));
                        if changed {
                            *served = Some(manifest);
                        }
                        changed
                    });
                }
                // Served stays what it was; said once per failing stretch, not every poll.
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot net the newest counts manifest; serving the previous one");
                }
                Err(_) => {}
            }
            tokio::time::sleep(PREPARE_POLL).await;
        }
    }

    /// The netting of a manifest other than the serving one, from the small cache or anew.
    async fn vintage_netted(&self, manifest: &Manifest) -> Result<Arc<Netted>, QueryError> {
        let key = (manifest.version, manifest.last_sequence);
        // A release made from the serving manifest names the same files: share its netting.
        if let Some(serving) = self.recent_for(manifest) {
            return Ok(serving);
        }
        let mut cached = self.vintages.lock().await;
        if let Some(at) = cached.iter().position(|(v, s, _)| (*v, *s) == key) {
            let entry = cached.remove(at);
            let netted = entry.2.clone();
            cached.push(entry);
            return Ok(netted);
        }
        let netted = self.build(manifest, None).await?;
        let evicted = (cached.len() >= VINTAGE_CACHE).then(|| cached.remove(0).2);
        cached.push((key.0, key.1, netted.clone()));
        drop(cached);
        free_apart(evicted.into_iter().collect());
        Ok(netted)
    }

    /// Nets `manifest`, reusing `cached` when it is the same state or one whose files the
    /// manifest only adds to.
    async fn build(
        &self,
        manifest: &Manifest,
        cached: Option<Arc<Netted>>,
    ) -> Result<Arc<Netted>, QueryError> {
        let counts_files: HashSet<String> =
            manifest.files(&TableId::Counts).iter().map(|f| f.path.clone()).collect();
        let coverage_files: Vec<String> =
            manifest.files(&TableId::Coverage).iter().map(|f| f.path.clone()).collect();
        if let Some(netted) = cached.as_ref()
            && netted.version == manifest.version
            && netted.counts_files == counts_files
            && netted.coverage_files == coverage_files
        {
            return Ok(netted.clone());
        }
        let previous = cached
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
        // Cells of different years never meet (a cell's month is one of its keys, and the
        // projector partitions counts files by that year), so each year is netted on its own:
        // the group-by holds one year's rows at a time, and a flush re-nets only the years
        // its files touch, keeping the other years' netted cells as they are.
        let started = Instant::now();
        let new_files: Vec<&DataFile> = manifest
            .files(&TableId::Counts)
            .iter()
            .filter(|f| !previous.as_ref().is_some_and(|n| n.counts_files.contains(&f.path)))
            .collect();
        // A file without a year (none is written so) makes every year one group.
        let by_year = new_files.iter().all(|f| f.year.is_some());
        // Per group: the cells of the previous netting to net again, and the new files.
        let mut years: BTreeMap<Option<i32>, (Vec<LazyFrame>, Vec<&DataFile>)> = BTreeMap::new();
        for &file in &new_files {
            years.entry(file.year.filter(|_| by_year)).or_default().1.push(file);
        }
        // The previous cells of the years no new file touches, kept as they are.
        let mut kept = None;
        if let Some(netted) = &previous {
            let cells = netted.frame.clone().lazy().select([all().exclude_cols([OPEN]).as_expr()]);
            if by_year {
                let mut untouched = lit(true);
                for (year, (frames, _)) in years.iter_mut() {
                    let year = col(stored::YEAR).eq(lit(year.expect("by year")));
                    frames.push(cells.clone().filter(year.clone()));
                    untouched = untouched.and(year.not());
                }
                kept = Some(cells.filter(untouched));
            } else {
                years.entry(None).or_default().0.push(cells);
            }
        }
        let mut parts: Vec<DataFrame> = Vec::new();
        for (mut frames, files) in years.into_values() {
            for file in files {
                frames.push(self.load(manifest.version, file).await?.lazy());
            }
            let netted = tokio::task::spawn_blocking(move || net_cells(frames))
                .await
                .map_err(|source| QueryError::Task { task: "netting", source })??;
            parts.push(netted);
        }
        let for_task = coverage.clone();
        let (frame, coded, data_months) =
            tokio::task::spawn_blocking(move || -> Result<_, QueryError> {
                if let Some(kept) = kept {
                    parts.insert(0, kept.collect()?);
                }
                let frame = finish_netting(parts, &for_task)?;
                let coded = Coded::encode(&frame)?;
                let data_months = data_months(&frame)?;
                Ok((frame, Arc::new(coded), Arc::new(data_months)))
            })
            .await
            .map_err(|source| QueryError::Task { task: "netting", source })??;
        tracing::debug!(
            version = manifest.version,
            sequence = manifest.last_sequence,
            cells = frame.height(),
            incremental = previous.is_some(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "counts netted"
        );
        Ok(Arc::new(Netted {
            version: manifest.version,
            counts_files,
            coverage_files,
            coverage,
            frame,
            coded,
            data_months,
        }))
    }

    /// Per source and month: `closed` (declared complete), `partial` (some départements
    /// closed), `open` (data but not closed) or `missing` (neither). At most
    /// [`MAX_COVERAGE_ROWS`] rows: a larger answer is an error saying so, never a silent cut.
    pub async fn coverage(
        &self,
        resolved: &Resolved,
        from: Option<&str>,
        to: Option<&str>,
        sources: Option<&[String]>,
    ) -> Result<(AsOf, Vec<serde_json::Value>), QueryError> {
        // One manifest for both: the data months and the closures must describe the same state.
        let as_of = AsOf::resolved(self.serving.projection().id(), resolved);
        let context = self.snapshot(resolved).await?.context();
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

    /// The exact answer to `request` on the serving manifest (once it reaches the request's
    /// `min_sequence`).
    pub async fn counts(
        &self,
        request: &CountsRequest,
        wait: Duration,
    ) -> Result<CountsAnswer, QueryError> {
        let manifest = self.manifest(request.min_sequence, wait).await?;
        self.counts_on(&Resolved::serving(manifest), request, None).await
    }

    /// The answer a `tier` reads to `request`, the one path of every published count: its
    /// vintage resolved (waiting for `min_sequence` on the newest state), the projection's
    /// record keys checked before anything public is computed, and the tier's policy applied.
    pub async fn published(
        &self,
        vintages: &Vintages,
        disclosure: &Disclosure,
        tier: Tier,
        request: &CountsRequest,
        wait: Duration,
    ) -> Result<CountsAnswer, ApiError> {
        let resolved = self
            .resolve_for(vintages, disclosure, tier, &request.vintage, request.min_sequence, wait)
            .await?;
        Ok(self.counts_on(&resolved, request, disclosure.policy_for(tier)).await?)
    }

    /// The state a `tier` may be answered from: the vintage resolved (waiting for
    /// `min_sequence` on the newest state) and, for the public, its record keys checked before
    /// anything public is computed from it.
    pub async fn resolve_for(
        &self,
        vintages: &Vintages,
        disclosure: &Disclosure,
        tier: Tier,
        vintage: &crate::vintage::Vintage,
        min_sequence: Option<u64>,
        wait: Duration,
    ) -> Result<Resolved, ApiError> {
        let resolved = vintages
            .resolve(&self.serving, vintage, min_sequence, wait)
            .await
            .map_err(QueryError::from)?;
        disclosure.check_keys(tier, resolved.manifest.as_ref())?;
        Ok(resolved)
    }

    /// Every source a resolved state knows (it sent data or closed a month).
    pub async fn sources_on(&self, resolved: &Resolved) -> Result<Vec<String>, QueryError> {
        Ok(self.snapshot(resolved).await?.context().sources())
    }

    /// The netting of a resolved vintage (an empty one before the first manifest).
    async fn snapshot(&self, resolved: &Resolved) -> Result<Arc<Netted>, QueryError> {
        match &resolved.manifest {
            Some(manifest) if resolved.is_serving() => self.netted(manifest).await,
            Some(manifest) => self.vintage_netted(manifest).await,
            None => Ok(Arc::new(Netted::empty()?)),
        }
    }

    /// The answer to `request` on a resolved vintage, published under `policy` (the public
    /// tier) or exact (`None`).
    pub async fn counts_on(
        &self,
        resolved: &Resolved,
        request: &CountsRequest,
        policy: Option<&Arc<Policy>>,
    ) -> Result<CountsAnswer, QueryError> {
        let (as_of, mut frames) = self.counts_many(resolved, vec![request.clone()], policy).await?;
        let frame = frames.pop().expect("one frame per request");
        Ok(CountsAnswer { as_of, frame })
    }

    /// The answers to several requests on one resolved vintage (one netting, one blocking
    /// task), in request order: an SDMX query is one request per level of its key.
    pub async fn counts_many(
        &self,
        resolved: &Resolved,
        requests: Vec<CountsRequest>,
        policy: Option<&Arc<Policy>>,
    ) -> Result<(AsOf, Vec<DataFrame>), QueryError> {
        let as_of = AsOf::resolved(self.serving.projection().id(), resolved);
        let context = self.snapshot(resolved).await?.context();
        for request in &requests {
            context.check_sources(request, as_of.sequence)?;
        }
        // Polars computes on its own threads and blocks: keep it off the async workers.
        let policy = policy.cloned();
        let frames = tokio::task::spawn_blocking(move || {
            requests
                .iter()
                .map(|r| aggregate(&context, r, policy.as_deref()))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|source| QueryError::Task { task: "aggregation", source })??;
        Ok((as_of, frames))
    }
}

/// The most rows `/v1/coverage` answers at once (about 80 years of 100 sources).
pub const MAX_COVERAGE_ROWS: u64 = 100_000;

/// Every (source, month) that has a live cell.
fn data_months(cells: &DataFrame) -> Result<HashSet<(String, String)>, QueryError> {
    let pairs = cells.select([stored::SOURCE, stored::MONTH])?.unique_stable(
        None,
        UniqueKeepStrategy::First,
        None,
    )?;
    let source = pairs.column(stored::SOURCE)?.str()?;
    let month = pairs.column(stored::MONTH)?.str()?;
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

fn empty_counts() -> LazyFrame {
    let text = |name: &str| Column::new(name.into(), Vec::<String>::new());
    let optional = |name: &str| Column::new(name.into(), Vec::<Option<String>>::new());
    let columns: Vec<Column> = vec![
        Column::new(stored::YEAR.into(), Vec::<i32>::new()),
        text(stored::MONTH),
        optional(stored::DEPARTEMENT),
        text(stored::ICCS),
        Column::new(stored::CYBER.into(), Vec::<bool>::new()),
        text(stored::VICTIM_TYPE),
        text(stored::CHANNEL),
        text(stored::SOURCE),
        text(stored::UNIT),
        text(stored::ICCS_SECTION),
        optional(stored::ICCS_DIVISION),
        optional(stored::ICCS_GROUP),
        optional(stored::REGION),
        Column::new(stored::COUNT.into(), Vec::<i64>::new()),
        Column::new(stored::LOSS_CENTS.into(), Vec::<i64>::new()),
        Column::new(stored::KEY_SUM.into(), Vec::<i64>::new()),
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
        let source = frame.column(closures::SOURCE)?.str()?;
        let month = frame.column(closures::MONTH)?.str()?;
        let departement = frame.column(closures::DEPARTEMENT)?.str()?;
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
    let source = frame.column(stored::SOURCE)?.str()?;
    let month = frame.column(stored::MONTH)?.str()?;
    let departement = frame.column(stored::DEPARTEMENT)?.str()?;
    let open: Vec<i64> = (0..frame.height())
        .map(|i| {
            let closed = match (source.get(i), month.get(i)) {
                (Some(s), Some(m)) => coverage.is_closed(s, m, departement.get(i)),
                _ => false,
            };
            i64::from(!closed)
        })
        .collect();
    Ok(Column::new(OPEN.into(), open))
}

/// Sums counts files (and a previous netted table) per cell, drops cells that net to
/// nothing, and flags the cells not yet closed. Pure over its inputs.
pub fn net(frames: Vec<LazyFrame>, coverage: &Coverage) -> Result<DataFrame, QueryError> {
    finish_netting(vec![net_cells(frames)?], coverage)
}

/// Sums `frames` per cell and drops the cells that net to zero (no `open` flag yet).
fn net_cells(frames: Vec<LazyFrame>) -> Result<DataFrame, QueryError> {
    let frame =
        if frames.is_empty() { empty_counts() } else { concat(frames, UnionArgs::default())? };
    let keys: Vec<Expr> = stored::DIMENSIONS.iter().map(|c| col(*c)).collect();
    Ok(frame
        .group_by(keys)
        .agg([
            col(stored::COUNT).sum().alias(stored::COUNT),
            col(stored::LOSS_CENTS).sum().alias(stored::LOSS_CENTS),
            col(stored::KEY_SUM).sum().alias(stored::KEY_SUM),
        ])
        // An amendment that only changes the loss leaves a count of 0: keep it.
        .filter(col(stored::COUNT).neq(lit(0i64)).or(col(stored::LOSS_CENTS).neq(lit(0i64))))
        .collect()?)
}

/// Netted cells of disjoint groups (years) as one table, checked, with their `open` flags.
fn finish_netting(parts: Vec<DataFrame>, coverage: &Coverage) -> Result<DataFrame, QueryError> {
    let mut parts = parts.into_iter();
    let mut cells = match parts.next() {
        Some(first) => first,
        None => net_cells(Vec::new())?,
    };
    for part in parts {
        cells.vstack_mut(&part)?;
    }
    cells.rechunk_mut();
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
    for loss in cells.column(stored::LOSS_CENTS)?.i64()?.iter().flatten() {
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

/// "YYYY-MM" as months since year 0.
fn month_index(month: &str) -> Option<i32> {
    Some(month.get(..4)?.parse::<i32>().ok()? * 12 + month.get(5..7)?.parse::<i32>().ok()? - 1)
}

/// Filters the netted cells, checks units, groups and sums, then adds provisional flags and
/// rates. Pure over its inputs.
///
/// With a `policy` (the public tier) each row's count is perturbed from its own cell key (the
/// sum of its cells' key sums, modulo 256), rows published as zero leave grouped answers like
/// true zeros, and losses are withheld or rounded; see [`Policy::count`] and [`Policy::loss`].
pub fn aggregate(
    context: &Context,
    request: &CountsRequest,
    policy: Option<&Policy>,
) -> Result<DataFrame, QueryError> {
    let coded = &*context.coded;
    let mut keeps = Vec::new();
    // Months are "YYYY-MM" and sorted: a range of months is a range of codes.
    if request.from.is_some() || request.to.is_some() {
        let months = coded.code_range(
            Dimension::Month,
            request.from.as_deref().unwrap_or(""),
            &format!("{}\u{7f}", request.to.as_deref().unwrap_or("\u{7f}")),
        );
        let mut keep = coded.keep_none(Dimension::Month);
        keep.allow_range(months);
        keeps.push(keep);
    }
    for (dimension, values) in &request.filters {
        let mut keep = coded.keep_none(*dimension);
        for value in values {
            match dimension {
                // Codes are digit strings: the subtree of "09" is exactly "09" ≤ code < "0:".
                Dimension::Iccs => {
                    let mut upper = value.as_bytes().to_vec();
                    let Some(last) = upper.last_mut() else { continue };
                    *last += 1;
                    let upper = String::from_utf8_lossy(&upper);
                    keep.allow_range(coded.code_range(Dimension::Iccs, value, &upper));
                }
                _ => {
                    if let Some(code) = coded.code_of(*dimension, value) {
                        keep.allow(code);
                    }
                }
            }
        }
        keeps.push(keep);
    }
    // Grouped by unit as well: when `by` has no unit, more than one unit in the result means
    // the request would add different things together.
    let by_unit = request.by.contains(&Dimension::Unit);
    let mut keys = request.by.clone();
    if !by_unit {
        keys.push(Dimension::Unit);
    }
    let unit_at = keys.iter().position(|d| *d == Dimension::Unit).expect("grouped by unit");
    // What an ungrouped rate covers in time when from/to leave it open: the months with data.
    let time_grouped =
        request.by.contains(&Dimension::Year) || request.by.contains(&Dimension::Month);
    let span_wanted = request.rate.is_some() && !time_grouped;
    let groups = coded.scan(&keeps, &keys, span_wanted);
    let data_span = groups.months.and_then(|(first, last)| {
        let month = |code| coded.text(Dimension::Month, code).map(str::to_owned);
        month(first).zip(month(last))
    });
    let mut units: Vec<u32> = (0..groups.len()).map(|g| groups.key(g)[unit_at]).collect();
    units.sort_unstable();
    units.dedup();
    let units: Vec<&str> = units.iter().filter_map(|u| coded.text(Dimension::Unit, *u)).collect();
    if units.len() > 1 && !by_unit {
        return Err(QueryError::MixedUnits(units.join(", ")));
    }
    // Rows as (codes, sums); codes sort as their values do, absent values last.
    let mut rows: Vec<(&[u32], coded::Sums)> =
        (0..groups.len()).map(|g| (&groups.key(g)[..request.by.len()], groups.sums(g))).collect();
    if request.by.is_empty() && rows.is_empty() {
        // A total with no data is a zero only where every source has closed every month it
        // spans; otherwise nothing was reported, which is not zero: provisional.
        let open = i64::from(!zero_is_final(context, request));
        rows.push((&[], coded::Sums { open, ..coded::Sums::default() }));
    }
    if !request.by.is_empty() {
        // A cell whose deltas net to zero is no incident: drop it from grouped answers.
        rows.retain(|(_, sums)| sums.count() != 0);
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    let mut counts: Vec<i64> = rows.iter().map(|(_, sums)| sums.count()).collect();
    // Euros from exact integer cents with one correctly rounded division, so 1234.56 prints
    // as 1234.56 and not as the sum of binary fractions.
    let mut losses: Vec<Option<f64>> =
        rows.iter().map(|(_, sums)| Some(sums.loss_cents as f64 / 100.0)).collect();
    let provisional: Vec<bool> = rows.iter().map(|(_, sums)| sums.open > 0).collect();
    let mut withheld = None;
    if let Some(policy) = policy {
        // Each count perturbed from its cell key; each loss published only above the
        // policy's count threshold, rounded, else null and flagged.
        for (count, (_, sums)) in counts.iter_mut().zip(&rows) {
            *count = policy.count(*count, sums.key_sum());
        }
        for (loss, count) in losses.iter_mut().zip(&counts) {
            *loss = loss.and_then(|l| policy.loss(*count, l));
        }
        withheld = Some(losses.iter().map(Option::is_none).collect::<Vec<bool>>());
    }
    // A grouped answer never lists a zero row, so a listed zero would say that the true count
    // is not zero: rows published as zero leave it.
    let listed: Vec<usize> = (0..rows.len())
        .filter(|&i| policy.is_none() || request.by.is_empty() || counts[i] > 0)
        .collect();
    let mut columns: Vec<Column> = Vec::new();
    for (at, dimension) in request.by.iter().enumerate() {
        columns.push(coded.decode(*dimension, listed.iter().map(|&i| rows[i].0[at])));
    }
    if !by_unit {
        // Every row says what it counts; with no data, the unit asked for (if any).
        let unit = units
            .first()
            .map(|u| (*u).to_owned())
            .or_else(|| request.filters.get(&Dimension::Unit).and_then(|u| u.first().cloned()));
        columns.push(Column::new(Dimension::Unit.name().into(), vec![unit; listed.len()]));
    }
    fn pick<T: Copy>(listed: &[usize], values: &[T]) -> Vec<T> {
        listed.iter().map(|&i| values[i]).collect()
    }
    columns.push(Column::new(COUNT.into(), pick(&listed, &counts)));
    columns.push(Column::new("loss_eur".into(), pick(&listed, &losses)));
    columns.push(Column::new("provisional".into(), pick(&listed, &provisional)));
    if let Some(withheld) = withheld {
        columns.push(Column::new(LOSS_WITHHELD.into(), pick(&listed, &withheld)));
    }
    let mut result = DataFrame::new_infer_height(columns)?;
    if request.rate == Some(Rate::Per100k) {
        add_rates(&mut result, request, data_span)?;
    }
    Ok(result)
}

/// The flag beside a public loss: `true` where the loss was withheld (`loss_eur` null).
pub const LOSS_WITHHELD: &str = "loss_withheld";

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
        return Ok(result
            .column(Dimension::Month.name())?
            .str()?
            .get(i)
            .map(|m| (m.to_owned(), m.to_owned())));
    }
    if request.by.contains(&Dimension::Year) {
        return Ok(result.column(Dimension::Year.name())?.i32()?.get(i).map(|y| {
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
        Some(result.column(Dimension::Departement.name())?.str()?.clone())
    } else {
        None
    };
    let regions = if request.by.contains(&Dimension::Region) {
        Some(result.column(Dimension::Region.name())?.str()?.clone())
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
    let counts = result.column(COUNT)?.i64()?.clone();
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
mod tests;
