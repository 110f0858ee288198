//! The envelope every event travels in, the kinds of event and their families, and the
//! decoding (with upcasting of older schema versions) of incident-family payloads.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::incident::{IncidentReported, IncidentReportedV1, IncidentWithdrawn, PeriodClosed};

mod head;
mod payload;

/// What travels on the bus: the envelope fields, then the payload.
///
/// The position of an event (its stream sequence) is not part of it: JetStream assigns it
/// on publish and it is read from the message metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// UUIDv7. Events without a subject of their own (closures, survey events) also send it
    /// as the `Nats-Msg-Id` header so the server drops fast retries; an incident revision's
    /// expected last subject sequence does that job instead.
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
            EventKind::SurveyWaveDeclared
            | EventKind::SurveyResponsesRecorded
            | EventKind::SurveyWaveClosed => 1,
        }
    }

    pub fn family(self) -> EventFamily {
        match self {
            EventKind::IncidentReported
            | EventKind::IncidentWithdrawn
            | EventKind::PeriodClosed => EventFamily::Incident,
            EventKind::SurveyWaveDeclared
            | EventKind::SurveyResponsesRecorded
            | EventKind::SurveyWaveClosed => EventFamily::Survey,
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

/// The families of events: each has its own subjects (`obs.<family>.>`), its own decoder
/// ([`Envelope::event`] for incidents, `SurveyEvent::decode` for surveys) and its own projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventFamily {
    Incident,
    Survey,
}

impl EventFamily {
    /// The family's subject token, also used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            EventFamily::Incident => "incident",
            EventFamily::Survey => "survey",
        }
    }
}

impl std::fmt::Display for EventFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    #[error(
        "{kind} schema version {version} is newer than this build understands (max {max}); upgrade the observatory"
    )]
    FutureVersion { kind: &'static str, version: u32, max: u32 },
    #[error("{kind} v{version} payload does not match its schema: {source}")]
    Payload {
        kind: &'static str,
        version: u32,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{kind} is a {family} event, not a {expected} event; decode it with the {family} decoder"
    )]
    WrongFamily { kind: &'static str, family: EventFamily, expected: EventFamily },
}

impl Envelope {
    /// Wraps a payload in a fresh envelope (new UUIDv7).
    pub fn new(event: &Event, source: &str, recorded_at: DateTime<Utc>) -> Envelope {
        let payload =
            serde_json::to_value(PayloadRef(event)).expect("event payloads always serialise");
        Envelope {
            event_id: Uuid::now_v7(),
            event_type: event.kind(),
            schema_version: event.kind().current_version(),
            source: source.to_owned(),
            recorded_at,
            payload,
        }
    }

    /// The bytes of a fresh envelope around `event` (new UUIDv7), the same as
    /// `Envelope::new(event, source, recorded_at).to_bytes()` gives with that id, without
    /// building the payload as a JSON tree on the way. A batch's events share one
    /// [`RecordedAt`]: see [`encode_recorded`](Self::encode_recorded).
    pub fn encode(event: &Event, source: &str, recorded_at: DateTime<Utc>) -> (Uuid, Vec<u8>) {
        Envelope::encode_recorded(event, source, &RecordedAt::new(recorded_at))
    }

    /// [`encode`](Self::encode) with the time already written (the ingest's hot path: one
    /// time per batch, not formatted again for each of its records).
    pub fn encode_recorded(
        event: &Event,
        source: &str,
        recorded_at: &RecordedAt,
    ) -> (Uuid, Vec<u8>) {
        let encoded = Envelope::encode_parts(event, source, recorded_at);
        (encoded.event_id, encoded.bytes)
    }

