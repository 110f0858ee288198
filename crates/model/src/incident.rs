//! The incident events agencies produce (`IncidentReported` v1 and v2, `IncidentWithdrawn`,
//! `PeriodClosed`), the département codes they carry and the hashes that key incidents.

use chrono::NaiveDate;
use observatory_reference::Unit;
use serde::{Deserialize, Serialize};

/// Payload of `IncidentReported` v2: one revision of an agency's incident record, validated
/// and coded in ICCS. v2 added `unit` and `coding`; v1 events are upcast on read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentReported {
    pub agency_incident_id: String,
    pub revision: u32,
    // Dates are written for every record, twice (payload and fingerprint): without `core::fmt`.
    #[serde(
        serialize_with = "crate::ascii::serialize_date",
        deserialize_with = "crate::ascii::deserialize_date"
    )]
    pub occurred_on: NaiveDate,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::ascii::serialize_optional_date",
        deserialize_with = "crate::ascii::deserialize_optional_date"
    )]
    pub occurred_until: Option<NaiveDate>,
    #[serde(
        serialize_with = "crate::ascii::serialize_date",
        deserialize_with = "crate::ascii::deserialize_date"
    )]
    pub reported_on: NaiveDate,
    pub iccs: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offence_code: Option<String>,
    pub cyber: bool,
    /// INSEE département code; `None` when the agency does not know it.
    pub departement: Option<String>,
    pub victim_type: VictimType,
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_eur: Option<f64>,
    /// What one record of this source counts: an offence, a victim or a report.
    pub unit: Unit,
    /// The crosswalk (and its version in force at ingest) that coded this record, when the
    /// agency sends its own codes. A rebuild re-maps `offence_code` with the version then in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coding: Option<Coding>,
}

/// How a record was coded from the agency's own `offence_code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coding {
    pub crosswalk: String,
    pub version: u32,
    /// `iccs` was derived from `offence_code` (not sent by the agency).
    pub iccs_from_crosswalk: bool,
    /// `cyber` was the crosswalk's default (not sent by the agency).
    pub cyber_from_crosswalk: bool,
}

/// `IncidentReported` v1, as written before v2; read only to upcast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentReportedV1 {
    pub agency_incident_id: String,
    pub revision: u32,
    #[serde(deserialize_with = "crate::ascii::deserialize_date")]
    pub occurred_on: NaiveDate,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ascii::deserialize_optional_date"
    )]
    pub occurred_until: Option<NaiveDate>,
    #[serde(deserialize_with = "crate::ascii::deserialize_date")]
    pub reported_on: NaiveDate,
    pub iccs: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offence_code: Option<String>,
    pub cyber: bool,
    pub departement: Option<String>,
    pub victim_type: VictimType,
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_eur: Option<f64>,
}

impl From<IncidentReportedV1> for IncidentReported {
    /// v1 feeds were coded in ICCS by the agency and counted offences.
    fn from(v1: IncidentReportedV1) -> IncidentReported {
        IncidentReported {
            agency_incident_id: v1.agency_incident_id,
            revision: v1.revision,
            occurred_on: v1.occurred_on,
            occurred_until: v1.occurred_until,
            reported_on: v1.reported_on,
            iccs: v1.iccs,
            offence_code: v1.offence_code,
            cyber: v1.cyber,
            departement: v1.departement,
            victim_type: v1.victim_type,
            channel: v1.channel,
            loss_eur: v1.loss_eur,
            unit: Unit::Offence,
            coding: None,
        }
    }
}

/// Payload of `PeriodClosed` v1: the agency declares a month complete (for all its
/// départements, or the listed ones), so the month is final even with zero incidents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodClosed {
    /// "YYYY-MM".
    pub month: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub departements: Option<Vec<String>>,
}

/// Payload of `IncidentWithdrawn` v1: the incident stops counting until a later revision
/// re-reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentWithdrawn {
    pub agency_incident_id: String,
    pub revision: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
            pub fn allowed() -> String {
                [$($text),+].join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Who the victim is.
    VictimType {
        Individual => "individual",
        Business => "business",
        PublicBody => "public_body",
        Unknown => "unknown",
    }
);

string_enum!(
    /// How the offender reached the victim.
    Channel {
        Email => "email",
        Sms => "sms",
        Phone => "phone",
        SocialNetwork => "social_network",
        Messaging => "messaging",
        Website => "website",
        Marketplace => "marketplace",
        OnlineBanking => "online_banking",
        Other => "other",
        Unknown => "unknown",
    }
);

