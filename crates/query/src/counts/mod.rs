//! Count aggregation over the committed counts table with Polars. Counts files hold deltas
//! (or compacted snapshots) per cell; summing every file of the manifest gives the totals.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use observatory_store::layout::counts as stored;
use observatory_store::{DataFile, Manifest, Projection, StoreError, TableId};
use polars::prelude::*;
use tokio::sync::watch;

use observatory_disclosure::Policy;

use crate::disclosure::{Disclosure, Tier};
use crate::error::ApiError;
use crate::request::{CountsRequest, Dimension};
use crate::serving::{AsOf, NotYet, ServingError, ServingManifest};
use crate::vintage::{Resolved, Vintages};

mod aggregate;
mod coded;
mod netting;

#[cfg(test)]
use aggregate::zero_is_final;
pub use aggregate::{LOSS_WITHHELD, aggregate};
pub use coded::Coded;
pub use netting::{Coverage, net};
use netting::{data_months, finish_netting, month_index, month_range, net_cells};

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

#[cfg(test)]
mod tests;
