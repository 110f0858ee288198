//! The refusals of the SDMX endpoints: the status REST v2 gives each (400 syntax, 401, 404 no
//! such artefact, 406 format, 413 too large, 422 semantics, 501 not implemented, 503 not yet)
//! and a body in the negotiated format, with the SDMX error code of that status.

use axum::http::StatusCode;

use crate::error::ApiError;
use crate::request::RequestError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdmxError {
    status: StatusCode,
    message: String,
}

impl SdmxError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> SdmxError {
        SdmxError { status, message: message.into() }
    }

    pub fn syntax(message: impl Into<String>) -> SdmxError {
        SdmxError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn semantic(message: impl Into<String>) -> SdmxError {
        SdmxError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> SdmxError {
        SdmxError::new(StatusCode::NOT_ACCEPTABLE, message)
    }

    pub fn not_found(message: impl Into<String>) -> SdmxError {
        SdmxError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The SDMX REST error code of the status (the standard's table; 1000 for ours).
    pub fn code(&self) -> u16 {
        match self.status.as_u16() {
            400 => 140,
            401 | 403 => 110,
            404 => 100,
            413 => 130,
            422 => 150,
            500 => 500,
            501 => 501,
            503 => 503,
            _ => 1000,
        }
    }
}

impl From<ApiError> for SdmxError {
    fn from(error: ApiError) -> SdmxError {
        // The counts API says 400 for a request its data cannot answer (a source that sent
        // nothing, a mix of units); in SDMX terms the query is well formed but meaningless.
        let status = if error.status() == StatusCode::BAD_REQUEST {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            error.status()
        };
        SdmxError::new(status, error.message())
    }
}

impl From<RequestError> for SdmxError {
    fn from(error: RequestError) -> SdmxError {
        SdmxError::semantic(error.0)
    }
}

impl From<crate::counts::QueryError> for SdmxError {
    fn from(error: crate::counts::QueryError) -> SdmxError {
        SdmxError::from(ApiError::from(error))
    }
}
