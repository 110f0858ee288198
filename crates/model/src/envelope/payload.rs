//! An `IncidentReported` payload as the encoder writes it, read without serde: the struct's
//! fields in their declared order, the optional ones left out when empty, no whitespace, no
//! escape. After the envelope's head ([`super::head`]), serde's derived reader of this payload
//! (field names matched one by one, each value through its visitor) was the largest part of a
//! rebuild's decoding. As with the head, anything else (a field out of order or null, an
//! escape, a date or number in a form this reader does not check) is left to serde, which
//! stays the definition: this reader accepts a subset of what serde accepts, and reads that
//! subset to the same values.

use observatory_reference::Unit;

use super::head::Reader;
use crate::ascii::plain_date;
use crate::incident::{Channel, Coding, IncidentReported, VictimType};

/// The report `payload` holds (the payload's text up to the envelope's closing brace), if it
/// has the encoder's layout; `None` when serde must decide.
pub(super) fn incident_reported(payload: &[u8]) -> Option<IncidentReported> {
    let mut text = Reader { bytes: payload, at: 0 };
    text.literal(b"{\"agency_incident_id\":\"")?;
    let agency_incident_id = text.plain_string()?.to_owned();
    text.literal(b",\"revision\":")?;
    let revision = text.decimal()?;
    text.literal(b",\"occurred_on\":\"")?;
    let occurred_on = date(&mut text)?;
    let occurred_until = match text.literal(b",\"occurred_until\":\"") {
        Some(()) => Some(date(&mut text)?),
        None => None,
    };
    text.literal(b",\"reported_on\":\"")?;
    let reported_on = date(&mut text)?;
    text.literal(b",\"iccs\":\"")?;
    let iccs = text.plain_string()?.to_owned();
    let offence_code = match text.literal(b",\"offence_code\":\"") {
        Some(()) => Some(text.plain_string()?.to_owned()),
        None => None,
    };
    text.literal(b",\"cyber\":")?;
    let cyber = boolean(&mut text)?;
    text.literal(b",\"departement\":")?;
    let departement = match text.literal(b"null") {
        Some(()) => None,
        None => {
            text.literal(b"\"")?;
            Some(text.plain_string()?.to_owned())
        }
    };
    text.literal(b",\"victim_type\":\"")?;
    let victim_type = VictimType::parse(text.plain_string()?)?;
    text.literal(b",\"channel\":\"")?;
    let channel = Channel::parse(text.plain_string()?)?;
    let loss_eur = match text.literal(b",\"loss_eur\":") {
        Some(()) => Some(number(&mut text)?),
        None => None,
    };
    text.literal(b",\"unit\":\"")?;
    let unit = text.plain_string()?;
    // `Unit` lists no values of its own; a unit added to it is read by serde until added here.
    let unit =
        [Unit::Offence, Unit::Victim, Unit::Report].into_iter().find(|u| u.as_str() == unit)?;
    let coding = match text.literal(b",\"coding\":{\"crosswalk\":\"") {
        Some(()) => Some(coding(&mut text)?),
        None => None,
    };
    text.literal(b"}")?;
    // Whitespace may stand between the payload and the envelope's brace, as serde allows.
    let rest = &payload[text.at..];
    rest.iter().all(|b| matches!(b, b' ' | b'\n' | b'\t' | b'\r')).then_some(())?;
    Some(IncidentReported {
        agency_incident_id,
        revision,
        occurred_on,
        occurred_until,
        reported_on,
        iccs,
        offence_code,
        cyber,
        departement,
        victim_type,
        channel,
        loss_eur,
        unit,
        coding,
    })
}

/// The rest of a `coding` object, after its opening and the crosswalk's opening quote.
fn coding(text: &mut Reader<'_>) -> Option<Coding> {
    let crosswalk = text.plain_string()?.to_owned();
    text.literal(b",\"version\":")?;
    let version = text.decimal()?;
    text.literal(b",\"iccs_from_crosswalk\":")?;
    let iccs_from_crosswalk = boolean(text)?;
    text.literal(b",\"cyber_from_crosswalk\":")?;
    let cyber_from_crosswalk = boolean(text)?;
    text.literal(b"}")?;
    Some(Coding { crosswalk, version, iccs_from_crosswalk, cyber_from_crosswalk })
}

/// A `YYYY-MM-DD` string naming a real day, after its opening quote (the form
/// [`crate::ascii::deserialize_date`] reads without chrono, to the same day).
fn date(text: &mut Reader<'_>) -> Option<chrono::NaiveDate> {
    let at = text.at;
    let day = text.plain_string().and_then(|day| plain_date(day.as_bytes()));
    if day.is_none() {
        text.at = at;
    }
    day
}

