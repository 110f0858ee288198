//! What the ingest's idempotency index must know of each revision on the stream to tell a
//! true duplicate (same content) from a conflict (same revision, other content) and from a
//! stale revision (lower than the current one). It travels with the event in the
//! `Obs-Revision` header, so the index is rebuilt from headers without reading payloads.

use crate::envelope::Event;
use crate::incident::incident_hash;

/// One revision of one incident: `<incident hash, 32 hex> <revision> <content, 16 hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevisionStamp {
    /// [`incident_hash`] of (source, agency_incident_id).
    pub incident: u128,
    pub revision: u32,
    /// [`content_fingerprint`] of the event; never 0 (0 stands for "unknown" in the index).
    pub content: u64,
    /// The revision withdraws the incident.
    pub withdrawal: bool,
}

impl RevisionStamp {
    /// The stamp of an incident event; `None` for events about periods.
    pub fn of(source: &str, event: &Event) -> Option<RevisionStamp> {
        RevisionStamp::with_content(source, event, || content_fingerprint(event))
    }

    /// [`of`](Self::of) for an event whose payload is already written as `payload` (the JSON
    /// its own type serialises to, [`crate::Encoded::payload`]): the fingerprint hashes those
    /// bytes instead of writing the event a second time, where nothing derived is to be
    /// stripped from them. The same stamp as [`of`](Self::of).
    pub fn of_encoded(source: &str, event: &Event, payload: &[u8]) -> Option<RevisionStamp> {
        RevisionStamp::with_content(source, event, || match event {
            Event::IncidentReported(report) if said_differs(report) => content_fingerprint(event),
            _ => {
                // `[tag,payload]`, as serde_json writes the pair `content_fingerprint` hashes.
                let mut hasher = xxhash_rust::xxh3::Xxh3::new();
                hasher.update(b"[\"");
                hasher.update(tag(event).as_bytes());
                hasher.update(b"\",");
                hasher.update(payload);
                hasher.update(b"]");
                hasher.digest().max(1)
            }
        })
    }

    fn with_content(
        source: &str,
        event: &Event,
        content: impl FnOnce() -> u64,
    ) -> Option<RevisionStamp> {
        let (id, revision) = event.incident()?;
        Some(RevisionStamp {
            incident: incident_hash(source, id),
            revision,
            content: content(),
            withdrawal: matches!(event, Event::IncidentWithdrawn(_)),
        })
    }

    /// The `Obs-Revision` header, written without `core::fmt` (once per record): the text of
    /// `format!("{:032x} {} {:016x} {kind}", ..)`, which headers already stored hold.
    pub fn to_header(&self) -> String {
        let mut text = String::with_capacity(32 + 1 + 10 + 1 + 16 + 2);
        crate::ascii::push_hex_u128(&mut text, self.incident);
        text.push(' ');
        crate::ascii::push_decimal(&mut text, self.revision);
        text.push(' ');
        crate::ascii::push_hex_u64(&mut text, self.content);
        text.push(' ');
        text.push(if self.withdrawal { 'w' } else { 'r' });
        text
    }

    pub fn parse(text: &str) -> Option<RevisionStamp> {
        let mut parts = text.split(' ');
        let incident = parts
            .next()
            .filter(|p| p.len() == 32)
            .and_then(|p| u128::from_str_radix(p, 16).ok())?;
        let revision = parts.next()?.parse().ok()?;
        let content =
            parts.next().filter(|p| p.len() == 16).and_then(|p| u64::from_str_radix(p, 16).ok())?;
        let withdrawal = match parts.next()? {
            "w" => true,
            "r" => false,
            _ => return None,
        };
        parts.next().is_none().then_some(RevisionStamp { incident, revision, content, withdrawal })
    }
}

