//! `POST /v1/releases` (publisher token), `GET /v1/releases`, `GET /v1/releases/{id}`, and the
//! one function that makes a release (the CLI's `observatory release create` calls it too).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use observatory_disclosure::Policy;
use observatory_store::{Projection, ProjectionId, Release, ReleaseDraft, Store, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::QueryState;
use crate::disclosure::Tier;
use crate::error::ApiError;

/// Freezes the serving manifest of every projection and the disclosure parameters in force as
/// a new release.
pub async fn create_release(
    store: &Store,
    policy: &Policy,
    name: Option<String>,
    note: Option<String>,
) -> Result<Release, StoreError> {
    let mut projections = BTreeMap::new();
    for id in ProjectionId::ALL {
        if let Some(manifest) = Projection::new(store.clone(), id).serving_manifest().await? {
            projections.insert(id.name().to_owned(), manifest);
        }
    }
    let disclosure = serde_json::to_value(policy.parameters()).expect("parameters serialise");
    observatory_store::Releases::new(store.clone())
        .create(ReleaseDraft { name, note, projections, disclosure })
        .await
}

/// What the API shows of a release: its identity, what it froze (versions, sequences, commit
/// times, reference data), not the file lists.
pub fn summary(release: &Release) -> Value {
    let projections: serde_json::Map<String, Value> = release
        .projections
        .iter()
        .map(|(name, m)| {
            (
                name.clone(),
                json!({"version": m.version, "sequence": m.last_sequence, "committed_at": m.committed_at,
                       "reference": m.reference}),
            )
        })
        .collect();
    json!({
        "id": release.id, "name": release.name, "note": release.note, "created_at": release.created_at,
        "projections": projections, "disclosure": release.disclosure,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRelease {
    name: Option<String>,
    note: Option<String>,
}

fn check_text(field: &str, value: &Option<String>, max: usize) -> Result<(), ApiError> {
    let Some(value) = value else { return Ok(()) };
    if value.trim().is_empty() || value.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{field} must be 1 to {max} characters (leave it out for the default)"
        )));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(ApiError::bad_request(format!(
            "{field} holds the control character U+{:04X}; send plain text",
            u32::from(c)
        )));
    }
    Ok(())
}

#[tracing::instrument(name = "release_create", skip_all)]
pub async fn create(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    match state.disclosure.tier(&headers)? {
        Tier::Publisher => {}
        Tier::Public => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "creating a release needs a publisher token: send 'Authorization: Bearer <token>' from \
                 `observatory reader add NAME --role publisher`",
            ));
        }
        Tier::Researcher => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this reader token has role researcher; creating a release needs role publisher",
            ));
        }
    }
    let request: NewRelease = if body.iter().all(u8::is_ascii_whitespace) {
        NewRelease::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body must be a JSON object {{\"name\": ..., \"note\": ...}} (both optional): {e}"
            ))
        })?
    };
    check_text("name", &request.name, 200)?;
    check_text("note", &request.note, 10_000)?;
    let store = state.engine.serving().projection().store().clone();
    let release = create_release(&store, &state.disclosure.policy, request.name, request.note)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    tracing::info!(release = %release.id, "release created");
    Ok((StatusCode::CREATED, Json(summary(&release))).into_response())
}

#[tracing::instrument(name = "releases", skip_all)]
pub async fn list(State(state): State<Arc<QueryState>>) -> Result<Json<Value>, ApiError> {
    let releases = state
        .vintages
        .releases()
        .list()
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({"releases": releases.iter().map(summary).collect::<Vec<_>>()})))
}

#[tracing::instrument(name = "release", skip_all, fields(id))]
pub async fn show(
    State(state): State<Arc<QueryState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let release = state
        .vintages
        .releases()
        .get(&id)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("release '{id}' does not exist; GET /v1/releases lists them"),
            )
        })?;
    Ok(Json(summary(&release)))
}
