//! What can go wrong answering a survey request, and the HTTP status and message of each.

use axum::http::StatusCode;
use observatory_stats::StatsError;
use observatory_store::StoreError;

use super::engine::WavesTableError;
use crate::counts::QueryError;
use crate::error::ApiError;
use crate::request::RequestError;
use crate::serving::{NotYet, ServingError};
use crate::vintage::VintageError;

#[derive(Debug, thiserror::Error)]
pub enum SurveyQueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: WavesTableError,
    },
    #[error(transparent)]
    NotYet(#[from] NotYet),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("wave '{wave}' of survey '{survey}' has no respondents yet")]
    NoRespondents { survey: String, wave: String },
    #[error(transparent)]
    Stats(#[from] StatsError),
    #[error(transparent)]
    Incidents(#[from] QueryError),
    #[error(transparent)]
    Vintage(#[from] VintageError),
    /// Refused before any number was computed (a projection the public tier cannot be served
    /// from).
    #[error("{}", .0.message())]
    Refused(ApiError),
    /// The blocking task decoding a table or estimating panicked or was cancelled.
    #[error("estimation task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl From<ServingError> for SurveyQueryError {
    fn from(error: ServingError) -> Self {
        match error {
            ServingError::Store(e) => SurveyQueryError::Store(e),
            ServingError::NotYet(e) => SurveyQueryError::NotYet(e),
        }
    }
}

impl From<RequestError> for SurveyQueryError {
    fn from(error: RequestError) -> Self {
        SurveyQueryError::BadRequest(error.0)
    }
}

impl SurveyQueryError {
    pub fn status(&self) -> StatusCode {
        match self {
            SurveyQueryError::NotYet(_) | SurveyQueryError::Incidents(QueryError::NotYet(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            SurveyQueryError::NotFound(_) => StatusCode::NOT_FOUND,
            SurveyQueryError::Incidents(e) => e.status(),
            SurveyQueryError::Vintage(e) => crate::error::vintage_status(e),
            SurveyQueryError::Refused(e) => e.status(),
            SurveyQueryError::BadRequest(_) => StatusCode::BAD_REQUEST,
            SurveyQueryError::NoRespondents { .. } => StatusCode::CONFLICT,
            SurveyQueryError::Stats(
                StatsError::UnknownColumn { .. } | StatsError::InvalidRequest(_),
            ) => StatusCode::BAD_REQUEST,
            // The data cannot give this estimate (a lonely PSU, a zero denominator…).
            SurveyQueryError::Stats(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client reads: the error's own words, but a remedy it can apply over HTTP.
    pub fn message(&self) -> String {
        match self {
            // The statistics crate words its remedy for the CLI; over HTTP the design comes
            // from the wave's declaration, which cannot change.
            SurveyQueryError::Stats(StatsError::LonelyPsu { stratum, stage, context }) => format!(
                "stratum '{stratum}' has only one PSU at stage {stage}{context}, and the wave's design declares no \
                 lonely-PSU rule (\"lonely_psu\": \"fail\", the default): a declared wave cannot change, so declare \
                 the wave again under a new id with \"design\": {{\"lonely_psu\": \"adjust\"}} (or average, remove, \
                 certainty) in POST /v1/surveys/{{survey}}/waves, or merge the stratum with a neighbour in the data"
            ),
            _ => self.to_string(),
        }
    }
}

impl From<SurveyQueryError> for ApiError {
    fn from(error: SurveyQueryError) -> ApiError {
        ApiError::new(error.status(), error.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lonely_psu_is_answered_with_the_http_remedy() {
        let e = SurveyQueryError::Stats(StatsError::LonelyPsu {
            stratum: "84".into(),
            stage: 1,
            context: String::new(),
        });
        let text = e.message();
        assert!(
            text.contains("stratum '84'") && text.contains("\"lonely_psu\": \"adjust\""),
            "{text}"
        );
        assert!(!text.contains("--lonely-psu"), "no CLI flag over HTTP: {text}");
        assert_eq!(ApiError::from(e).status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
