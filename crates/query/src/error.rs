//! The error answer of every query endpoint: a status and a message the client can act on, as
//! the JSON body `{"error": "...", "status": 400}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::counts::QueryError;
use crate::request::RequestError;
use crate::vintage::VintageError;

/// An endpoint's refusal or failure. Handlers return `Result<_, ApiError>` and use `?`: each
/// library error says which status it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    /// The request is at fault (400).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A 503 is the projection being behind, which the client retries; anything else in the
        // 5xx range is ours to look at.
        if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "query failed");
        }
        let body = json!({"error": self.message, "status": self.status.as_u16()});
        (self.status, Json(body)).into_response()
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> ApiError {
        ApiError::bad_request(error.0)
    }
}

impl QueryError {
    pub fn status(&self) -> StatusCode {
        match self {
            QueryError::NotYet(_) => StatusCode::SERVICE_UNAVAILABLE,
            QueryError::Vintage(e) => vintage_status(e),
            e if e.is_bad_request() => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A vintage that does not exist is a 404; one not reached yet a 503.
pub fn vintage_status(error: &VintageError) -> StatusCode {
    match error {
        VintageError::Serving(_) => StatusCode::SERVICE_UNAVAILABLE,
        VintageError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::NOT_FOUND,
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> ApiError {
        ApiError::new(error.status(), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clients and the end-to-end tests read this body: its shape does not change.
    #[tokio::test]
    async fn the_body_says_the_error_and_its_status() {
        let response = ApiError::bad_request("from=2024-05 is after to=2024-01").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"error":"from=2024-05 is after to=2024-01","status":400}"#
        );
    }

    #[test]
    fn query_errors_carry_their_status() {
        let mixed = ApiError::from(QueryError::MixedUnits("offence, report".into()));
        assert_eq!(mixed.status(), StatusCode::BAD_REQUEST);
        assert!(mixed.message().starts_with("the selected counts mix units (offence, report)"));
        let not_yet = ApiError::from(QueryError::NotYet(crate::serving::NotYet {
            projection: observatory_store::ProjectionId::Incidents,
            reached: 1,
            wanted: 2,
            waited: std::time::Duration::ZERO,
        }));
        assert_eq!(not_yet.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(not_yet.message().ends_with("retry later"));
    }
}
