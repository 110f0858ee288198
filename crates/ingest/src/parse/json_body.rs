//! The JSON formats of a body: NDJSON (a record per line) and a JSON array of records. Each
//! object is read key by key, so that a key sent twice is noticed and named.

use std::borrow::Cow;
use std::collections::HashSet;

use observatory_model::{IncidentRecord, Sent};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{BodyError, ParsedRecord, Record, at_most};

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 40 { format!("{}…", &text[..text.floor_char_boundary(40)]) } else { text }
}

/// One JSON value read as a record. An object is built key by key so that a key sent twice is
/// noticed (a `serde_json::Map` keeps one of the values, silently): the keys sent more than
/// once are listed beside the record, and the record is rejected naming each.
/// Anything but an object is kept for the error message.
pub(crate) enum JsonRecord<R> {
    /// The object (first value of each key) and the keys it sent more than once, each once,
    /// in the order of their first repetition.
    Object(R, Vec<String>),
    Other(Value),
}

impl<R> JsonRecord<R> {
    pub(crate) fn into_object(self) -> Result<R, String> {
        match self {
            JsonRecord::Object(map, _) => Ok(map),
            JsonRecord::Other(other) => {
                Err(format!("expected a JSON object, got {}", short(&other)))
            }
        }
    }
}

/// A record that a JSON object is read into, key by key.
pub(crate) trait ReadObject<'de>: Sized {
    /// The object of `access` (the first value of each key) and each key it sent more than
    /// once, as often as it was repeated.
    fn read<A: MapAccess<'de>>(access: A) -> Result<(Self, Vec<String>), A::Error>;
}

impl<'de, R: ReadObject<'de>> Deserialize<'de> for JsonRecord<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonRecord<R>, D::Error> {
        deserializer.deserialize_any(RecordVisitor(std::marker::PhantomData))
    }
}

struct RecordVisitor<R>(std::marker::PhantomData<R>);

impl<'de> ReadObject<'de> for Record {
    fn read<A: MapAccess<'de>>(mut access: A) -> Result<(Record, Vec<String>), A::Error> {
        let mut fields: Vec<(String, Value)> = Vec::new();
        let mut repeated: Vec<String> = Vec::new();
        // A set of the keys keeps one huge object linear in its size.
        let mut keys: HashSet<String> = HashSet::new();
        while let Some(key) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            if keys.insert(key.clone()) {
                fields.push((key, value));
            } else {
                repeated.push(key);
            }
        }
        Ok((Record(fields), repeated))
    }
}

/// An incident record's fields, matched to the feed's as they are read. Its keys and string
/// values are borrowed from the body unless they hold an escape.
impl<'de> ReadObject<'de> for Box<IncidentRecord<'de>> {
    fn read<A: MapAccess<'de>>(mut access: A) -> Result<(Self, Vec<String>), A::Error> {
        let mut record = Box::<IncidentRecord>::default();
        let mut repeated = Vec::new();
        while let Some(Key(key)) = access.next_key()? {
            let value: Sent<'de> = access.next_value()?;
            if let Err(key) = record.insert(key, value) {
                repeated.push(key.into_owned());
            }
        }
        Ok((record, repeated))
    }
}

/// An object's key, borrowed from the body unless it holds an escape.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v)))
    }
}

