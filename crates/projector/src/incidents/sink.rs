//! The incident projection over the shared [`ProjectionWriter`]: restores the fold from the
//! newest manifest's state and coverage files, and flushes what the fold changed as count
//! deltas per year, state rows and, when closures changed, the whole coverage table.

use std::collections::BTreeMap;

use async_nats::jetstream::Message;
use observatory_model::{Envelope, Event, source_matches_subject};
use observatory_store::{
    CommitError, DataFile, Manifest, ParquetEncoder, Projection, StoreError, TableId,
};
use tracing::{Instrument, debug, info, info_span};

use super::compaction::{compact_counts, compact_state};
use super::fold::{Fold, Pending};
use super::image::ImageWriter;
use super::restore;
use super::tables::{
    CHUNK_ROWS, TableError, counts_batch, counts_schema, coverage_batch, coverage_rows,
    state_encoder,
};
use crate::runner::{Folding, ProjectorConfig};
use crate::writer::ProjectionWriter;

#[derive(Debug, thiserror::Error)]
pub enum IncidentSinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("{path}: {source}")]
    Table {
        path: String,
        #[source]
        source: TableError,
    },
    #[error("{path}: {source}")]
    Image {
        path: String,
        #[source]
        source: super::image::ImageError,
    },
    #[error("the restore's decoder stopped: {0}")]
    Restore(#[from] tokio::task::JoinError),
    #[error("reference data: {0}")]
    Reference(#[from] observatory_reference::ReferenceError),
    #[error(
        "projection version {version} keyed its records with {found}, and this projector's \
         disclosure secret is {expected}: point --disclosure-secret-file at the secret the \
         version was built with, or run `observatory rebuild` to key a new version with this one"
    )]
    RecordKeys { version: u32, found: String, expected: String },
}

const RECORD_KEYS: &str = Manifest::RECORD_KEYS;
const NO_RECORD_KEYS: &str = Manifest::NO_RECORD_KEYS;

const CROSSWALK_PREFIX: &str = "crosswalk.";

/// Crosswalk versions a new projection version codes with: the requested ones, else the
/// latest of each built-in crosswalk.
fn choose_pins(requested: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
    let crosswalks = observatory_reference::Crosswalks::builtin();
    crosswalks
        .names()
        .filter(|name| *name != observatory_reference::IDENTITY)
        .filter_map(|name| {
            let version = requested
                .get(name)
                .copied()
                .or_else(|| crosswalks.latest(name).map(|c| c.version))?;
            Some((name.to_owned(), version))
        })
        .collect()
}

fn reference_record(pins: &BTreeMap<String, u32>) -> BTreeMap<String, String> {
    let mut reference: BTreeMap<String, String> = pins
        .iter()
        .map(|(name, version)| (format!("{CROSSWALK_PREFIX}{name}"), version.to_string()))
        .collect();
    reference.insert("iccs".into(), "1.0".into());
    reference
}

/// The incident fold of one projection version, over the writer of that version.
pub struct IncidentSink {
    writer: ProjectionWriter,
    pub fold: Fold,
    images: Images,
    restored: restore::Restored,
    /// The state rows of the flush in progress, encoded [`CHUNK_ROWS`] at a time as they are
    /// folded: a flush of a million changed incidents (a rebuild's) holds its file encoded,
    /// not the rows.
    state: Option<ParquetEncoder>,
    encode_error: Option<StoreError>,
}

/// When a flush also writes a fold image. Serving, once the events since the last image reach
/// a quarter of the incidents known (and at least `min_events`): a restart then reads at most
/// that many state rows beyond the image, and writing images costs at most 4 × 32 bytes per
/// event. Replaying, only the last flush of the replay writes one (the version's first
/// restart then reads the image alone).
#[derive(Debug, Clone, Copy)]
struct Images {
    min_events: u64,
    /// The sequence of the newest image committed (0: none).
    last: u64,
    replaying: bool,
    replay_caught_up: bool,
}

impl Images {
    fn due(&self, sequence: u64, incidents: usize) -> bool {
        if self.replaying {
            return self.replay_caught_up;
        }
        sequence.saturating_sub(self.last) >= self.min_events.max(incidents as u64 / 4)
    }
}

