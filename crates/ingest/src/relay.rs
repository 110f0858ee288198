//! Agencies publishing straight to NATS: records sent (as a request) to
//! `feeds.<agency>.incidents` are validated and published exactly as `POST /v1/incidents`
//! does, and the publisher gets the same JSON answer on its reply subject.
//!
//! The agency is the subject's second token. Nothing else is needed to trust it: the server
//! lets an agency's NKey user publish on `feeds.<its id>.>` only ([`crate::nats_auth`]).
//! Every ingest replica subscribes in one queue group, so each message is handled once.

use std::sync::Arc;

use axum::response::IntoResponse;
use futures::StreamExt;
use observatory_bus::async_nats::{HeaderMap, Message};
use observatory_bus::{Bus, BusError};
use tokio::sync::Semaphore;

use crate::api::{IngestState, ingest_records};
use crate::error::ApiError;
use crate::parse::Format;
use crate::upload;

/// What the relay listens on: every agency's incident feed.
pub const FEEDS: &str = "feeds.*.incidents";
const QUEUE_GROUP: &str = "observatory-relay";
/// Batches handled at once; more wait in the subscription.
const IN_FLIGHT: usize = 16;

/// Subscribes to the feeds, then serves them in a task until the connection closes.
pub async fn start(state: Arc<IngestState>, bus: &Bus) -> Result<(), BusError> {
    let client = bus.client().clone();
    let mut feeds = client.queue_subscribe(FEEDS, QUEUE_GROUP.to_owned()).await.map_err(|e| {
        BusError::Consumer {
            stream: bus.config().stream.clone(),
            name: "relay".into(),
            message: format!("cannot subscribe to {FEEDS}: {e}"),
        }
    })?;
    tracing::info!(subjects = FEEDS, "relaying agencies' NATS feeds");
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        while let Some(message) = feeds.next().await {
            let permit = permits.clone().acquire_owned().await.expect("never closed");
            let (state, client) = (state.clone(), client.clone());
            tokio::spawn(async move {
                let Some(reply) = message.reply.clone() else {
                    tracing::warn!(subject = %message.subject, "feed message without a reply subject: send records as a request");
                    return;
                };
                let (status, body) = answer(&state, &message).await;
                let mut headers = HeaderMap::new();
                headers.insert("Status", status.to_string().as_str());
                if let Err(error) = client.publish_with_headers(reply, headers, body).await {
                    tracing::warn!(%error, "cannot answer a feed message");
                }
                drop(permit);
            });
        }
    });
    Ok(())
}

/// The HTTP status and JSON body `POST /v1/incidents` would have answered.
#[tracing::instrument(
    name = "relay",
    skip_all,
    fields(source, records, accepted, duplicates, rejected)
)]
async fn answer(state: &IngestState, message: &Message) -> (u16, bytes::Bytes) {
    let response = match handle(state, message).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_else(|_| bytes::Bytes::from_static(b"{}"));
    (status, body)
}

async fn handle(
    state: &IngestState,
    message: &Message,
) -> Result<axum::response::Response, ApiError> {
    let id = message.subject.split('.').nth(1).unwrap_or_default();
    tracing::Span::current().record("source", id);
    let agency = state.registry().by_id(id).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            format!("'{id}' is not a registered agency; ask the observatory for `observatory agency add {id} --nats`"),
        )
    })?;
    // NDJSON unless the message says otherwise: one record per message is one line.
    let content_type =
        message.headers.as_ref().and_then(|h| h.get("Content-Type")).map(|v| v.as_str().to_owned());
    let format = match content_type.as_deref() {
        None => Format::Ndjson,
        Some(content_type) => Format::from_content_type(content_type).ok_or_else(|| {
            upload::unsupported_media(
                content_type,
                "use application/x-ndjson (the default), application/json (an array) or text/csv in the Content-Type header",
            )
        })?,
    };
    let (summary, failed) = ingest_records(state, &agency, format, message.payload.clone()).await?;
    upload::tally(&agency.id, observatory_metrics::Records::Incidents, &summary, failed.len());
    upload::summary_answer(summary, failed, "records")
}
