//! [`SurveyLedger`]: which waves exist, who owns each survey, which respondents each open wave
//! has and which waves are closed. The ingest and the projector fold the same stream through it,
//! so they agree on which rows are new and which events are refused.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::events::{SurveyEvent, SurveyWaveClosed, SurveyWaveDeclared};
use super::row::check_row;
use crate::validate::FieldError;

/// 128-bit identity of a respondent: (survey, wave, respondent id). Survey ids are global
/// (a survey belongs to the agency that declared it first), so the source is not part of it.
pub fn respondent_key(survey: &str, wave: &str, respondent_id: &str) -> u128 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(survey.as_bytes());
    hasher.update(&[0]);
    hasher.update(wave.as_bytes());
    hasher.update(&[0]);
    hasher.update(respondent_id.as_bytes());
    hasher.digest128()
}

/// Why the ledger refuses an event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "survey '{survey}' belongs to agency '{owner}'; only its token may declare waves, record responses or close waves"
    )]
    NotOwner { survey: String, owner: String },
    #[error(
        "wave '{wave}' of survey '{survey}' is not declared; declare it first with POST /v1/surveys/{survey}/waves"
    )]
    NotDeclared { survey: String, wave: String },
    #[error(
        "wave '{wave}' of survey '{survey}' was declared differently at sequence {sequence}; a declared wave never changes: declare a new wave id"
    )]
    Redeclared { survey: String, wave: String, sequence: u64 },
    #[error(
        "wave '{wave}' of survey '{survey}' was closed at sequence {sequence}; it takes no more responses (declare a new wave for new fieldwork)"
    )]
    Closed { survey: String, wave: String, sequence: u64 },
    #[error(
        "wave '{wave}' of survey '{survey}' was already closed at sequence {sequence} with other final weights; a closure never changes"
    )]
    ClosedDifferently { survey: String, wave: String, sequence: u64 },
    #[error("final_weights: {0}")]
    FinalWeights(String),
    #[error("the declaration is not valid: {0}")]
    InvalidDeclaration(#[source] FieldError),
}

/// What the ledger did with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerOutcome {
    Declared,
    /// The identical declaration again (a retry): nothing changes.
    AlreadyDeclared,
    /// Indexes (into the batch) of the rows that are new, in batch order.
    Recorded {
        new_rows: Vec<usize>,
        duplicates: u64,
        invalid: u64,
    },
    Closed,
    /// The identical closure again: nothing changes.
    AlreadyClosed,
    Refused(LedgerError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaveClosure {
    pub sequence: u64,
    pub respondents: u64,
    pub final_weights: bool,
    /// Identity of the closure's final weights, so a retried closure is recognised.
    pub digest: u128,
}

/// One declared wave as the ledger knows it.
#[derive(Debug, Clone)]
pub struct WaveState {
    pub source: String,
    pub declaration: SurveyWaveDeclared,
    pub declared_sequence: u64,
    pub closed: Option<WaveClosure>,
    respondents: HashSet<u128>,
}

impl WaveState {
    pub fn respondents(&self) -> usize {
        self.respondents.len()
    }

    pub fn has_respondent(&self, respondent_id: &str) -> bool {
        self.respondents.contains(&respondent_key(
            &self.declaration.survey,
            &self.declaration.wave,
            respondent_id,
        ))
    }
}

fn weights_digest(weights: &BTreeMap<String, f64>) -> u128 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for (id, w) in weights {
        hasher.update(id.as_bytes());
        hasher.update(&[0]);
        hasher.update(&w.to_bits().to_le_bytes());
    }
    hasher.digest128()
}

/// Which waves exist, who owns each survey, which respondents each open wave has and which
/// waves are closed: the state both the ingest and the projector derive from the stream, with
/// the same rules, so they agree on what is new.
#[derive(Debug, Clone, Default)]
pub struct SurveyLedger {
    waves: BTreeMap<(String, String), WaveState>,
    owners: HashMap<String, String>,
}