impl IncidentSink {
    /// Opens `version`, restoring the fold from its newest manifest (empty if none). A new
    /// version pins its crosswalk versions (`requested`, else the latest); an existing one
    /// keeps those its manifest records, so its numbers never mix two versions.
    ///
    /// Records are keyed with `config.record_keys`; a version keyed with another secret is
    /// refused (its cell keys would mix two secrets).
    pub async fn open(
        projection: Projection,
        version: u32,
        stream: &str,
        config: &ProjectorConfig,
    ) -> Result<IncidentSink, IncidentSinkError> {
        let requested = &config.crosswalk_versions;
        let mut writer =
            ProjectionWriter::open(projection, version, stream, config.compaction, || {
                reference_record(&choose_pins(requested))
            })
            .await?;
        let expected = config
            .record_keys
            .as_ref()
            .map_or(NO_RECORD_KEYS.to_owned(), |k| k.fingerprint().to_owned());
        let found = writer.committed().disclosure.get(RECORD_KEYS).cloned();
        let record_keys = match found {
            None if writer.committed_sequence() == 0 => {
                writer.set_disclosure(RECORD_KEYS, &expected);
                config.record_keys.clone()
            }
            // Built before record keys existed: keep it serving exact answers (its manifests
            // still name no keys, so the public tier refuses it) until a rebuild, which a
            // running service needs to stay up for.
            None => {
                tracing::warn!(
                    version,
                    "this projection version was built before record keys existed: it keeps \
                     projecting without them and serves no public numbers; run `observatory \
                     rebuild` to key a new version"
                );
                None
            }
            Some(found) if found == expected => config.record_keys.clone(),
            Some(found) => {
                return Err(IncidentSinkError::RecordKeys { version, found, expected });
            }
        };
        let committed = writer.committed();
        let pins: BTreeMap<String, u32> = committed
            .reference
            .iter()
            .filter_map(|(key, value)| {
                Some((key.strip_prefix(CROSSWALK_PREFIX)?.to_owned(), value.parse().ok()?))
            })
            .collect();
        let span = writer.restore_span();
        let table_error = |file: &DataFile| {
            let path = writer.path_of(file);
            move |source| IncidentSinkError::Table { path, source }
        };
        let (mut fold, restored) = async {
            let new_fold = || Ok(Fold::with_crosswalks(&pins, record_keys.clone())?);
            let (mut fold, restored) = restore::restore(&writer, new_fold).await?;
            for file in committed.files(&TableId::Coverage) {
                for batch in writer.read(file).await? {
                    for (source, month, departement) in
                        coverage_rows(&batch).map_err(table_error(file))?
                    {
                        fold.restore_closure(&source, &month, departement.as_deref());
                    }
                }
            }
            Ok::<_, IncidentSinkError>((fold, restored))
        }
        .instrument(span)
        .await?;
        fold.set_position(committed.last_sequence);
        if committed.last_sequence > 0 {
            info!(
                version,
                sequence = committed.last_sequence,
                incidents = fold.incident_count(),
                room = fold.incident_capacity(),
                image = restored.image,
                state_rows = restored.state_rows,
                "projection restored"
            );
        }
        let images = Images {
            min_events: config.image_min_events,
            last: committed.files(&TableId::FoldImage).last().map_or(0, |f| f.last_sequence),
            replaying: false,
            replay_caught_up: false,
        };
        Ok(IncidentSink { writer, fold, images, restored, state: None, encode_error: None })
    }

    pub fn writer(&self) -> &ProjectionWriter {
        &self.writer
    }

    /// Adds state rows to the state file of the flush in progress.
    fn encode(&mut self, changed: &arrow::array::RecordBatch) -> Result<(), StoreError> {
        let state = match &mut self.state {
            Some(state) => state,
            None => self.state.insert(state_encoder("state rows of the flush in progress")?),
        };
        state.write(changed)
    }

    /// How the fold was restored when this sink opened.
    pub fn restored(&self) -> restore::Restored {
        self.restored
    }

    /// Writes what was folded since the last flush and commits it. Returns the committed
    /// sequence, or `None` when there was nothing to write.
    pub async fn flush(&mut self, rejected_events: u64) -> Result<Option<u64>, IncidentSinkError> {
        let Some(pending) = self.fold.take_pending() else { return Ok(None) };
        let span = info_span!(
            "flush",
            version = self.writer.version(),
            first = pending.first_sequence,
            last = pending.last_sequence,
            changed = pending.changed.num_rows() as u64
                + self.state.as_ref().map_or(0, ParquetEncoder::rows)
        );
        self.flush_pending(pending, rejected_events).instrument(span).await.map(Some)
    }

