use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::incident::{IncidentReported, IncidentReportedV1, IncidentWithdrawn, PeriodClosed};

/// What travels on the bus: the envelope fields, then the payload.
///
/// The position of an event (its stream sequence) is not part of it: JetStream assigns it
/// on publish and it is read from the message metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// UUIDv7; also sent as the `Nats-Msg-Id` header so the server drops fast retries.
    pub event_id: Uuid,
    pub event_type: EventKind,
    pub schema_version: u32,
    /// The agency that produced the event (decided by its token, never by the record).
    pub source: String,
    pub recorded_at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    IncidentReported,
    IncidentWithdrawn,
    PeriodClosed,
    SurveyWaveDeclared,
    SurveyResponsesRecorded,
    SurveyWaveClosed,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::IncidentReported,
        EventKind::IncidentWithdrawn,
        EventKind::PeriodClosed,
        EventKind::SurveyWaveDeclared,
        EventKind::SurveyResponsesRecorded,
        EventKind::SurveyWaveClosed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::IncidentReported => "IncidentReported",
            EventKind::IncidentWithdrawn => "IncidentWithdrawn",
            EventKind::PeriodClosed => "PeriodClosed",
            EventKind::SurveyWaveDeclared => "SurveyWaveDeclared",
            EventKind::SurveyResponsesRecorded => "SurveyResponsesRecorded",
            EventKind::SurveyWaveClosed => "SurveyWaveClosed",
        }
    }

    /// Latest schema version written by this code; older versions are upcast on decode.
    pub fn current_version(self) -> u32 {
        match self {
            EventKind::IncidentReported => 2,
            EventKind::IncidentWithdrawn | EventKind::PeriodClosed => 1,
            EventKind::SurveyWaveDeclared | EventKind::SurveyResponsesRecorded | EventKind::SurveyWaveClosed => 1,
        }
    }

    pub fn family(self) -> &'static str {
        match self {
            EventKind::SurveyWaveDeclared | EventKind::SurveyResponsesRecorded | EventKind::SurveyWaveClosed => "survey",
            _ => "incident",
        }
    }

    /// Subject token of the event type: `obs.<family>.<token>.<source>`.
    pub fn subject_token(self) -> &'static str {
        match self {
            EventKind::IncidentReported => "reported",
            EventKind::IncidentWithdrawn => "withdrawn",
            EventKind::PeriodClosed => "period_closed",
            EventKind::SurveyWaveDeclared => "declared",
            EventKind::SurveyResponsesRecorded => "responses",
            EventKind::SurveyWaveClosed => "closed",
        }
    }
}

/// A decoded, upcast event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    IncidentReported(IncidentReported),
    IncidentWithdrawn(IncidentWithdrawn),
    PeriodClosed(PeriodClosed),
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::IncidentReported(_) => EventKind::IncidentReported,
            Event::IncidentWithdrawn(_) => EventKind::IncidentWithdrawn,
            Event::PeriodClosed(_) => EventKind::PeriodClosed,
        }
    }

    /// The incident an event is about; `None` for events about a period.
    pub fn incident(&self) -> Option<(&str, u32)> {
        match self {
            Event::IncidentReported(e) => Some((&e.agency_incident_id, e.revision)),
            Event::IncidentWithdrawn(e) => Some((&e.agency_incident_id, e.revision)),
            Event::PeriodClosed(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event is not valid JSON for its envelope: {0}")]
    Envelope(#[source] serde_json::Error),
    #[error("{kind} schema version {version} is newer than this build understands (max {max}); upgrade the observatory")]
    FutureVersion { kind: &'static str, version: u32, max: u32 },
    #[error("{kind} v{version} payload does not match its schema: {source}")]
    Payload {
        kind: &'static str,
        version: u32,
        #[source]
        source: serde_json::Error,
    },
    #[error("{kind} is a {family} event, not a {expected} event; decode it with the {family} decoder")]
    WrongFamily { kind: &'static str, family: &'static str, expected: &'static str },
}

impl Envelope {
    /// Wraps a payload in a fresh envelope (new UUIDv7).
    pub fn new(event: &Event, source: &str, recorded_at: DateTime<Utc>) -> Envelope {
        let payload = match event {
            Event::IncidentReported(e) => serde_json::to_value(e),
            Event::IncidentWithdrawn(e) => serde_json::to_value(e),
            Event::PeriodClosed(e) => serde_json::to_value(e),
        }
        .expect("event payloads always serialise");
        Envelope {
            event_id: Uuid::now_v7(),
            event_type: event.kind(),
            schema_version: event.kind().current_version(),
            source: source.to_owned(),
            recorded_at,
            payload,
        }
    }

    /// `obs.<family>.<event_type>.<source>`
    pub fn subject(&self) -> String {
        subject(self.event_type, &self.source)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("envelopes always serialise")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        serde_json::from_slice(bytes).map_err(DecodeError::Envelope)
    }

    /// Decodes the payload, upcasting older schema versions to the current type.
    pub fn event(&self) -> Result<Event, DecodeError> {
        let kind = self.event_type;
        let max = kind.current_version();
        if self.schema_version > max {
            return Err(DecodeError::FutureVersion { kind: kind.as_str(), version: self.schema_version, max });
        }
        // History is never edited: an older version is read with its own type and upcast.
        let payload_err =
            |source| DecodeError::Payload { kind: kind.as_str(), version: self.schema_version, source };
        Ok(match (kind, self.schema_version) {
            (EventKind::IncidentReported, 1) => Event::IncidentReported(
                serde_json::from_value::<IncidentReportedV1>(self.payload.clone()).map_err(payload_err)?.into(),
            ),
            (EventKind::IncidentReported, _) => {
                Event::IncidentReported(serde_json::from_value(self.payload.clone()).map_err(payload_err)?)
            }
            (EventKind::IncidentWithdrawn, _) => {
                Event::IncidentWithdrawn(serde_json::from_value(self.payload.clone()).map_err(payload_err)?)
            }
            (EventKind::PeriodClosed, _) => {
                Event::PeriodClosed(serde_json::from_value(self.payload.clone()).map_err(payload_err)?)
            }
            // Survey payloads are decoded from the message bytes (exact numbers): `SurveyEvent::decode`.
            (EventKind::SurveyWaveDeclared | EventKind::SurveyResponsesRecorded | EventKind::SurveyWaveClosed, _) => {
                return Err(DecodeError::WrongFamily { kind: kind.as_str(), family: kind.family(), expected: "incident" });
            }
        })
    }
}

pub fn subject(kind: EventKind, source: &str) -> String {
    format!("{}.{}.{}.{}", crate::SUBJECT_ROOT, kind.family(), kind.subject_token(), source)
}
