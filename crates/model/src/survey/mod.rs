//! Survey waves as events. A survey producer declares a wave (population, reference period,
//! sampling design, the questionnaire's variables), records respondents in batches, then closes
//! the wave, optionally with final weights. Rows are checked against the declaration here so the
//! ingest and the projector apply the same rules, and [`SurveyLedger`] decides — identically on
//! both sides — which rows are new: a respondent is keyed by (survey, wave, respondent id), so a
//! re-sent batch changes nothing, and a closed wave takes no more rows.
//!
//! Numbers in survey payloads are decoded from their JSON text with Rust's correctly rounded
//! `str::parse`, never through `serde_json::Value` (whose default float parsing may be one ulp
//! off): an estimate from the pipeline must equal the estimate from the same CSV file to the
//! last digit. Survey payloads are therefore decoded with [`SurveyEvent::decode`] from the
//! message bytes, not with [`Envelope::event`](crate::Envelope::event).

mod decode;
mod events;
#[cfg(test)]
mod fixtures;
mod ledger;
mod row;
mod validate;

pub use decode::{InputCell, JsonRow, parse_close_json, parse_json_row};
pub use events::{
    Cell, DecodedSurveyEvent, FINAL_WEIGHT_COLUMN, LonelyPsuRule, Population, ReferencePeriod,
    SurveyDesign, SurveyEvent, SurveyResponsesRecorded, SurveyRow, SurveyVariable,
    SurveyWaveClosed, SurveyWaveDeclared, VariableType, VictimisationItem, cell_matches,
};
pub use ledger::{
    LedgerError, LedgerOutcome, SurveyLedger, WaveClosure, WaveState, respondent_key,
};
pub use row::{check_row, validate_row};
pub use validate::{is_valid_survey_id, is_valid_variable_name, is_valid_wave_id};