    async fn flush_pending(
        &mut self,
        pending: Pending,
        rejected_events: u64,
    ) -> Result<u64, IncidentSinkError> {
        let started = std::time::Instant::now();
        let encoded = self.state.as_ref().map_or(0, ParquetEncoder::rows) as usize;
        let (changed, cells) = (pending.changed.num_rows() + encoded, pending.deltas.len());
        let (first, last) = (pending.first_sequence, pending.last_sequence);
        let writer = &self.writer;
        let mut tables = writer.tables();

        // Deltas come sorted by cell, month first: each year's are one run.
        for cells in pending.deltas.chunk_by(|a, b| a.0.year() == b.0.year()) {
            let year = cells[0].0.year();
            let chunks = cells.chunks(CHUNK_ROWS).map(|cells| counts_batch(&self.fold, cells));
            let file = writer
                .write_batches(&TableId::Counts, Some(year), first, last, counts_schema(), chunks)
                .await?;
            tables.files_mut(&TableId::Counts).push(file);
        }
        if let Some(error) = self.encode_error.take() {
            return Err(error.into());
        }
        if pending.changed.num_rows() > 0 {
            self.encode(&pending.changed)?;
        }
        let writer = &self.writer;
        if let Some(state) = self.state.take() {
            let file = writer.write_encoded(&TableId::State, None, first, last, state).await?;
            tables.files_mut(&TableId::State).push(file);
        }
        if pending.coverage_changed {
            // Small (sources × months): each change writes the whole table as one file.
            let batch = coverage_batch(self.fold.coverage().iter());
            let file = writer.write(&TableId::Coverage, None, first, last, &batch).await?;
            tables.set(&TableId::Coverage, vec![file]);
        }
        compact_counts(writer, &self.fold, &mut tables, last).await?;
        compact_state(writer, &mut tables).await?;
        if self.images.due(last, self.fold.incident_count()) {
            let started = std::time::Instant::now();
            let mut image = ImageWriter::new(&self.fold, last);
            let file = writer
                .write_pieces(
                    &TableId::FoldImage,
                    1,
                    last,
                    self.fold.incident_count() as u64,
                    |piece| image.fill(piece, 4 << 20),
                )
                .await?;
            info!(
                sequence = last,
                bytes = file.bytes,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "fold image written"
            );
            // One image per manifest: the older one goes with the manifests that name it.
            tables.set(&TableId::FoldImage, vec![file]);
            self.images.last = last;
        }

        let fold = &mut self.fold;
        self.writer
            .commit(last, tables, |stats| {
                *stats.entry("events_applied".into()).or_default() += fold.events_applied;
                *stats.entry("events_ignored".into()).or_default() += fold.events_ignored;
                *stats.entry("events_rejected".into()).or_default() += rejected_events;
                stats.insert("incidents_known".into(), fold.incident_count() as u64);
                stats.insert("incidents_counted".into(), fold.counted_incidents().max(0) as u64);
                (fold.events_applied, fold.events_ignored) = (0, 0);
            })
            .await?;
        debug!(
            sequence = last,
            changed,
            cells,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "committed"
        );
        Ok(last)
    }
}

impl Folding for IncidentSink {
    type Error = IncidentSinkError;
    type Decoded = (String, Event);
    const FILTER: &'static str = "";
    const SUBJECT_PREFIX: &'static str = "obs.incident.";
    const BATCH: usize = 500;

    async fn open(
        projection: Projection,
        version: u32,
        stream: &str,
        config: &ProjectorConfig,
    ) -> Result<IncidentSink, IncidentSinkError> {
        IncidentSink::open(projection, version, stream, config).await
    }

    fn writer(&self) -> &ProjectionWriter {
        &self.writer
    }

    fn decode(message: &Message) -> Result<(String, Event), String> {
        // Straight from the bytes to the event: no JSON tree of the payload (the hot path).
        let (source, event) = Envelope::decode_event(&message.payload)
            .map_err(|e| format!("{}: {e}", message.subject))?;
        if !source_matches_subject(&source, &message.subject) {
            return Err(format!("source {source} does not match its subject {}", message.subject));
        }
        Ok((source, event))
    }

    fn apply(&mut self, sequence: u64, (source, event): (String, Event)) {
        self.fold.apply(sequence, &source, event);
        if self.fold.pending_events() >= CHUNK_ROWS && self.encode_error.is_none() {
            let changed = self.fold.take_changed();
            // Folding cannot fail; the flush reports it (and the manifest stays where it was).
            if let Err(error) = self.encode(&changed) {
                self.encode_error = Some(error);
            }
        }
    }

    fn skip(&mut self, sequence: u64) {
        let position = sequence.max(self.fold.last_applied());
        self.fold.set_position(position);
    }

    fn pending(&self) -> usize {
        let encoded = self.state.as_ref().map_or(0, |s| s.rows() as usize);
        self.fold.pending_events() + encoded
    }

