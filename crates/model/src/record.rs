//! One incident record as an agency sent it: each field of the feed in a slot of its own, its
//! strings borrowed from the request body where they hold no escape.
//!
//! The ingest used to read a record into a list of (key, `serde_json::Value`) pairs, then look
//! each field up by name. That cost an allocation per string and per key, and a scan of the
//! list per lookup: more than the reading itself. Here a key is matched once, as it is read,
//! and validation reads slots. Fields outside the feed are kept, in the order sent, so that a
//! refusal still names each of them.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The fields of the incident feed: those of a report, and a withdrawal's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    AgencyIncidentId,
    Revision,
    OccurredOn,
    OccurredUntil,
    ReportedOn,
    Iccs,
    OffenceCode,
    Cyber,
    Departement,
    VictimType,
    Channel,
    LossEur,
    Withdrawn,
    Reason,
}

impl Field {
    /// Every field, in the order the feed's documentation lists them.
    pub const ALL: [Field; 14] = [
        Field::AgencyIncidentId,
        Field::Revision,
        Field::OccurredOn,
        Field::OccurredUntil,
        Field::ReportedOn,
        Field::Iccs,
        Field::OffenceCode,
        Field::Cyber,
        Field::Departement,
        Field::VictimType,
        Field::Channel,
        Field::LossEur,
        Field::Withdrawn,
        Field::Reason,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::AgencyIncidentId => "agency_incident_id",
            Field::Revision => "revision",
            Field::OccurredOn => "occurred_on",
            Field::OccurredUntil => "occurred_until",
            Field::ReportedOn => "reported_on",
            Field::Iccs => "iccs",
            Field::OffenceCode => "offence_code",
            Field::Cyber => "cyber",
            Field::Departement => "departement",
            Field::VictimType => "victim_type",
            Field::Channel => "channel",
            Field::LossEur => "loss_eur",
            Field::Withdrawn => "withdrawn",
            Field::Reason => "reason",
        }
    }

    pub fn of_name(name: &str) -> Option<Field> {
        Some(match name {
            "agency_incident_id" => Field::AgencyIncidentId,
            "revision" => Field::Revision,
            "occurred_on" => Field::OccurredOn,
            "occurred_until" => Field::OccurredUntil,
            "reported_on" => Field::ReportedOn,
            "iccs" => Field::Iccs,
            "offence_code" => Field::OffenceCode,
            "cyber" => Field::Cyber,
            "departement" => Field::Departement,
            "victim_type" => Field::VictimType,
            "channel" => Field::Channel,
            "loss_eur" => Field::LossEur,
            "withdrawn" => Field::Withdrawn,
            "reason" => Field::Reason,
            _ => return None,
        })
    }

    /// Whether a report may send it.
    pub fn on_report(self) -> bool {
        self != Field::Reason
    }

    /// Whether a withdrawal may send it.
    pub fn on_withdrawal(self) -> bool {
        matches!(self, Field::AgencyIncidentId | Field::Revision | Field::Withdrawn | Field::Reason)
    }
}

/// One value as sent. Arrays and objects are never valid values of the feed, so only their
/// kind is kept, for the refusal.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl<'a> Sent<'a> {
    pub fn is_null(&self) -> bool {
        matches!(self, Sent::Null)
    }

    /// A JSON value seen as sent, its string borrowed.
    pub fn of_value(value: &'a Value) -> Sent<'a> {
        match value {
            Value::Null => Sent::Null,
            Value::Bool(b) => Sent::Bool(*b),
            Value::Number(n) => Sent::Number(n.clone()),
            Value::String(s) => Sent::Str(Cow::Borrowed(s)),
            Value::Array(_) => Sent::Array,
            Value::Object(_) => Sent::Object,
        }
    }

    /// Names the JSON type of the value, quoting short strings: CSV cells arrive as strings,
    /// and "got a string (\"yes\")" tells the agency which cell to fix.
    pub fn type_name(&self) -> String {
        match self {
            Sent::Null => "null".into(),
            Sent::Bool(b) => format!("a boolean ({b})"),
            Sent::Number(n) => format!("a number ({n})"),
            Sent::Str(s) if s.chars().count() <= 40 => format!("a string ({s:?})"),
            Sent::Str(_) => "a long string".into(),
            Sent::Array => "an array".into(),
            Sent::Object => "an object".into(),
        }
    }
}