impl SurveyLedger {
    pub fn new() -> SurveyLedger {
        SurveyLedger::default()
    }

    pub fn wave(&self, survey: &str, wave: &str) -> Option<&WaveState> {
        self.waves.get(&(survey.to_owned(), wave.to_owned()))
    }

    pub fn waves(&self) -> impl Iterator<Item = &WaveState> {
        self.waves.values()
    }

    pub fn survey_owner(&self, survey: &str) -> Option<&str> {
        self.owners.get(survey).map(String::as_str)
    }

    fn owned(&self, source: &str, survey: &str) -> Result<(), LedgerError> {
        match self.owners.get(survey) {
            Some(owner) if owner != source => {
                Err(LedgerError::NotOwner { survey: survey.to_owned(), owner: owner.clone() })
            }
            _ => Ok(()),
        }
    }

    /// `Ok(true)` when the declaration is new, `Ok(false)` when it repeats the existing one.
    pub fn check_declare(
        &self,
        source: &str,
        declaration: &SurveyWaveDeclared,
    ) -> Result<bool, LedgerError> {
        self.owned(source, &declaration.survey)?;
        match self.wave(&declaration.survey, &declaration.wave) {
            None => Ok(true),
            Some(existing) if existing.declaration == *declaration => Ok(false),
            Some(existing) => Err(LedgerError::Redeclared {
                survey: declaration.survey.clone(),
                wave: declaration.wave.clone(),
                sequence: existing.declared_sequence,
            }),
        }
    }

    /// The wave, if `source` may record responses in it now.
    pub fn check_open(
        &self,
        source: &str,
        survey: &str,
        wave: &str,
    ) -> Result<&WaveState, LedgerError> {
        self.owned(source, survey)?;
        let state = self.wave(survey, wave).ok_or_else(|| LedgerError::NotDeclared {
            survey: survey.to_owned(),
            wave: wave.to_owned(),
        })?;
        match state.closed {
            Some(closure) => Err(LedgerError::Closed {
                survey: survey.to_owned(),
                wave: wave.to_owned(),
                sequence: closure.sequence,
            }),
            None => Ok(state),
        }
    }

    /// `Ok(true)` when the closure is new, `Ok(false)` when it repeats the existing one. Final
    /// weights must name every recorded respondent once, with a positive finite weight.
    pub fn check_close(&self, source: &str, close: &SurveyWaveClosed) -> Result<bool, LedgerError> {
        self.owned(source, &close.survey)?;
        let state = self.wave(&close.survey, &close.wave).ok_or_else(|| {
            LedgerError::NotDeclared { survey: close.survey.clone(), wave: close.wave.clone() }
        })?;
        if let Some(closure) = state.closed {
            return if closure.digest == weights_digest(&close.final_weights) {
                Ok(false)
            } else {
                Err(LedgerError::ClosedDifferently {
                    survey: close.survey.clone(),
                    wave: close.wave.clone(),
                    sequence: closure.sequence,
                })
            };
        }
        if close.final_weights.is_empty() {
            return Ok(true);
        }
        let mut unknown = Vec::new();
        for (id, weight) in &close.final_weights {
            if !(weight.is_finite() && *weight > 0.0) {
                return Err(LedgerError::FinalWeights(format!(
                    "respondent '{id}': weight {weight} is not a positive finite number"
                )));
            }
            if !state.has_respondent(id) {
                unknown.push(id.as_str());
            }
        }
        if !unknown.is_empty() {
            let shown: Vec<&str> = unknown.iter().take(5).copied().collect();
            return Err(LedgerError::FinalWeights(format!(
                "{} respondent id(s) were never recorded in this wave: {}{}",
                unknown.len(),
                shown.join(", "),
                if unknown.len() > 5 { ", …" } else { "" }
            )));
        }
        if close.final_weights.len() != state.respondents.len() {
            return Err(LedgerError::FinalWeights(format!(
                "{} weights for {} recorded respondents; give one final weight per respondent",
                close.final_weights.len(),
                state.respondents.len()
            )));
        }
        Ok(true)
    }

