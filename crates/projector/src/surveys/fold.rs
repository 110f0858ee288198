//! The pure survey fold: events in stream order → new rows per wave and closures, to be
//! flushed. Whether a row is new is the [`SurveyLedger`]'s decision, the same one the ingest
//! makes, so a re-sent respondent never becomes a second row.

use std::collections::BTreeMap;

use observatory_model::survey::{LedgerOutcome, SurveyEvent, SurveyLedger, SurveyRow, check_row};

/// (survey, wave)
pub type WaveKey = (String, String);

/// What a flush must write.
#[derive(Debug, Default)]
pub struct Pending {
    pub first_sequence: u64,
    pub last_sequence: u64,
    /// New respondents per wave, in stream order.
    pub rows: BTreeMap<WaveKey, Vec<SurveyRow>>,
    /// Waves closed since the last flush, with their final weights (empty: design weights).
    pub closed: BTreeMap<WaveKey, BTreeMap<String, f64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// A redelivery (sequence already applied) or an event that changes nothing.
    Ignored,
}

#[derive(Default)]
pub struct SurveyFold {
    pub ledger: SurveyLedger,
    last_applied: u64,
    first_pending: Option<u64>,
    rows: BTreeMap<WaveKey, Vec<SurveyRow>>,
    closed: BTreeMap<WaveKey, BTreeMap<String, f64>>,
    pending_rows: usize,
    pub events_applied: u64,
    pub events_ignored: u64,
    /// Rows refused inside applied batches (they failed the declaration's checks).
    pub rows_invalid: u64,
    pub rows_duplicate: u64,
}

impl SurveyFold {
    pub fn new() -> SurveyFold {
        SurveyFold::default()
    }

    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }

    /// Marks everything up to `sequence` as applied (the restored manifest's position, or a
    /// skipped event's).
    pub fn set_position(&mut self, sequence: u64) {
        self.last_applied = sequence;
    }

    /// Rows waiting for a flush (the runner flushes early when many are pending).
    pub fn pending_rows(&self) -> usize {
        self.pending_rows
    }

    pub fn apply(&mut self, sequence: u64, source: &str, event: &SurveyEvent) -> Outcome {
        if sequence <= self.last_applied {
            return Outcome::Ignored;
        }
        self.last_applied = sequence;
        self.first_pending.get_or_insert(sequence);
        let key = (event.survey().to_owned(), event.wave().to_owned());
        let outcome = self.ledger.apply(sequence, source, event);
        let applied = match (outcome, event) {
            (LedgerOutcome::Declared, _) => true,
            (
                LedgerOutcome::Recorded { new_rows, duplicates, invalid },
                SurveyEvent::ResponsesRecorded(batch),
            ) => {
                self.rows_duplicate += duplicates;
                self.rows_invalid += invalid;
                let declaration = &self
                    .ledger
                    .wave(&key.0, &key.1)
                    .expect("recorded in a declared wave")
                    .declaration;
                let rows = self.rows.entry(key.clone()).or_default();
                for i in &new_rows {
                    // Normalised again, so a row always has its declared types in the file.
                    rows.push(
                        check_row(declaration, &batch.rows[*i]).expect("the ledger checked it"),
                    );
                }
                self.pending_rows += new_rows.len();
                !new_rows.is_empty()
            }
            (LedgerOutcome::Closed, SurveyEvent::WaveClosed(close)) => {
                self.closed.insert(key, close.final_weights.clone());
                true
            }
            (LedgerOutcome::Refused(reason), _) => {
                tracing::warn!(sequence, %source, %reason, "survey event refused");
                false
            }
            _ => false,
        };
        if applied {
            self.events_applied += 1;
            Outcome::Applied
        } else {
            self.events_ignored += 1;
            Outcome::Ignored
        }
    }

    /// Takes what the next flush writes; `None` when nothing was applied since the last one.
    pub fn take_pending(&mut self) -> Option<Pending> {
        let first_sequence = self.first_pending.take()?;
        self.pending_rows = 0;
        Some(Pending {
            first_sequence,
            last_sequence: self.last_applied,
            rows: std::mem::take(&mut self.rows),
            closed: std::mem::take(&mut self.closed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_model::survey::{
        Cell, SurveyResponsesRecorded, SurveyWaveClosed, SurveyWaveDeclared,
    };

    fn declared() -> SurveyEvent {
        SurveyEvent::WaveDeclared(
            serde_json::from_str::<SurveyWaveDeclared>(
                r#"{"survey":"s","wave":"1","population":"individuals","reference_period":{"from":"2024-01-01","to":"2024-12-31"},
                    "respondent_id":"id","variables":[{"name":"x","type":"numeric"}]}"#,
            )
            .unwrap(),
        )
    }

    fn batch(ids: &[&str]) -> SurveyEvent {
        SurveyEvent::ResponsesRecorded(SurveyResponsesRecorded {
            survey: "s".into(),
            wave: "1".into(),
            rows: ids
                .iter()
                .map(|id| SurveyRow {
                    respondent_id: id.to_string(),
                    values: [("x".to_owned(), Cell::Number(1.5))].into(),
                })
                .collect(),
        })
    }

    #[test]
    fn redeliveries_resent_rows_and_late_rows_change_nothing() {
        let mut fold = SurveyFold::new();
        assert_eq!(fold.apply(1, "a", &declared()), Outcome::Applied);
        assert_eq!(fold.apply(2, "a", &batch(&["r1", "r2"])), Outcome::Applied);
        assert_eq!(
            fold.apply(2, "a", &batch(&["r3"])),
            Outcome::Ignored,
            "redelivery of sequence 2"
        );
        assert_eq!(fold.apply(3, "a", &batch(&["r2", "r3"])), Outcome::Applied);
        assert_eq!(fold.apply(4, "b", &batch(&["r4"])), Outcome::Ignored, "not the survey's owner");
        let close = SurveyEvent::WaveClosed(SurveyWaveClosed {
            survey: "s".into(),
            wave: "1".into(),
            respondents: 3,
            final_weights: Default::default(),
        });
        assert_eq!(fold.apply(5, "a", &close), Outcome::Applied);
        assert_eq!(fold.apply(6, "a", &batch(&["r5"])), Outcome::Ignored, "after the closure");
        let pending = fold.take_pending().unwrap();
        assert_eq!((pending.first_sequence, pending.last_sequence), (1, 6));
        let ids: Vec<&str> = pending.rows[&("s".to_owned(), "1".to_owned())]
            .iter()
            .map(|r| r.respondent_id.as_str())
            .collect();
        assert_eq!(ids, ["r1", "r2", "r3"]);
        assert!(pending.closed.contains_key(&("s".to_owned(), "1".to_owned())));
        assert_eq!(fold.rows_duplicate, 1);
        assert!(fold.take_pending().is_none());
    }
}
