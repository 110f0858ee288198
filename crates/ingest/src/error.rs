//! The service's HTTP error: a status and a message that say what to do next, answered as the
//! JSON body `{"error": <message>, "status": <code>, ...}` every endpoint shares.

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use observatory_model::survey::LedgerError;
use serde_json::{Map, Value, json};

use crate::parse::BodyError;

/// An answer other than success. Handlers return `Result<Response, ApiError>` and use `?`.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// More members of the body beside `error` and `status` (per-record problems, a partial
    /// summary); they never override those two.
    details: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), details: Map::new() }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// Adds a member to the body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// Adds every member of a JSON object (a summary) to the body.
    pub fn with_all(mut self, object: Value) -> ApiError {
        if let Value::Object(members) = object {
            self.details.extend(members);
        }
        self
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
        let mut body = self.details;
        body.insert("error".into(), json!(self.message));
        body.insert("status".into(), json!(self.status.as_u16()));
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Long enough for a JetStream leader election to finish.
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"observatory\""),
            );
        }
        response
    }
}

/// A body axum could not read (other than one over the size limit, which each upload
/// answers with its own advice): axum's status and text.
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

/// Path segments that cannot be read are the client's mistake, whatever axum's status.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::bad_request(rejection.body_text())
    }
}

/// What the survey ledger refuses, with the status that tells the producer what to change.
impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        let status = match &e {
            LedgerError::NotOwner { .. } => StatusCode::FORBIDDEN,
            LedgerError::NotDeclared { .. } => StatusCode::NOT_FOUND,
            LedgerError::Redeclared { .. }
            | LedgerError::Closed { .. }
            | LedgerError::ClosedDifferently { .. } => StatusCode::CONFLICT,
            LedgerError::FinalWeights(_) | LedgerError::InvalidDeclaration(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        };
        ApiError::new(status, e.to_string())
    }
}

/// A body refused whole: unreadable (400), or holding more records than a request may (413).
impl From<BodyError> for ApiError {
    fn from(error: BodyError) -> ApiError {
        match error {
            BodyError::Unreadable(why) => ApiError::bad_request(why),
            too_many @ BodyError::TooManyRecords { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, too_many.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn the_body_names_the_error_and_the_status_and_keeps_details() {
        let response =
            ApiError::unprocessable("not valid").with("rejected", json!([1])).into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(
            body(response).await,
            json!({"error": "not valid", "status": 422, "rejected": [1]})
        );
    }

    #[tokio::test]
    async fn an_unauthorized_answer_asks_for_a_bearer_token() {
        let response = ApiError::unauthorized("who are you").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"observatory\"");
        assert_eq!(body(response).await, json!({"error": "who are you", "status": 401}));
    }

    #[tokio::test]
    async fn a_summary_keeps_its_members_under_error_and_status() {
        let summary = json!({"accepted": 1, "status": "ignored"});
        let response = ApiError::unavailable("resend").with_all(summary).into_response();
        assert_eq!(body(response).await, json!({"accepted": 1, "error": "resend", "status": 503}));
    }
}