/// INSEE codes of the 101 départements.
pub const DEPARTEMENTS: [&str; 101] = [
    "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "2A", "2B", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
    "32", "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46", "47",
    "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "60", "61", "62", "63",
    "64", "65", "66", "67", "68", "69", "70", "71", "72", "73", "74", "75", "76", "77", "78", "79",
    "80", "81", "82", "83", "84", "85", "86", "87", "88", "89", "90", "91", "92", "93", "94", "95",
    "971", "972", "973", "974", "976",
];

pub fn is_departement(code: &str) -> bool {
    departement_index(code).is_some()
}

/// Position of a département code in [`DEPARTEMENTS`], computed from the code's shape rather
/// than by scanning the list: the projector looks one up for every event.
pub fn departement_index(code: &str) -> Option<usize> {
    match code.as_bytes() {
        b"2A" => Some(19),
        b"2B" => Some(20),
        &[a @ b'0'..=b'9', b @ b'0'..=b'9'] => {
            match usize::from(a - b'0') * 10 + usize::from(b - b'0') {
                n @ 1..=19 => Some(n - 1),
                n @ 21..=95 => Some(n),
                _ => None,
            }
        }
        b"971" => Some(96),
        b"972" => Some(97),
        b"973" => Some(98),
        b"974" => Some(99),
        b"976" => Some(100),
        _ => None,
    }
}

/// The idempotency key of a record: (source, agency_incident_id, revision), hashed to 128
/// bits. It outlives the NATS duplicate window: the ingest and the projector both key on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupeKey(pub u128);

impl DedupeKey {
    pub fn new(source: &str, agency_incident_id: &str, revision: u32) -> DedupeKey {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(source.as_bytes());
        hasher.update(&[0]);
        hasher.update(agency_incident_id.as_bytes());
        hasher.update(&[0]);
        hasher.update(&revision.to_le_bytes());
        DedupeKey(hasher.digest128())
    }

    /// `{:032x}`, written without `core::fmt` (once per record, as its message id).
    pub fn to_hex(self) -> String {
        let mut text = String::with_capacity(32);
        crate::ascii::push_hex_u128(&mut text, self.0);
        text
    }

    pub fn from_hex(text: &str) -> Option<DedupeKey> {
        (text.len() == 32).then(|| u128::from_str_radix(text, 16).ok().map(DedupeKey)).flatten()
    }
}

/// 128-bit identity of an incident: (source, agency_incident_id). The NUL separator cannot
/// occur in either part (validation forbids control characters).
pub fn incident_hash(source: &str, agency_incident_id: &str) -> u128 {
    // One call over the joined bytes gives the streaming hasher's digest (keys already
    // stored depend on it) without its setup, which cost more than hashing a key.
    let len = source.len() + 1 + agency_incident_id.len();
    let mut joined = [0u8; 256];
    if let Some(buffer) = joined.get_mut(..len) {
        let (head, tail) = buffer.split_at_mut(source.len());
        head.copy_from_slice(source.as_bytes());
        tail[1..].copy_from_slice(agency_incident_id.as_bytes());
        return xxhash_rust::xxh3::xxh3_128(buffer);
    }
    streaming_incident_hash(source, agency_incident_id)
}

/// [`incident_hash`] fed part by part: the definition of the digest, for keys too long to join.
fn streaming_incident_hash(source: &str, agency_incident_id: &str) -> u128 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(source.as_bytes());
    hasher.update(&[0]);
    hasher.update(agency_incident_id.as_bytes());
    hasher.digest128()
}

#[cfg(test)]
mod departement_tests {
    use super::*;

    /// The one-call hash is the streaming hasher's digest, at every length either side of
    /// the joined buffer's size.
    #[test]
    fn an_incident_hash_is_the_streaming_digest() {
        let streaming = streaming_incident_hash;
        for source in ["", "pn", "gendarmerie-nationale-cyber-unit"] {
            for len in 0..300 {
                let id: String = (0..len).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
                assert_eq!(incident_hash(source, &id), streaming(source, &id), "{source} {len}");
            }
        }
        assert_eq!(incident_hash("pn", "é☃"), streaming("pn", "é☃"));
    }

    #[test]
    fn departement_index_is_the_position_in_the_list() {
        for (i, code) in DEPARTEMENTS.iter().enumerate() {
            assert_eq!(departement_index(code), Some(i), "{code}");
        }
        for code in ["", "0", "00", "20", "96", "99", "2C", "975", "977", "9710", "1A", "a1", "7"] {
            assert_eq!(departement_index(code), None, "{code:?}");
        }
    }
}