    /// Applies the event at stream position `sequence`, published by `source`.
    pub fn apply(&mut self, sequence: u64, source: &str, event: &SurveyEvent) -> LedgerOutcome {
        match event {
            SurveyEvent::WaveDeclared(declaration) => {
                match self.check_declare(source, declaration) {
                    Err(e) => return LedgerOutcome::Refused(e),
                    Ok(false) => return LedgerOutcome::AlreadyDeclared,
                    Ok(true) => {}
                }
                // `validate` fails with at least one error; the first says what to fix.
                if let Err(errors) = declaration.validate()
                    && let Some(first) = errors.into_iter().next()
                {
                    return LedgerOutcome::Refused(LedgerError::InvalidDeclaration(first));
                }
                self.owners.entry(declaration.survey.clone()).or_insert_with(|| source.to_owned());
                self.waves.insert(
                    (declaration.survey.clone(), declaration.wave.clone()),
                    WaveState {
                        source: source.to_owned(),
                        declaration: declaration.clone(),
                        declared_sequence: sequence,
                        closed: None,
                        respondents: HashSet::new(),
                    },
                );
                LedgerOutcome::Declared
            }
            SurveyEvent::ResponsesRecorded(batch) => {
                if let Err(e) = self.check_open(source, &batch.survey, &batch.wave) {
                    return LedgerOutcome::Refused(e);
                }
                let state = self
                    .waves
                    .get_mut(&(batch.survey.clone(), batch.wave.clone()))
                    .expect("checked");
                let (mut new_rows, mut duplicates, mut invalid) = (Vec::new(), 0, 0);
                for (i, row) in batch.rows.iter().enumerate() {
                    if check_row(&state.declaration, row).is_err() {
                        invalid += 1;
                    } else if state.respondents.insert(respondent_key(
                        &batch.survey,
                        &batch.wave,
                        &row.respondent_id,
                    )) {
                        new_rows.push(i);
                    } else {
                        duplicates += 1;
                    }
                }
                LedgerOutcome::Recorded { new_rows, duplicates, invalid }
            }
            SurveyEvent::WaveClosed(close) => {
                match self.check_close(source, close) {
                    Err(e) => return LedgerOutcome::Refused(e),
                    Ok(false) => return LedgerOutcome::AlreadyClosed,
                    Ok(true) => {}
                }
                let state = self
                    .waves
                    .get_mut(&(close.survey.clone(), close.wave.clone()))
                    .expect("checked");
                state.closed = Some(WaveClosure {
                    sequence,
                    respondents: state.respondents.len() as u64,
                    final_weights: !close.final_weights.is_empty(),
                    digest: weights_digest(&close.final_weights),
                });
                // A closed wave takes no more rows: its respondent set is no longer needed.
                state.respondents = HashSet::new();
                LedgerOutcome::Closed
            }
        }
    }

    /// Restores a wave from a projection snapshot (the projector's restart path).
    pub fn restore_wave(
        &mut self,
        source: &str,
        declaration: SurveyWaveDeclared,
        declared_sequence: u64,
        closed: Option<WaveClosure>,
        respondent_ids: impl IntoIterator<Item = String>,
    ) {
        let respondents = if closed.is_some() {
            HashSet::new()
        } else {
            respondent_ids
                .into_iter()
                .map(|id| respondent_key(&declaration.survey, &declaration.wave, &id))
                .collect()
        };
        self.owners.entry(declaration.survey.clone()).or_insert_with(|| source.to_owned());
        self.waves.insert(
            (declaration.survey.clone(), declaration.wave.clone()),
            WaveState {
                source: source.to_owned(),
                declaration,
                declared_sequence,
                closed,
                respondents,
            },
        );
    }