    fn reserve(&mut self, events: u64) {
        self.images.replaying = true;
        self.fold.reserve_incidents(usize::try_from(events).unwrap_or(usize::MAX));
    }

    fn caught_up(&mut self) {
        self.images.replay_caught_up = true;
    }

    async fn flush(&mut self, rejected_events: u64) -> Result<Option<u64>, IncidentSinkError> {
        IncidentSink::flush(self, rejected_events).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::tests::report;
    use crate::writer::Compaction;
    use observatory_store::{ProjectionId, Store};

    /// Many small flushes with amendments and a tiny compaction budget: the state files stay
    /// few, none beyond the cap is merged again, and a restart restores the same incidents and
    /// totals from them.
    /// A restore loads the fold image, then decodes the state rows committed after it batch
    /// by batch on another thread: files of several batches, newer revisions and withdrawals
    /// in a later file, all come back as folded. Without the image (damaged: reported, then
    /// passed over) the whole state table gives the same fold; a damaged state file is
    /// refused naming it.
    #[tokio::test]
    async fn a_restore_from_the_image_and_the_state_after_it_equals_the_fold() {
        let dir = tempfile::tempdir().unwrap();
        let projection = Projection::new(
            Store::open(dir.path().to_str().unwrap()).unwrap(),
            ProjectionId::Incidents,
        );
        let config = ProjectorConfig {
            record_keys: Some(observatory_disclosure::RecordKeys::new(&[5; 32]).unwrap()),
            image_min_events: 10_000,
            ..ProjectorConfig::default()
        };
        let mut sink = IncidentSink::open(projection.clone(), 1, "TEST", &config).await.unwrap();
        let incidents = (CHUNK_ROWS + 2 * restore::RESTORE_BATCH_ROWS) as u32 + 1_000;
        let mut sequence = 0;
        // Through the loop's entry point: the state rows are encoded a chunk at a time.
        for id in 0..incidents {
            sequence += 1;
            Folding::apply(&mut sink, sequence, ("pn".to_owned(), report(id, 1, 1 + id % 12)));
            assert!(sink.fold.pending_events() < CHUNK_ROWS);
        }
        assert_eq!(Folding::pending(&sink), incidents as usize);
        sink.flush(0).await.unwrap();
        assert_eq!(sink.writer().committed().files(&TableId::State)[0].rows, u64::from(incidents));
        let image_at = sequence;
        for id in (0..incidents).step_by(7) {
            sequence += 1;
            let event = if id % 2 == 0 {
                report(id, 2, 12 - id % 12)
            } else {
                Event::IncidentWithdrawn(observatory_model::IncidentWithdrawn {
                    agency_incident_id: format!("I{id}"),
                    revision: 2,
                    reason: None,
                })
            };
            sink.fold.apply(sequence, "pn", event);
        }
        sink.flush(0).await.unwrap();
        let committed = sink.writer().committed().clone();
        assert_eq!(committed.files(&TableId::State).len(), 2);
        // The first flush wrote an image (at least 10 000 events since none); the second, a
        // seventh of the incidents later (less than a quarter), did not.
        let images = committed.files(&TableId::FoldImage);
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].last_sequence, image_at);
        assert_eq!(images[0].rows, u64::from(incidents));
        let folded = (
            sink.fold.incident_count(),
            sink.fold.counted_incidents(),
            sink.fold.totals_of_year(2024),
        );
        assert!(folded.1 < i64::from(incidents) && folded.1 > i64::from(incidents) * 9 / 10);
        let summary = |sink: &IncidentSink| {
            (
                sink.fold.incident_count(),
                sink.fold.counted_incidents(),
                sink.fold.totals_of_year(2024),
            )
        };

        let from_image = IncidentSink::open(projection.clone(), 1, "TEST", &config).await.unwrap();
        assert_eq!(summary(&from_image), folded);
        assert_eq!(from_image.restored().image, Some(image_at));
        assert_eq!(from_image.restored().state_rows, committed.files(&TableId::State)[1].rows);

        let image_path = dir.path().join(sink.writer().path_of(&images[0]));
        // An image of another sequence than its manifest names is not used either.
        let mut misplaced = Vec::new();
        let mut image = ImageWriter::new(&from_image.fold, image_at + 1);
        while image.fill(&mut misplaced, usize::MAX) {}
        let good = std::fs::read(&image_path).unwrap();
        std::fs::write(&image_path, &misplaced).unwrap();
        let not_this_one =
            IncidentSink::open(projection.clone(), 1, "TEST", &config).await.unwrap();
        assert_eq!(not_this_one.restored().image, None);
        assert_eq!(summary(&not_this_one), folded);
        std::fs::write(&image_path, &good).unwrap();

