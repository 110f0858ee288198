//! The envelope head as [`Envelope::encode_parts`](super::Envelope::encode_parts) writes it,
//! read without serde: fixed keys in a fixed order, no whitespace, no escapes. serde_json's
//! walk over the head (and its second pass to skip the payload it keeps as raw text) was
//! half of a rebuild's decoding. Anything this reader is not sure of (another layout, an
//! escape, a timestamp or id in a form it does not check) is left to the serde path, which
//! stays the definition of a valid envelope: this reader accepts a subset of it, and reads
//! that subset to the same values.
//!
//! The payload of a current `IncidentReported` (nearly every event of a stream) is read the
//! same way, by [`super::payload`]; other payloads go to serde from here.

use chrono::Datelike;
use uuid::Uuid;

use super::{Event, EventKind, incident_event, payload};
use crate::ascii::{digits_value, plain_date};

/// The head fields a decoder needs, and the payload's text.
pub(super) struct Head<'a> {
    pub kind: EventKind,
    pub version: u32,
    pub source: &'a str,
    /// From the payload's first byte to the envelope's closing brace (excluded).
    pub payload: &'a [u8],
}

/// [`Envelope::decode_event`](super::Envelope::decode_event) of an envelope in the encoder's
/// own layout; `None` when the serde path must decide (another layout, or anything invalid,
/// whose error it words).
pub(super) fn decode(bytes: &[u8]) -> Option<(String, Event)> {
    let head = split(bytes)?;
    if head.kind == EventKind::IncidentReported
        && head.version == head.kind.current_version()
        && let Some(report) = payload::incident_reported(head.payload)
    {
        return Some((head.source.to_owned(), Event::IncidentReported(report)));
    }
    let mut payload = serde_json::Deserializer::from_slice(head.payload);
    let event = incident_event(head.kind, head.version, &mut payload).ok()?;
    // The payload must be all that comes before the closing brace.
    payload.end().ok()?;
    Some((head.source.to_owned(), event))
}

/// The head of `bytes` if it has the encoder's layout and its fields are valid; `None` when
/// the serde path must decide.
pub(super) fn split(bytes: &[u8]) -> Option<Head<'_>> {
    let mut text = Reader { bytes, at: 0 };
    text.literal(b"{\"event_id\":\"")?;
    // The hyphenated form the encoder writes; serde also accepts the others.
    Uuid::try_parse_ascii(text.take(36)?).ok()?;
    text.literal(b"\",\"event_type\":\"")?;
    let kind = text.plain_string()?;
    let kind = EventKind::ALL.into_iter().find(|k| k.as_str() == kind)?;
    text.literal(b",\"schema_version\":")?;
    let version = text.decimal()?;
    text.literal(b",\"source\":\"")?;
    let source = text.plain_string()?;
    text.literal(b",\"recorded_at\":\"")?;
    if !is_utc_timestamp(text.plain_string()?.as_bytes()) {
        return None;
    }
    text.literal(b",\"payload\":")?;
    // The envelope's closing brace is its last byte but for the whitespace serde allows.
    let last = bytes.iter().rposition(|b| !matches!(b, b' ' | b'\n' | b'\t' | b'\r'))?;
    (bytes[last] == b'}' && last > text.at).then_some(())?;
    Some(Head { kind, version, source, payload: &bytes[text.at..last] })
}

/// Reads JSON text written in a known layout, front to back; every method consumes what it
/// read and returns `None`, consuming nothing, on anything else.
pub(super) struct Reader<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl<'a> Reader<'a> {
    pub fn literal(&mut self, expected: &[u8]) -> Option<()> {
        let rest = self.bytes.get(self.at..)?;
        rest.starts_with(expected).then(|| self.at += expected.len())
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let taken = self.bytes.get(self.at..self.at + len)?;
        self.at += len;
        Some(taken)
    }