fn boolean(text: &mut Reader<'_>) -> Option<bool> {
    match text.literal(b"true") {
        Some(()) => Some(true),
        None => text.literal(b"false").map(|()| false),
    }
}

/// A JSON number read by serde_json itself, so that it rounds to the same `f64` as the serde
/// path does (its float parser is not the standard library's).
fn number(text: &mut Reader<'_>) -> Option<f64> {
    let rest = text.bytes.get(text.at..)?;
    let len = rest
        .iter()
        .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        .unwrap_or(rest.len());
    let value: f64 = serde_json::from_slice(&rest[..len]).ok()?;
    text.at += len;
    Some(value)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, NaiveDate, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::envelope::{Envelope, Event, head};

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").unwrap().with_timezone(&Utc)
    }

    /// The payload of `report`'s envelope, as the head reader hands it over.
    fn encoded(report: &IncidentReported) -> Vec<u8> {
        Envelope::encode(&Event::IncidentReported(report.clone()), "pn", at()).1
    }

    fn payload_of(bytes: &[u8]) -> &[u8] {
        head::split(bytes).expect("the encoder's head").payload
    }

    /// What the serde path alone makes of `bytes`, from the JSON tree.
    fn tree(bytes: &[u8]) -> Result<(String, Event), crate::envelope::DecodeError> {
        Envelope::from_bytes(bytes).and_then(|e| e.event().map(|event| (e.source, event)))
    }

    fn report() -> IncidentReported {
        let day = |d| NaiveDate::from_ymd_opt(2024, 2, d).unwrap();
        IncidentReported {
            agency_incident_id: "PN/DDSP-16/2024/0000000001".into(),
            revision: 1,
            occurred_on: day(28),
            occurred_until: None,
            reported_on: day(29),
            iccs: "0903".into(),
            offence_code: None,
            cyber: false,
            departement: None,
            victim_type: VictimType::Individual,
            channel: Channel::Email,
            loss_eur: None,
            unit: Unit::Offence,
            coding: None,
        }
    }

    /// Every field the encoder leaves out or writes, every value of every closed list, and the
    /// numbers a loss can be, are read here, to what serde reads.
    #[test]
    fn every_report_the_encoder_writes_is_read_without_serde() {
        let mut reports = Vec::new();
        for (i, &victim_type) in VictimType::ALL.iter().enumerate() {
            for (j, &channel) in Channel::ALL.iter().enumerate() {
                for (k, unit) in [Unit::Offence, Unit::Victim, Unit::Report].into_iter().enumerate()
                {
                    let full = (i + j + k) % 2 == 0;
                    reports.push(IncidentReported {
                        victim_type,
                        channel,
                        unit,
                        cyber: full,
                        revision: (i * 100 + j * 10 + k) as u32 + u32::from(full) * 4_000_000_000,
                        occurred_until: full.then(|| NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
                        offence_code: full.then(|| "7875".into()),
                        departement: full.then(|| "2A".into()),
                        loss_eur: full.then_some(12.5),
                        coding: full.then(|| Coding {
                            crosswalk: "pn".into(),
                            version: (j + 1) as u32,
                            iccs_from_crosswalk: i % 2 == 0,
                            cyber_from_crosswalk: k % 2 == 0,
                        }),
                        ..report()
                    });
                }
            }
        }
        for loss in [0.0, -0.0, 0.1, 12.0, 1e-7, 5e-324, 1e16, 1e300, f64::MAX, 123_456_789.125] {
            reports.push(IncidentReported { loss_eur: Some(loss), ..report() });
        }
        for id in ["", "é ☃ 𝄞", "a b"] {
            reports.push(IncidentReported { agency_incident_id: id.into(), ..report() });
        }
        for report in reports {
            let bytes = encoded(&report);
            let read = incident_reported(payload_of(&bytes)).expect("the encoder's layout");
            // serde is the definition, and its float parser need not give back every f64
            // exactly: the test is agreement with it.
            assert_eq!(Event::IncidentReported(read), tree(&bytes).unwrap().1);
            assert_eq!(Envelope::decode_event(&bytes).unwrap(), tree(&bytes).unwrap());
        }
    }

    /// Other layouts and values go to serde, which reads or refuses them.
    #[test]
    fn what_it_is_not_sure_of_goes_to_serde() {
        let full = IncidentReported {
            occurred_until: Some(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
            offence_code: Some("7875".into()),
            departement: Some("75".into()),
            loss_eur: Some(12.5),
            ..report()
        };
        let text = String::from_utf8(encoded(&full)).unwrap();
        for (from, to) in [
            ("\"agency_incident_id\":\"PN", "\"agency_incident_id\":\"\\u0050N"),
            ("\"revision\":1", "\"revision\":01"),
            ("\"revision\":1", "\"revision\":1.0"),
            ("\"revision\":1", "\"revision\":4294967296"),
            ("\"occurred_on\":\"2024-02-28\"", "\"occurred_on\":\"2024-2-28\""),
            ("\"occurred_until\":\"2024-02-29\"", "\"occurred_until\":\"2023-02-29\""),
            ("\"occurred_until\":\"2024-02-29\"", "\"occurred_until\":null"),
            ("\"cyber\":false", "\"cyber\":0"),
            ("\"departement\":\"75\"", "\"departement\":75"),
            ("\"victim_type\":\"individual\"", "\"victim_type\":\"Individual\""),
            ("\"loss_eur\":12.5", "\"loss_eur\":1e400"),
            ("\"loss_eur\":12.5", "\"loss_eur\":12.5.1"),
            ("\"loss_eur\":12.5", "\"loss_eur\":null"),
            ("\"unit\":\"offence\"", "\"unit\":\"offences\""),
            ("\"iccs\":\"0903\",", "\"iccs\":\"0903\",\"colour\":\"red\","),
        ] {
            assert!(text.contains(from), "{from}");
            let changed = text.replacen(from, to, 1);
            assert!(incident_reported(payload_of(changed.as_bytes())).is_none(), "{changed}");
            match (Envelope::decode_event(changed.as_bytes()), tree(changed.as_bytes())) {
                (Ok(decoded), Ok(tree)) => assert_eq!(decoded, tree),
                (Err(_), Err(_)) => {}
                (decoded, tree) => panic!("{decoded:?} vs {tree:?}: {changed}"),
            }
        }
        // A field named twice: serde's streaming reader refuses it (the JSON tree would keep
        // the last value, and is not the projector's path).
        let twice = text.replacen("\"cyber\":false,", "\"cyber\":false,\"cyber\":true,", 1);
        assert!(incident_reported(payload_of(twice.as_bytes())).is_none());
        let refused = Envelope::decode_event(twice.as_bytes()).unwrap_err().to_string();
        assert!(refused.contains("duplicate field `cyber`"), "{refused}");
    }

    fn arbitrary_report() -> impl Strategy<Value = IncidentReported> {
        let text = "\\PC{0,10}";
        let day = (1900i32..2100, 1u32..13, 1u32..29)
            .prop_map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap());
        (
            (text, any::<u32>(), day.clone(), proptest::option::of(day.clone()), day),
            (text, proptest::option::of(text), any::<bool>(), proptest::option::of(text)),
            (0..VictimType::ALL.len(), 0..Channel::ALL.len(), 0usize..3),
            proptest::option::of(any::<f64>().prop_filter("finite", |v| v.is_finite())),
            proptest::option::of((text, any::<u32>(), any::<bool>(), any::<bool>())),
        )
            .prop_map(|(dates, codes, (victim, channel, unit), loss_eur, coding)| {
                let (agency_incident_id, revision, occurred_on, occurred_until, reported_on) =
                    dates;
                let (iccs, offence_code, cyber, departement) = codes;
                IncidentReported {
                    agency_incident_id,
                    revision,
                    occurred_on,
                    occurred_until,
                    reported_on,
                    iccs,
                    offence_code,
                    cyber,
                    departement,
                    victim_type: VictimType::ALL[victim],
                    channel: Channel::ALL[channel],
                    loss_eur,
                    unit: [Unit::Offence, Unit::Victim, Unit::Report][unit],
                    coding: coding.map(
                        |(crosswalk, version, iccs_from_crosswalk, cyber_from_crosswalk)| Coding {
                            crosswalk,
                            version,
                            iccs_from_crosswalk,
                            cyber_from_crosswalk,
                        },
                    ),
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Any report in the encoder's layout decodes to what serde decodes; this reader
        /// takes every one without an escape in its strings, and leaves the others to serde.
        #[test]
        fn any_report_reads_back_as_serde_reads_it(report in arbitrary_report()) {
            let bytes = encoded(&report);
            let tree = tree(&bytes).unwrap();
            prop_assert_eq!(&Envelope::decode_event(&bytes).unwrap(), &tree);
            let read = incident_reported(payload_of(&bytes));
            let escaped = String::from_utf8_lossy(payload_of(&bytes)).contains('\\');
            prop_assert_eq!(read.is_some(), !escaped);
            if let Some(read) = read {
                prop_assert_eq!(Event::IncidentReported(read), tree.1);
            }
        }
    }
}