        let mut damaged = std::fs::read(&image_path).unwrap();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0xff;
        std::fs::write(&image_path, &damaged).unwrap();
        let from_state = IncidentSink::open(projection.clone(), 1, "TEST", &config).await.unwrap();
        assert_eq!(summary(&from_state), folded);
        assert_eq!(from_state.restored().image, None);
        assert_eq!(
            from_state.restored().state_rows,
            committed.files(&TableId::State).iter().map(|f| f.rows).sum::<u64>()
        );

        // A damaged state file is refused naming it, the first one read (the restore stops
        // there rather than read on).
        for damaged in committed.files(&TableId::State).iter().rev() {
            let path = sink.writer().path_of(damaged);
            std::fs::write(dir.path().join(&path), b"PAR1 not a parquet file").unwrap();
            let error = IncidentSink::open(projection.clone(), 1, "TEST", &config)
                .await
                .err()
                .expect("a damaged state file is refused")
                .to_string();
            assert!(error.contains(&path), "{error}");
        }
    }

    #[tokio::test]
    async fn capped_state_compaction_keeps_the_newest_revision_of_every_incident() {
        let dir = tempfile::tempdir().unwrap();
        let projection = Projection::new(
            Store::open(dir.path().to_str().unwrap()).unwrap(),
            ProjectionId::Incidents,
        );
        let compaction = Compaction {
            max_count_files: 4,
            max_state_files: 4,
            max_state_file_rows: 120,
            keep_manifests: 3,
        };
        let config = ProjectorConfig {
            compaction,
            record_keys: Some(observatory_disclosure::RecordKeys::new(&[3; 32]).unwrap()),
            ..ProjectorConfig::default()
        };
        let mut sink = IncidentSink::open(projection.clone(), 1, "TEST", &config).await.unwrap();
        let mut sequence = 0;
        for round in 0..30u32 {
            for i in 0..20u32 {
                // 200 incidents; every round amends some of them to a later month.
                let id = (round * 20 + i) % 200;
                sequence += 1;
                sink.fold.apply(sequence, "pn", report(id, round + 1, 1 + (round % 12)));
            }
            sink.flush(0).await.unwrap();
        }
        let files = sink.writer().committed().files(&TableId::State);
        assert!(
            files.iter().any(|f| f.rows >= 120),
            "some file reached the cap and was sealed: {files:?}"
        );
        assert!(files.len() <= 4 + 4, "state files stay bounded: {}", files.len());
        let expected = (
            sink.fold.incident_count(),
            sink.fold.counted_incidents(),
            sink.fold.totals_of_year(2024),
        );
        assert_eq!(expected.0, 200);

        let restored = IncidentSink::open(projection.clone(), 1, "TEST", &config).await.unwrap();
        assert_eq!(restored.writer().committed().last_sequence, sequence);
        assert_eq!(
            (
                restored.fold.incident_count(),
                restored.fold.counted_incidents(),
                restored.fold.totals_of_year(2024)
            ),
            expected
        );
        // A version built before record keys (its manifest names none) keeps projecting, unkeyed.
        let mut older = restored.writer().committed().clone();
        older.disclosure.clear();
        older.last_sequence += 1;
        projection.commit(&older).await.unwrap();
        let continued = IncidentSink::open(projection.clone(), 1, "TEST", &config).await.unwrap();
        assert!(continued.writer().committed().disclosure.is_empty());
        let mut unkeyed = continued.fold;
        unkeyed.apply(older.last_sequence + 1, "pn", report(999, 1, 3));
        let pending = unkeyed.take_pending().unwrap();
        assert!(
            pending.deltas.iter().all(|(_, t)| t.key_sum == 0),
            "no keys on an unkeyed version"
        );
        older.last_sequence += 1;
        older.disclosure.insert(RECORD_KEYS.into(), "0000000000000000".into());
        projection.commit(&older).await.unwrap();
        // Keyed with another secret, or with none: refused, naming the remedy.
        for record_keys in [Some(observatory_disclosure::RecordKeys::new(&[4; 32]).unwrap()), None]
        {
            let other = ProjectorConfig { record_keys, ..config.clone() };
            let error = IncidentSink::open(projection.clone(), 1, "TEST", &other)
                .await
                .err()
                .expect("another secret is refused")
                .to_string();
            assert!(error.contains("observatory rebuild"), "{error}");
        }
    }
}