    /// [`encode_recorded`](Self::encode_recorded), saying where the payload's JSON lies in
    /// the bytes: the revision stamp hashes those bytes instead of writing the event again.
    pub fn encode_parts(event: &Event, source: &str, recorded_at: &RecordedAt) -> Encoded {
        let event_id = Uuid::now_v7();
        let kind = event.kind();
        let head = EnvelopeHead {
            event_id,
            event_type: kind,
            schema_version: kind.current_version(),
            source,
            recorded_at: &recorded_at.text,
        };
        // `{head fields,"payload":payload}`: what `#[derive(Serialize)]` writes for the
        // envelope's fields in this order (compact JSON), the payload last.
        let mut bytes = Vec::with_capacity(512);
        serde_json::to_writer(&mut bytes, &head).expect("envelopes always serialise");
        bytes.pop();
        bytes.extend_from_slice(b",\"payload\":");
        let start = bytes.len();
        serde_json::to_writer(&mut bytes, &PayloadRef(event)).expect("events always serialise");
        let payload = start..bytes.len();
        bytes.push(b'}');
        Encoded { event_id, bytes, payload }
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
        incident_event(self.event_type, self.schema_version, &self.payload)
    }

    /// The source and the event of a message, decoded straight from its bytes: the same
    /// result as [`from_bytes`](Self::from_bytes) then [`event`](Self::event), without building
    /// the payload as a JSON tree first (the projector's hot path). One difference: a payload
    /// that names a field twice is refused here, where the tree keeps the last value.
    pub fn decode_event(bytes: &[u8]) -> Result<(String, Event), DecodeError> {
        if let Some(decoded) = head::decode(bytes) {
            return Ok(decoded);
        }
        // Another layout, or an invalid envelope: serde decides, and names the problem.
        let raw: BorrowedEnvelope<'_> =
            serde_json::from_slice(bytes).map_err(DecodeError::Envelope)?;
        let mut payload = serde_json::Deserializer::from_str(raw.payload.get());
        let event = incident_event(raw.event_type, raw.schema_version, &mut payload)?;
        Ok((raw.source.into_owned(), event))
    }
}

/// When an ingest recorded a batch, with the text envelopes carry for it, written once: a
/// string serialises to the bytes `DateTime`'s `collect_str` writes, so events encoded with it
/// are those [`Envelope::new`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedAt {
    text: String,
}

impl RecordedAt {
    pub fn new(at: DateTime<Utc>) -> RecordedAt {
        // What chrono's `Serialize` writes for a `DateTime<Utc>`.
        RecordedAt { text: at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true) }
    }

    /// The text in the envelope's `recorded_at`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// An encoded envelope ([`Envelope::encode_parts`]).
pub struct Encoded {
    pub event_id: Uuid,
    pub bytes: Vec<u8>,
    /// Where the payload's JSON lies in `bytes`.
    pub payload: std::ops::Range<usize>,
}

impl Encoded {
    /// The payload's JSON: the bytes the event's own type serialises to.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.payload.clone()]
    }
}

/// [`Envelope`]'s fields in their order, but the payload, which follows them, serialised from
/// its own type: the same bytes as the payload's `Value` (keys keep their order: serde_json's
/// `preserve_order`).
#[derive(Serialize)]
struct EnvelopeHead<'a> {
    event_id: Uuid,
    event_type: EventKind,
    schema_version: u32,
    source: &'a str,
    recorded_at: &'a str,
}

/// An event's payload as its own type serialises it (without the enum's variant name).
struct PayloadRef<'a>(&'a Event);

impl Serialize for PayloadRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Event::IncidentReported(e) => e.serialize(serializer),
            Event::IncidentWithdrawn(e) => e.serialize(serializer),
            Event::PeriodClosed(e) => e.serialize(serializer),
        }
    }
}

/// An envelope whose payload is left as text, to be decoded into its own type directly.
/// Every field is still checked as in [`Envelope`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BorrowedEnvelope<'a> {
    #[allow(dead_code)]
    event_id: Uuid,
    event_type: EventKind,
    schema_version: u32,
    #[serde(borrow)]
    source: std::borrow::Cow<'a, str>,
    #[allow(dead_code)]
    recorded_at: DateTime<Utc>,
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
}