/// A 64-bit fingerprint of what the agency said in a revision: every field it sent, and
/// none that the ingest derived (the crosswalk version in force, the ICCS code or cyber flag
/// the crosswalk gave, the counting unit), so the same record re-sent after a crosswalk
/// update is still the same content.
pub fn content_fingerprint(event: &Event) -> u64 {
    // The JSON is hashed as it is written: the same bytes as before, never held whole.
    let mut hasher = HashWriter(xxhash_rust::xxh3::Xxh3::new());
    let written = match event {
        // Nothing derived to strip (an agency coded in ICCS, counted in offences): the report
        // is what the agency said, hashed without the copy.
        Event::IncidentReported(report) if !said_differs(report) => {
            serde_json::to_writer(&mut hasher, &(tag(event), report))
        }
        Event::IncidentReported(report) => {
            let mut said = report.clone();
            if let Some(coding) = said.coding.take() {
                if coding.iccs_from_crosswalk {
                    said.iccs.clear();
                }
                if coding.cyber_from_crosswalk {
                    said.cyber = false;
                }
            }
            said.unit = observatory_reference::Unit::Offence;
            serde_json::to_writer(&mut hasher, &(tag(event), said))
        }
        Event::IncidentWithdrawn(withdrawal) => {
            serde_json::to_writer(&mut hasher, &(tag(event), withdrawal))
        }
        Event::PeriodClosed(closed) => serde_json::to_writer(&mut hasher, &(tag(event), closed)),
    };
    written.expect("events serialise");
    hasher.0.digest().max(1)
}

/// The word a fingerprint's JSON pairs with the event's content.
fn tag(event: &Event) -> &'static str {
    match event {
        Event::IncidentReported(_) => "reported",
        Event::IncidentWithdrawn(_) => "withdrawn",
        Event::PeriodClosed(_) => "closed",
    }
}

/// Whether a report holds anything the ingest derived (a crosswalk's coding, a unit other than
/// offences), which its fingerprint leaves out: then what the agency said is not the report.
fn said_differs(report: &crate::IncidentReported) -> bool {
    report.coding.is_some() || report.unit != observatory_reference::Unit::Offence
}