    /// A string's text up to its closing quote (consumed), if it has no escape and no control
    /// character (which JSON forbids unescaped) and is UTF-8.
    pub fn plain_string(&mut self) -> Option<&'a str> {
        let rest = self.bytes.get(self.at..)?;
        let len = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        (rest[len] == b'"').then_some(())?;
        let text = std::str::from_utf8(&rest[..len]).ok()?;
        self.at += len + 1;
        Some(text)
    }

    /// A JSON integer that fits a `u32`, without sign or leading zero.
    pub fn decimal(&mut self) -> Option<u32> {
        let rest = self.bytes.get(self.at..)?;
        let len = rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
        if len == 0 || (len > 1 && rest[0] == b'0') {
            return None;
        }
        let mut value: u32 = 0;
        for &digit in &rest[..len] {
            value = value.checked_mul(10)?.checked_add(u32::from(digit - b'0'))?;
        }
        self.at += len;
        Some(value)
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f]Z` with 1 to 9 fraction digits, naming a real day (of a year from
/// 1000) and a time without leap second: what chrono writes for a UTC instant, and reads as
/// one. (The serde path checks the other forms chrono accepts.)
fn is_utc_timestamp(text: &[u8]) -> bool {
    let (Some(day), Some(b'T'), Some(time), Some(rest)) =
        (text.get(..10), text.get(10), text.get(11..19), text.get(19..))
    else {
        return false;
    };
    let [h0, h1, b':', m0, m1, b':', s0, s1] = *time else { return false };
    let below = |digits: [u8; 2], bound| digits_value(&digits).is_some_and(|value| value < bound);
    let fraction_ok = match rest {
        b"Z" => true,
        [b'.', fraction @ .., b'Z'] => {
            (1..=9).contains(&fraction.len()) && fraction.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    fraction_ok
        && plain_date(day).is_some_and(|day| day.year() >= 1000)
        && below([h0, h1], 24)
        && below([m0, m1], 60)
        && below([s0, s1], 60)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, NaiveDate, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::envelope::Envelope;
    use crate::incident::{
        Channel, Coding, IncidentReported, IncidentWithdrawn, PeriodClosed, VictimType,
    };
    use observatory_reference::Unit;

    fn events(id: &str) -> Vec<Event> {
        let day = |d| NaiveDate::from_ymd_opt(2024, 3, d).unwrap();
        let report = IncidentReported {
            agency_incident_id: id.to_owned(),
            revision: 2,
            occurred_on: day(5),
            occurred_until: Some(day(6)),
            reported_on: day(7),
            iccs: "0903".into(),
            offence_code: Some("7875".into()),
            cyber: true,
            departement: Some("2A".into()),
            victim_type: VictimType::Business,
            channel: Channel::Email,
            loss_eur: Some(0.1),
            unit: Unit::Offence,
            coding: Some(Coding {
                crosswalk: "pn".into(),
                version: 2,
                iccs_from_crosswalk: true,
                cyber_from_crosswalk: false,
            }),
        };
        let sparse = IncidentReported {
            occurred_until: None,
            offence_code: None,
            departement: None,
            loss_eur: None,
            coding: None,
            ..report.clone()
        };
        vec![
            Event::IncidentReported(report),
            Event::IncidentReported(sparse),
            Event::IncidentWithdrawn(IncidentWithdrawn {
                agency_incident_id: id.to_owned(),
                revision: 3,
                reason: Some("twice\n".into()),
            }),
            Event::PeriodClosed(PeriodClosed {
                month: "2024-03".into(),
                departements: Some(vec!["75".into()]),
            }),
        ]
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    /// What the serde path alone makes of `bytes`, from the JSON tree.
    fn tree(bytes: &[u8]) -> Result<(String, Event), crate::envelope::DecodeError> {
        Envelope::from_bytes(bytes).and_then(|e| e.event().map(|event| (e.source, event)))
    }

    /// Everything the encoder writes takes this path: escapes and non-ASCII in the payload,
    /// instants with and without fraction digits, every incident event kind.
    #[test]
    fn the_encoders_envelopes_are_read_without_serde() {
        let instants =
            ["2025-01-01T00:00:00Z", "2025-06-30T23:59:59.5Z", "2026-12-04T22:21:03.775906012Z"];
        for id in ["A", "PN/DDSP-16/2024/0000000001", "quote \" back \\ é ☃ \u{1}"] {
            for event in events(id) {
                for instant in instants {
                    let (_, bytes) = Envelope::encode(&event, "pn-2", at(instant));
                    let head = split(&bytes).expect("the encoder's layout");
                    assert_eq!((head.kind, head.source), (event.kind(), "pn-2"));
                    let decoded = decode(&bytes).expect("decoded");
                    assert_eq!(decoded, tree(&bytes).unwrap());
                }
            }
        }
    }

    /// Other layouts and invalid heads are left to serde.
    #[test]
    fn what_it_is_not_sure_of_goes_to_serde() {
        let (_, bytes) = Envelope::encode(&events("A")[0], "pn", at("2025-01-01T00:00:00Z"));
        let text = String::from_utf8(bytes).unwrap();
        for (from, to) in [
            ("{\"event_id\"", "{ \"event_id\""),
            ("\"schema_version\":2", "\"schema_version\":02"),
            ("\"schema_version\":2", "\"schema_version\":2.0"),
            ("\"source\":\"pn\"", "\"source\":\"p\\u006e\""),
            ("2025-01-01T00:00:00Z", "2025-01-01T00:00:60Z"),
            ("2025-01-01T00:00:00Z", "2025-02-30T00:00:00Z"),
            ("2025-01-01T00:00:00Z", "2025-01-01t00:00:00Z"),
            ("2025-01-01T00:00:00Z", "2025-01-01T00:00:00+00:00"),
            ("2025-01-01T00:00:00Z", "0999-01-01T00:00:00Z"),
            ("\"IncidentReported\"", "\"IncidentReport\""),
        ] {
            assert!(text.contains(from));
            let changed = text.replacen(from, to, 1);
            assert!(split(changed.as_bytes()).is_none(), "{changed}");
        }
    }

    /// The payload must end at the envelope's closing brace: a field or value after it is
    /// refused, as serde refuses it; whitespace is not.
    #[test]
    fn nothing_but_whitespace_follows_the_payload() {
        let (_, bytes) = Envelope::encode(&events("A")[0], "pn", at("2025-01-01T00:00:00Z"));
        let (body, brace) = bytes.split_at(bytes.len() - 1);
        for extra in [&b",\"colour\":\"red\""[..], b" 1", b"}", b",{}"] {
            let changed = [body, extra, brace].concat();
            assert!(decode(&changed).is_none(), "{}", String::from_utf8_lossy(&changed));
            assert!(Envelope::decode_event(&changed).is_err());
            assert!(tree(&changed).is_err());
        }
        let spaced = [body, b" \n\t", brace, b"\r\n"].concat();
        assert_eq!(decode(&spaced).expect("whitespace is allowed"), tree(&spaced).unwrap());
    }

    fn mutate(bytes: &mut Vec<u8>, at: usize, op: u8, byte: u8) {
        const BYTES: &[u8] = b"\"\\09-TZ {},:.ae\x01\xff";
        let at = at % (bytes.len() + 1);
        let byte = BYTES[usize::from(byte) % BYTES.len()];
        match op % 3 {
            0 if at < bytes.len() => bytes[at] = byte,
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.insert(at, byte),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Damaged or altered envelopes decode to what the serde path decodes them to, or
        /// are refused as it refuses them.
        #[test]
        fn it_agrees_with_the_serde_path(
            which in 0usize..4,
            id in "\\PC{0,12}",
            nanos in 0u32..1_000_000_000,
            mutations in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..4),
        ) {
            let instant = at("2025-01-01T00:00:00Z") + chrono::Duration::nanoseconds(i64::from(nanos));
            let (_, mut bytes) = Envelope::encode(&events(&id)[which], "pn", instant);
            for (at, op, byte) in mutations {
                mutate(&mut bytes, at, op, byte);
            }
            let decoded = Envelope::decode_event(&bytes);
            match (tree(&bytes), decoded) {
                (Ok(tree), Ok(decoded)) => prop_assert_eq!(tree, decoded),
                (Err(tree), Err(decoded)) => prop_assert_eq!(
                    std::mem::discriminant(&tree),
                    std::mem::discriminant(&decoded)
                ),
                (tree, decoded) => prop_assert!(false, "{:?} vs {:?}: {}", tree, decoded, String::from_utf8_lossy(&bytes)),
            }
        }
    }
}