/// Decodes an incident-family payload of `kind` at `version`, upcasting older versions.
fn incident_event<'de, D>(kind: EventKind, version: u32, payload: D) -> Result<Event, DecodeError>
where
    D: serde::Deserializer<'de, Error = serde_json::Error>,
{
    let max = kind.current_version();
    if version > max {
        return Err(DecodeError::FutureVersion { kind: kind.as_str(), version, max });
    }
    // History is never edited: an older version is read with its own type and upcast.
    let payload_err = |source| DecodeError::Payload { kind: kind.as_str(), version, source };
    Ok(match (kind, version) {
        (EventKind::IncidentReported, 1) => Event::IncidentReported(
            IncidentReportedV1::deserialize(payload).map_err(payload_err)?.into(),
        ),
        (EventKind::IncidentReported, _) => {
            Event::IncidentReported(Deserialize::deserialize(payload).map_err(payload_err)?)
        }
        (EventKind::IncidentWithdrawn, _) => {
            Event::IncidentWithdrawn(Deserialize::deserialize(payload).map_err(payload_err)?)
        }
        (EventKind::PeriodClosed, _) => {
            Event::PeriodClosed(Deserialize::deserialize(payload).map_err(payload_err)?)
        }
        // Survey payloads are decoded from the message bytes (exact numbers): `SurveyEvent::decode`.
        (
            EventKind::SurveyWaveDeclared
            | EventKind::SurveyResponsesRecorded
            | EventKind::SurveyWaveClosed,
            _,
        ) => {
            return Err(DecodeError::WrongFamily {
                kind: kind.as_str(),
                family: kind.family(),
                expected: EventFamily::Incident,
            });
        }
    })
}

pub fn subject(kind: EventKind, source: &str) -> String {
    let family = kind.family().as_str();
    format!("{}.{}.{}.{}", crate::SUBJECT_ROOT, family, kind.subject_token(), source)
}

/// The subject of every revision of one incident, withdrawal included:
/// `obs.incident.<incident hash, 32 hex>.<source>`. One subject per incident is what lets
/// JetStream itself refuse a second copy of a revision, forever and whichever ingest replica
/// sends it: a revision is published with `Nats-Expected-Last-Subject-Sequence` set to the
/// sequence of the incident's last event the ingest read (0 for none), and the stream leader
/// refuses it if anything else reached that subject in between. The source stays the last
/// token, as on every subject ([`source_matches_subject`]).
pub fn incident_subject(source: &str, incident: u128) -> String {
    // Written once per record: without `core::fmt`.
    let (root, family) = (crate::SUBJECT_ROOT, EventFamily::Incident.as_str());
    let mut subject = String::with_capacity(root.len() + family.len() + 32 + source.len() + 3);
    subject.push_str(root);
    subject.push('.');
    subject.push_str(family);
    subject.push('.');
    crate::ascii::push_hex_u128(&mut subject, incident);
    subject.push('.');
    subject.push_str(source);
    subject
}

/// Where incident events were published before one subject per incident
/// ([`incident_subject`]): streams written by earlier versions hold them, and the ingest
/// reads their revisions once at start to recognise a re-send of one.
pub const LEGACY_INCIDENT_SUBJECTS: [&str; 2] =
    ["obs.incident.reported.>", "obs.incident.withdrawn.>"];

/// The subject of every event of one survey from `source`: `obs.survey.id.<survey>.<source>`
/// (survey ids are valid subject tokens). A survey's declarations, responses and closures are
/// published with `Nats-Expected-Last-Subject-Sequence` checked against
/// [`survey_filter`], the survey's subjects from every source, so the stream leader refuses
/// an event decided on a stale reading of the survey, whichever ingest replica sent it. The
/// extra `id` token keeps these apart from [`LEGACY_SURVEY_SUBJECTS`] (a survey could be named
/// `declared`).
pub fn survey_subject(survey: &str, source: &str) -> String {
    format!("{}.{}.id.{survey}.{source}", crate::SUBJECT_ROOT, EventFamily::Survey.as_str())
}

/// Every subject of one survey's events, whatever their source.
pub fn survey_filter(survey: &str) -> String {
    format!("{}.{}.id.{survey}.*", crate::SUBJECT_ROOT, EventFamily::Survey.as_str())
}

/// Where survey events were published before one subject per survey ([`survey_subject`]):
/// streams written by earlier versions hold them, and the ingest reads them once at start.
pub const LEGACY_SURVEY_SUBJECTS: [&str; 3] =
    ["obs.survey.declared.*", "obs.survey.responses.*", "obs.survey.closed.*"];