struct HashWriter(xxhash_rust::xxh3::Xxh3);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{Channel, IncidentReported, IncidentWithdrawn, VictimType};

    fn report(loss: Option<f64>) -> Event {
        Event::IncidentReported(IncidentReported {
            agency_incident_id: "PN-1".into(),
            revision: 1,
            occurred_on: chrono::NaiveDate::from_ymd_opt(2024, 3, 5).unwrap(),
            occurred_until: None,
            reported_on: chrono::NaiveDate::from_ymd_opt(2024, 3, 7).unwrap(),
            iccs: "0903".into(),
            offence_code: None,
            cyber: true,
            departement: Some("75".into()),
            victim_type: VictimType::Individual,
            channel: Channel::Email,
            loss_eur: loss,
            unit: observatory_reference::Unit::Offence,
            coding: None,
        })
    }

    #[test]
    fn stamps_round_trip_and_tell_contents_apart() {
        let a = RevisionStamp::of("pn", &report(Some(10.0))).unwrap();
        assert_eq!(RevisionStamp::parse(&a.to_header()), Some(a));
        let b = RevisionStamp::of("pn", &report(Some(12.0))).unwrap();
        assert_eq!((a.incident, a.revision), (b.incident, b.revision));
        assert_ne!(a.content, b.content);
        assert_eq!(a.content, RevisionStamp::of("pn", &report(Some(10.0))).unwrap().content);
        let withdrawn = Event::IncidentWithdrawn(IncidentWithdrawn {
            agency_incident_id: "PN-1".into(),
            revision: 1,
            reason: None,
        });
        let w = RevisionStamp::of("pn", &withdrawn).unwrap();
        assert!(w.withdrawal && w.content != a.content);
        for bad in [
            "",
            "x 1 0000000000000001 r",
            &a.to_header().replace(" r", " q"),
            &format!("{} extra", a.to_header()),
        ] {
            assert_eq!(RevisionStamp::parse(bad), None, "{bad:?}");
        }
    }

    /// Headers already on the stream were written with `format!`: the same text, zeros and
    /// extremes included.
    #[test]
    fn headers_are_the_text_of_format() {
        let edges = [0, 1, 0xf, u128::from(u64::MAX), 1 << 127, u128::MAX];
        for (i, incident) in edges.into_iter().enumerate() {
            for revision in [0, 1, 9, 10, 4_294_967_295] {
                for content in [1, 0x10, u64::MAX, 1 << 63, i as u64] {
                    for withdrawal in [false, true] {
                        let stamp = RevisionStamp { incident, revision, content, withdrawal };
                        let kind = if withdrawal { "w" } else { "r" };
                        assert_eq!(
                            stamp.to_header(),
                            format!("{incident:032x} {revision} {content:016x} {kind}")
                        );
                        assert_eq!(RevisionStamp::parse(&stamp.to_header()), Some(stamp));
                    }
                }
            }
        }
        let key = crate::incident::DedupeKey(0xabc);
        assert_eq!(key.to_hex(), format!("{:032x}", 0xabc));
        assert_eq!(crate::incident::DedupeKey::from_hex(&key.to_hex()), Some(key));
    }

    /// A stamp made from the encoded payload is the stamp made from the event, for reports
    /// with and without derived fields (coding, unit), withdrawals, and the hand-written text.
    #[test]
    fn a_stamp_from_the_encoded_payload_is_the_stamp_of_the_event() {
        let at = crate::RecordedAt::new(chrono::Utc::now());
        let Event::IncidentReported(plain) = report(Some(10.5)) else { unreachable!() };
        let mut victims = plain.clone();
        victims.unit = observatory_reference::Unit::Victim;
        let mut coded = plain.clone();
        coded.coding = Some(crate::Coding {
            crosswalk: "natinf".into(),
            version: 1,
            iccs_from_crosswalk: true,
            cyber_from_crosswalk: false,
        });
        let mut bare = plain.clone();
        bare.loss_eur = None;
        bare.departement = None;
        let withdrawal = |reason: Option<&str>| {
            Event::IncidentWithdrawn(IncidentWithdrawn {
                agency_incident_id: "PN-1".into(),
                revision: 3,
                reason: reason.map(str::to_owned),
            })
        };
        let events = [
            Event::IncidentReported(plain),
            Event::IncidentReported(victims),
            Event::IncidentReported(coded),
            Event::IncidentReported(bare),
            withdrawal(Some("sent \"twice\"")),
            withdrawal(None),
        ];
        for event in events {
            let encoded = crate::Envelope::encode_parts(&event, "pn", &at);
            let payload: serde_json::Value = serde_json::from_slice(encoded.payload()).unwrap();
            let envelope: serde_json::Value = serde_json::from_slice(&encoded.bytes).unwrap();
            assert_eq!(envelope["payload"], payload);
            assert_eq!(
                RevisionStamp::of_encoded("pn", &event, encoded.payload()),
                RevisionStamp::of("pn", &event),
                "{event:?}"
            );
        }
    }

    /// Fingerprints already on the stream were the xxh3 of the JSON bytes: hashing while
    /// writing must give the same numbers, or a resent record would read as a conflict.
    #[test]
    fn fingerprints_are_the_hash_of_the_written_json() {
        let withdrawal = IncidentWithdrawn {
            agency_incident_id: "PN-1".into(),
            revision: 2,
            reason: Some("sent twice".into()),
        };
        let Event::IncidentReported(said) = report(Some(10.5)) else { unreachable!() };
        let cases = [
            (report(Some(10.5)), serde_json::to_vec(&("reported", said)).unwrap()),
            (
                Event::IncidentWithdrawn(withdrawal.clone()),
                serde_json::to_vec(&("withdrawn", withdrawal)).unwrap(),
            ),
        ];
        for (event, bytes) in cases {
            assert_eq!(content_fingerprint(&event), xxhash_rust::xxh3::xxh3_64(&bytes).max(1));
        }
        // The text written by hand, not by this crate's serialisers: dates as chrono wrote them.
        let said = r#"["reported",{"agency_incident_id":"PN-1","revision":1,"occurred_on":"2024-03-05","reported_on":"2024-03-07","iccs":"0903","cyber":true,"departement":"75","victim_type":"individual","channel":"email","loss_eur":10.5,"unit":"offence"}]"#;
        assert_eq!(
            content_fingerprint(&report(Some(10.5))),
            xxhash_rust::xxh3::xxh3_64(said.as_bytes()).max(1)
        );
        // A report hashed without its copy is still hashed as counted in offences.
        let Event::IncidentReported(mut victims) = report(Some(10.5)) else { unreachable!() };
        victims.unit = observatory_reference::Unit::Victim;
        assert_eq!(
            content_fingerprint(&Event::IncidentReported(victims)),
            content_fingerprint(&report(Some(10.5)))
        );
    }

    #[test]
    fn derived_fields_are_not_content() {
        let Event::IncidentReported(mut mapped) = report(None) else { unreachable!() };
        mapped.coding = Some(crate::incident::Coding {
            crosswalk: "natinf".into(),
            version: 1,
            iccs_from_crosswalk: true,
            cyber_from_crosswalk: true,
        });
        let mut remapped = mapped.clone();
        remapped.iccs = "0901".into();
        remapped.coding.as_mut().unwrap().version = 2;
        remapped.unit = observatory_reference::Unit::Victim;
        assert_eq!(
            content_fingerprint(&Event::IncidentReported(mapped)),
            content_fingerprint(&Event::IncidentReported(remapped))
        );
    }
}