/// A value read from JSON as [`serde_json::Value`] would read it, without building nested
/// values (skipped without recursion: a deeply nested value cannot exhaust the stack).
impl<'de> Deserialize<'de> for Sent<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Sent<'de>, D::Error> {
        deserializer.deserialize_any(SentVisitor)
    }
}

struct SentVisitor;

impl<'de> Visitor<'de> for SentVisitor {
    type Value = Sent<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Sent<'de>, E> {
        Ok(Sent::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Sent<'de>, E> {
        Ok(Sent::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Sent<'de>, E> {
        Ok(Sent::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Sent<'de>, E> {
        // As serde_json's Value: a float without a JSON form (never read from JSON) is null.
        Ok(Number::from_f64(v).map_or(Sent::Null, Sent::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Sent<'de>, E> {
        Ok(Sent::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Sent<'de>, E> {
        Ok(Sent::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Sent<'de>, E> {
        Ok(Sent::Str(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Sent<'de>, E> {
        Ok(Sent::Null)
    }

    fn visit_none<E>(self) -> Result<Sent<'de>, E> {
        Ok(Sent::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Sent<'de>, D::Error> {
        deserializer.deserialize_any(SentVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Sent<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Sent::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Sent<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Sent::Object)
    }
}

/// One incident record: the first value of each key sent, each field of the feed in its slot
/// and every other field in the order sent.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord<'a> {
    /// Each field of the feed sent, with its position among the record's keys.
    feed: [Option<(u32, Sent<'a>)>; Field::ALL.len()],
    /// Fields outside the feed, with their positions.
    other: Vec<(u32, Cow<'a, str>, Sent<'a>)>,
    /// The keys of `other` once there are many of them.
    other_keys: Option<HashSet<Cow<'a, str>>>,
    /// Keys kept so far.
    kept: u32,
}

impl Default for IncidentRecord<'_> {
    fn default() -> Self {
        IncidentRecord {
            feed: [const { None }; Field::ALL.len()],
            other: Vec::new(),
            other_keys: None,
            kept: 0,
        }
    }
}

impl<'a> IncidentRecord<'a> {
    /// Above this many fields outside the feed, a record's keys are looked up in a set rather
    /// than compared in turn, so that one huge object (never a valid record) stays linear in
    /// its size.
    pub const KEYS_COMPARED_ONE_BY_ONE: usize = 32;

    /// Adds a key and its value, unless the key was sent before: then the first value stays
    /// and the key is handed back.
    pub fn insert(&mut self, key: Cow<'a, str>, value: Sent<'a>) -> Result<(), Cow<'a, str>> {
        let position = self.kept;
        match Field::of_name(&key) {
            Some(field) => {
                let slot = &mut self.feed[field as usize];
                if slot.is_some() {
                    return Err(key);
                }
                *slot = Some((position, value));
            }
            None => {
                if self.other_keys.is_none() && self.other.len() >= Self::KEYS_COMPARED_ONE_BY_ONE {
                    self.other_keys =
                        Some(self.other.iter().map(|(_, key, _)| key.clone()).collect());
                }
                let seen = match &mut self.other_keys {
                    Some(keys) => !keys.insert(key.clone()),
                    None => self.other.iter().any(|(_, sent, _)| *sent == key),
                };
                if seen {
                    return Err(key);
                }
                self.other.push((position, key, value));
            }
        }
        self.kept += 1;
        Ok(())
    }

    /// The value sent for a field of the feed.
    pub fn get(&self, field: Field) -> Option<&Sent<'a>> {
        self.feed[field as usize].as_ref().map(|(_, value)| value)
    }

    /// The value sent for any key.
    pub fn get_named(&self, name: &str) -> Option<&Sent<'a>> {
        match Field::of_name(name) {
            Some(field) => self.get(field),
            None => self.other.iter().find(|(_, key, _)| key == name).map(|(_, _, value)| value),
        }
    }

    /// Whether every key sent is a field of the feed.
    pub fn only_feed_fields(&self) -> bool {
        self.other.is_empty()
    }

    /// Every key sent (the first value of each), in the order sent.
    pub fn fields(&self) -> Vec<(&str, &Sent<'a>)> {
        let mut fields: Vec<(u32, &str, &Sent<'a>)> = Field::ALL
            .iter()
            .filter_map(|&field| {
                let (position, value) = self.feed[field as usize].as_ref()?;
                Some((*position, field.name(), value))
            })
            .chain(self.other.iter().map(|(position, key, value)| (*position, &**key, value)))
            .collect();
        fields.sort_unstable_by_key(|(position, _, _)| *position);
        fields.into_iter().map(|(_, name, value)| (name, value)).collect()
    }

    pub fn len(&self) -> usize {
        self.kept as usize
    }

    pub fn is_empty(&self) -> bool {
        self.kept == 0
    }
}

/// A JSON object as a record (each of its keys is distinct), its strings borrowed.
impl<'a> From<&'a Map<String, Value>> for IncidentRecord<'a> {
    fn from(map: &'a Map<String, Value>) -> IncidentRecord<'a> {
        let mut record = IncidentRecord::default();
        for (key, value) in map {
            let kept = record.insert(Cow::Borrowed(key), Sent::of_value(value));
            debug_assert!(kept.is_ok(), "the keys of a map are distinct");
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_field_is_found_by_its_name() {
        for field in Field::ALL {
            assert_eq!(Field::of_name(field.name()), Some(field));
        }
        assert_eq!(Field::of_name("Revision"), None);
    }

    #[test]
    fn a_record_keeps_the_first_value_of_a_key_and_the_order_sent() {
        let mut record = IncidentRecord::default();
        record.insert("zeta".into(), Sent::Bool(true)).unwrap();
        record.insert("revision".into(), Sent::Number(2.into())).unwrap();
        record.insert("alpha".into(), Sent::Null).unwrap();
        assert_eq!(
            record.insert("revision".into(), Sent::Number(3.into())),
            Err("revision".into())
        );
        assert_eq!(record.insert("zeta".into(), Sent::Null), Err("zeta".into()));
        assert_eq!(record.get(Field::Revision), Some(&Sent::Number(2.into())));
        assert_eq!(record.get_named("zeta"), Some(&Sent::Bool(true)));
        let names: Vec<&str> = record.fields().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["zeta", "revision", "alpha"]);
        assert_eq!(record.len(), 3);
    }

    #[test]
    fn many_keys_outside_the_feed_are_still_told_apart() {
        let mut record = IncidentRecord::default();
        for i in 0..100 {
            record.insert(format!("k{i}").into(), Sent::Null).unwrap();
        }
        assert!(record.insert("k7".into(), Sent::Null).is_err());
        assert!(record.insert("k99".into(), Sent::Null).is_err());
        record.insert("k100".into(), Sent::Null).unwrap();
        assert_eq!(record.len(), 101);
    }

    #[test]
    fn values_read_as_serde_json_reads_them() {
        let text = r#"[null,true,-3,18446744073709551615,1.5,"plain","esc\"aped",[[1]],{"a":{}}]"#;
        let read: Vec<Sent> = serde_json::from_str(text).unwrap();
        let values: Vec<Value> = serde_json::from_str(text).unwrap();
        assert_eq!(read, values.iter().map(Sent::of_value).collect::<Vec<_>>());
        assert!(matches!(&read[5], Sent::Str(Cow::Borrowed("plain"))));
        assert_eq!(read[4].type_name(), "a number (1.5)");
        assert_eq!(read[7].type_name(), "an array");
    }

    #[test]
    fn a_deeply_nested_value_is_skipped_without_recursion() {
        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let read: Sent = serde_json::from_str(&text).unwrap();
        assert_eq!(read, Sent::Array);
        assert_eq!(IncidentRecord::from(json!({"a": 1}).as_object().unwrap()).len(), 1);
    }
}