impl<'de, R: ReadObject<'de>> Visitor<'de> for RecordVisitor<R> {
    type Value = JsonRecord<R>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<JsonRecord<R>, A::Error> {
        let (record, mut repeated) = R::read(access)?;
        if !repeated.is_empty() {
            let mut once = HashSet::new();
            repeated.retain(|key| once.insert(key.clone()));
        }
        Ok(JsonRecord::Object(record, repeated))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonRecord<R>, A::Error> {
        let mut values = Vec::new();
        while let Some(value) = seq.next_element::<Value>()? {
            values.push(value);
        }
        Ok(JsonRecord::Other(Value::Array(values)))
    }

    fn visit_bool<E>(self, v: bool) -> Result<JsonRecord<R>, E> {
        Ok(JsonRecord::Other(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<JsonRecord<R>, E> {
        Ok(JsonRecord::Other(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<JsonRecord<R>, E> {
        Ok(JsonRecord::Other(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<JsonRecord<R>, E> {
        Ok(JsonRecord::Other(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<JsonRecord<R>, E> {
        Ok(JsonRecord::Other(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<JsonRecord<R>, E> {
        Ok(JsonRecord::Other(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<JsonRecord<R>, E> {
        Ok(JsonRecord::Other(Value::Null))
    }
}

/// One JSON value read as a [`JsonRecord`].
pub(crate) fn json_record<'de, R: ReadObject<'de>>(
    text: &'de str,
) -> Result<JsonRecord<R>, serde_json::Error> {
    serde_json::from_str(text)
}

pub(super) fn parse_ndjson(
    text: &str,
    max_records: usize,
) -> Result<Vec<ParsedRecord<'_>>, BodyError> {
    at_most(
        max_records,
        ndjson_lines(text).map(|(line, text)| {
            ParsedRecord::new(line, json_record(text).map_err(|e| format!("invalid JSON: {e}")))
        }),
    )
}

/// The records of an NDJSON body, for the incident and the survey feeds: each line that is
/// not blank, with its physical line number and without the CR of a CRLF.
pub(crate) fn ndjson_lines(text: &str) -> impl Iterator<Item = (u64, &str)> {
    text.split('\n')
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| (i as u64 + 1, line.trim_end_matches('\r')))
}

pub(super) fn parse_json_array(
    text: &str,
    max_records: usize,
) -> Result<Vec<ParsedRecord<'_>>, BodyError> {
    let unreadable =
        |e: serde_json::Error| BodyError::Unreadable(format!("body is not valid JSON: {e}"));
    // Elements are read as records, so a repeated key rejects its element and not the body.
    let values: Vec<JsonRecord<Box<IncidentRecord>>> = if text.trim_start().starts_with('[') {
        let too_many = std::cell::Cell::new(false);
        let mut reader = serde_json::Deserializer::from_str(text);
        let read = Records { max: max_records, too_many: &too_many }
            .deserialize(&mut reader)
            .and_then(|values| reader.end().map(|()| values));
        match read {
            Ok(values) => values,
            Err(_) if too_many.get() => {
                return Err(BodyError::TooManyRecords { max: max_records });
            }
            Err(e) => return Err(unreadable(e)),
        }
    } else {
        return match serde_json::from_str::<Value>(text) {
            Ok(other) => Err(BodyError::Unreadable(format!(
                "expected a JSON array of records, got {}",
                short(&other)
            ))),
            Err(e) => Err(unreadable(e)),
        };
    };
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, v)| ParsedRecord::new(i as u64 + 1, Ok(v)))
        .collect())
}

/// A JSON array of records, read element by element and given up at the first past `max`
/// (noted in `too_many`: serde's error cannot carry it).
struct Records<'a> {
    max: usize,
    too_many: &'a std::cell::Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Records<'_> {
    type Value = Vec<JsonRecord<Box<IncidentRecord<'de>>>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = Vec<JsonRecord<Box<IncidentRecord<'de>>>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<Vec<JsonRecord<Box<IncidentRecord<'de>>>>, A::Error> {
        let mut records = Vec::new();
        while let Some(record) = seq.next_element::<JsonRecord<Box<IncidentRecord<'de>>>>()? {
            if records.len() == self.max {
                self.too_many.set(true);
                return Err(serde::de::Error::custom("too many records"));
            }
            records.push(record);
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past [`IncidentRecord::KEYS_COMPARED_ONE_BY_ONE`] keys outside the feed an incident
    /// record's keys move to a set: the same record, first values and repeated keys, either
    /// side of the switch, and the same as a period closure's record reads.
    #[test]
    fn a_record_with_many_keys_keeps_first_values_and_names_each_repeat_once() {
        let switch = IncidentRecord::KEYS_COMPARED_ONE_BY_ONE;
        for distinct in [switch - 1, switch, 3 * switch] {
            let mut pairs: Vec<String> = (0..distinct).map(|i| format!("\"k{i}\":{i}")).collect();
            // Repeats of the first key, of the key where the set starts, and of the last, the
            // first of them twice; their values are dropped.
            let at_switch = switch.min(distinct - 1);
            for again in [distinct - 1, 0, at_switch, 0] {
                pairs.push(format!("\"k{again}\":\"again\""));
            }
            let text = format!("{{{}}}", pairs.join(","));
            let mut expected = vec![format!("k{}", distinct - 1), "k0".to_owned()];
            if at_switch != 0 && at_switch != distinct - 1 {
                expected.push(format!("k{at_switch}"));
            }
            let Ok(JsonRecord::Object(record, repeated)) = super::json_record::<Record>(&text)
            else {
                panic!("{text}")
            };
            assert_eq!(record.0.len(), distinct);
            for (i, (name, value)) in record.iter().enumerate() {
                assert_eq!((name, value), (format!("k{i}").as_str(), &Value::from(i)));
            }
            assert_eq!(repeated, expected, "{distinct} keys");
            // An incident record, whose keys outside the feed switch to a set the same way.
            let Ok(JsonRecord::Object(record, repeated)) =
                super::json_record::<Box<IncidentRecord>>(&text)
            else {
                panic!("{text}")
            };
            assert_eq!(record.len(), distinct);
            for (i, (name, value)) in record.fields().into_iter().enumerate() {
                assert_eq!((name, value), (format!("k{i}").as_str(), &Sent::Number(i.into())));
            }
            assert_eq!(repeated, expected, "{distinct} keys");
        }
    }
}