    /// Recomputes the owners after restores in arbitrary order: the owner of a survey is the
    /// source of its earliest declared wave.
    pub fn settle_owners(&mut self) {
        let mut earliest: HashMap<String, (u64, String)> = HashMap::new();
        for state in self.waves.values() {
            let entry = earliest
                .entry(state.declaration.survey.clone())
                .or_insert((state.declared_sequence, state.source.clone()));
            if state.declared_sequence < entry.0 {
                *entry = (state.declared_sequence, state.source.clone());
            }
        }
        self.owners = earliest.into_iter().map(|(survey, (_, source))| (survey, source)).collect();
    }

    /// Surveys known, for listings.
    pub fn surveys(&self) -> BTreeSet<&str> {
        self.waves.keys().map(|(s, _)| s.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::survey::fixtures::{csv_row, declaration};
    use crate::survey::{SurveyResponsesRecorded, validate_row};

    #[test]
    fn the_ledger_dedupes_respondents_refuses_late_rows_and_checks_final_weights() {
        let d = declaration();
        let mut ledger = SurveyLedger::new();
        assert_eq!(
            ledger.apply(1, "ssmsi", &SurveyEvent::WaveDeclared(d.clone())),
            LedgerOutcome::Declared
        );
        assert_eq!(
            ledger.apply(2, "ssmsi", &SurveyEvent::WaveDeclared(d.clone())),
            LedgerOutcome::AlreadyDeclared
        );
        assert!(matches!(
            ledger.apply(3, "pn", &SurveyEvent::WaveDeclared(d.clone())),
            LedgerOutcome::Refused(LedgerError::NotOwner { .. })
        ));
        let row = |id: &str| {
            validate_row(
                &d,
                csv_row(&[
                    ("hh", id),
                    ("region", "11"),
                    ("psu", "1"),
                    ("w", "2.5"),
                    ("victim", "yes"),
                ]),
            )
            .unwrap()
        };
        let batch = SurveyEvent::ResponsesRecorded(SurveyResponsesRecorded {
            survey: "cvs".into(),
            wave: "2024".into(),
            rows: vec![row("A"), row("B"), row("A")],
        });
        assert_eq!(
            ledger.apply(4, "ssmsi", &batch),
            LedgerOutcome::Recorded { new_rows: vec![0, 1], duplicates: 1, invalid: 0 }
        );
        assert_eq!(
            ledger.apply(5, "ssmsi", &batch),
            LedgerOutcome::Recorded { new_rows: vec![], duplicates: 3, invalid: 0 }
        );
        let mut close = SurveyWaveClosed {
            survey: "cvs".into(),
            wave: "2024".into(),
            respondents: 2,
            final_weights: [("A".to_owned(), 3.0)].into(),
        };
        assert!(matches!(ledger.check_close("ssmsi", &close), Err(LedgerError::FinalWeights(_))));
        close.final_weights.insert("B".into(), 4.0);
        assert_eq!(
            ledger.apply(6, "ssmsi", &SurveyEvent::WaveClosed(close.clone())),
            LedgerOutcome::Closed
        );
        assert_eq!(
            ledger.apply(7, "ssmsi", &SurveyEvent::WaveClosed(close.clone())),
            LedgerOutcome::AlreadyClosed
        );
        assert!(matches!(
            ledger.apply(8, "ssmsi", &batch),
            LedgerOutcome::Refused(LedgerError::Closed { sequence: 6, .. })
        ));
        close.final_weights.insert("B".into(), 5.0);
        assert!(matches!(
            ledger.check_close("ssmsi", &close),
            Err(LedgerError::ClosedDifferently { .. })
        ));
    }

    #[test]
    fn an_invalid_declaration_is_refused_with_its_first_field_error_as_source() {
        let mut bad = declaration();
        bad.wave = "Wave 1".into();
        let outcome = SurveyLedger::new().apply(1, "ssmsi", &SurveyEvent::WaveDeclared(bad));
        let LedgerOutcome::Refused(error) = outcome else { panic!("{outcome:?}") };
        assert!(
            error.to_string().starts_with("the declaration is not valid: wave: 'Wave 1' is not"),
            "{error}"
        );
        let source = std::error::Error::source(&error).expect("the field error is kept");
        assert!(source.to_string().starts_with("wave: "), "{source}");
    }
}