/// Whether an event's envelope `source` is the one its subject names: the subject's last
/// token is the source the server let publish, so readers skip an event where they differ.
pub fn source_matches_subject(source: &str, subject: &str) -> bool {
    subject.rsplit('.').next() == Some(source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(kind: &str, version: u32, payload: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "event_id": "01920000-0000-7000-8000-000000000000", "event_type": kind, "schema_version": version,
            "source": "pn", "recorded_at": "2025-01-01T00:00:00Z", "payload": payload,
        }))
        .unwrap()
    }

    /// The fast path and the tree path give the same event, or both an error.
    #[test]
    fn decode_event_agrees_with_from_bytes_then_event() {
        let v1 = json!({"agency_incident_id": "A", "revision": 2, "occurred_on": "2024-03-05", "reported_on": "2024-03-07",
                        "iccs": "0903", "cyber": true, "departement": "75", "victim_type": "individual", "channel": "email",
                        "loss_eur": 12.5});
        let mut v2 = v1.clone();
        v2["unit"] = json!("offence");
        let cases = [
            envelope("IncidentReported", 1, v1.clone()),
            envelope("IncidentReported", 2, v2.clone()),
            envelope("IncidentReported", 1, v2),
            envelope("IncidentReported", 9, v1),
            envelope(
                "IncidentWithdrawn",
                1,
                json!({"agency_incident_id": "A", "revision": 3, "reason": "twice"}),
            ),
            envelope("SurveyWaveClosed", 1, json!({})),
            b"{\"event_id\": 1}".to_vec(),
        ];
        for bytes in cases {
            let slow =
                Envelope::from_bytes(&bytes).and_then(|e| e.event().map(|event| (e.source, event)));
            let fast = Envelope::decode_event(&bytes);
            match (slow, fast) {
                (Ok(slow), Ok(fast)) => assert_eq!(slow, fast),
                // Same kind of error; serde's positions differ (tree vs text), so not the message.
                (Err(slow), Err(fast)) => {
                    assert_eq!(std::mem::discriminant(&slow), std::mem::discriminant(&fast))
                }
                (slow, fast) => panic!("{slow:?} vs {fast:?}"),
            }
        }
        let mut extra: serde_json::Value =
            serde_json::from_slice(&envelope("IncidentWithdrawn", 1, json!({}))).unwrap();
        extra["colour"] = json!("red");
        assert!(
            Envelope::decode_event(&serde_json::to_vec(&extra).unwrap()).is_err(),
            "unknown envelope fields are refused"
        );
    }

    /// `encode` writes the bytes the tree path writes: payload keys in the same order, the
    /// same number formatting, absent options left out alike. The bytes on the stream, and a
    /// retry's byte comparison with its own earlier copy, depend on it.
    #[test]
    fn encode_writes_the_bytes_of_the_tree_path() {
        let bytes = envelope(
            "IncidentReported",
            2,
            json!({"agency_incident_id": "A", "revision": 2, "occurred_on": "2024-03-05",
                   "occurred_until": "2024-03-06", "reported_on": "2024-03-07", "iccs": "0903",
                   "cyber": true, "departement": "2A", "victim_type": "business", "channel": "email",
                   "loss_eur": 0.1, "unit": "offence", "offence_code": "7875"}),
        );
        let reported = Envelope::from_bytes(&bytes).unwrap().event().unwrap();
        let Event::IncidentReported(report) = &reported else { panic!("a report") };
        let mut sparse = report.clone();
        (sparse.occurred_until, sparse.loss_eur, sparse.offence_code) = (None, None, None);
        let mut coded = report.clone();
        coded.loss_eur = Some(1e300);
        coded.coding = Some(crate::incident::Coding {
            crosswalk: "pn".into(),
            version: 2,
            iccs_from_crosswalk: true,
            cyber_from_crosswalk: false,
        });
        let events = [
            reported.clone(),
            Event::IncidentReported(sparse),
            Event::IncidentReported(coded),
            Event::PeriodClosed(PeriodClosed {
                month: "2024-03".into(),
                departements: Some(vec!["75".into(), "2A".into()]),
            }),
            Event::PeriodClosed(PeriodClosed { month: "2024-03".into(), departements: None }),
            Event::IncidentWithdrawn(IncidentWithdrawn {
                agency_incident_id: "A".into(),
                revision: 3,
                reason: None,
            }),
            Event::IncidentWithdrawn(IncidentWithdrawn {
                agency_incident_id: "A\"é".into(),
                revision: 3,
                reason: Some("twice\n".into()),
            }),
        ];
        let at = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        for event in events {
            let (event_id, fast) = Envelope::encode(&event, "pn", at);
            assert_eq!(String::from_utf8(fast).unwrap(), tree_text(&event, at, event_id));
        }
    }

    /// The envelope `Envelope::new` makes for `event` from source `pn`, with `event_id`, as
    /// text: what the encoders must write byte for byte.
    fn tree_text(event: &Event, at: DateTime<Utc>, event_id: Uuid) -> String {
        let mut tree = Envelope::new(event, "pn", at);
        tree.event_id = event_id;
        String::from_utf8(tree.to_bytes()).unwrap()
    }

    /// A batch's one `RecordedAt` writes the text formatting the time for each event wrote,
    /// whatever its precision, a leap second and the ends of chrono's range included.
    #[test]
    fn a_recorded_at_is_the_text_each_event_wrote() {
        let at =
            |text: &str| chrono::DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|day| day.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .unwrap()
            .and_utc();
        let times = [
            at("2025-01-01T00:00:00Z"),
            at("2025-01-01T00:00:00.1Z"),
            at("2025-01-01T00:00:00.120Z"),
            at("2025-06-30T23:59:59.123456Z"),
            at("2025-06-30T23:59:59.000000001Z"),
            at("2025-06-30T23:59:59.123456789+02:00"),
            at("0001-01-01T00:00:00Z"),
            at("9999-12-31T23:59:59.999999999Z"),
            leap,
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            Utc::now(),
        ];
        let event = Event::IncidentWithdrawn(IncidentWithdrawn {
            agency_incident_id: "A".into(),
            revision: 2,
            reason: None,
        });
        for time in times {
            let recorded = RecordedAt::new(time);
            assert_eq!(serde_json::to_value(time).unwrap(), json!(recorded.as_str()));
            assert_eq!(
                serde_json::to_string(&time).unwrap(),
                serde_json::to_string(recorded.as_str()).unwrap()
            );
            let (event_id, fast) = Envelope::encode_recorded(&event, "pn", &recorded);
            assert_eq!(String::from_utf8(fast).unwrap(), tree_text(&event, time, event_id));
        }
    }

    #[test]
    fn an_incident_subject_names_the_incident_and_ends_with_its_source() {
        let incident = crate::incident_hash("pn", "A-1");
        let subject = incident_subject("pn", incident);
        assert_eq!(subject, format!("obs.incident.{incident:032x}.pn"));
        assert!(source_matches_subject("pn", &subject));
        // Never one of the subjects incident events had before (their third token is a word).
        assert!(
            LEGACY_INCIDENT_SUBJECTS
                .iter()
                .all(|legacy| !subject.starts_with(&legacy[..legacy.len() - 1]))
        );
        assert_ne!(incident_subject("pn", crate::incident_hash("pn", "A-2")), subject);
        // Hashes with leading zeros keep their 32 digits, as `{:032x}` wrote them.
        for incident in [0, 1, 0xabc, u128::MAX, 1 << 127, u128::from(u64::MAX)] {
            for source in ["pn", "gendarmerie-nationale_2"] {
                assert_eq!(
                    incident_subject(source, incident),
                    format!("obs.incident.{incident:032x}.{source}")
                );
            }
        }
    }

    #[test]
    fn a_survey_subject_names_the_survey_and_ends_with_its_source() {
        // A survey named like an old subject's kind token stays on its own subject.
        let subject = survey_subject("declared", "insee");
        assert_eq!(subject, "obs.survey.id.declared.insee");
        assert!(source_matches_subject("insee", &subject));
        assert_eq!(survey_filter("declared"), "obs.survey.id.declared.*");
        let tokens = |s: &str| s.split('.').count();
        assert!(LEGACY_SURVEY_SUBJECTS.iter().all(|legacy| tokens(legacy) != tokens(&subject)));
    }
}
