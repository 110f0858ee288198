//! One field's value as a record sent it.

use compact_str::CompactString;
use observatory_model::FieldValue;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// A field's value: a `serde_json::Value` but for strings, kept inline up to 24 bytes (every
/// value of a valid record but a long id, offence code or reason). Read into a `Value`, each
/// string of each record was allocated, copied and freed: read and written back by serde_json
/// alone, a record cost 1.4 µs through a `Value` and 0.8 µs with its strings borrowed (the
/// bench's JSON floors, BENCHMARKS.md, tenth steps).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Number(Number),
    String(CompactString),
    /// An array or an object, as sent.
    Json(Value),
}

impl Cell {
    /// The value as validation reads it.
    pub fn view(&self) -> FieldValue<'_> {
        match self {
            Cell::Null => FieldValue::Null,
            Cell::Bool(b) => FieldValue::Bool(*b),
            Cell::Number(n) => FieldValue::Number(n),
            Cell::String(s) => FieldValue::String(s),
            Cell::Json(value) => FieldValue::Json(value),
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Number(n) => Value::Number(n.clone()),
            Cell::String(s) => Value::String(s.to_string()),
            Cell::Json(value) => value.clone(),
        }
    }

    pub fn string(s: &str) -> Cell {
        Cell::String(CompactString::from(s))
    }
}

impl From<Value> for Cell {
    fn from(value: Value) -> Cell {
        match value {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(b),
            Value::Number(n) => Cell::Number(n),
            Value::String(s) => Cell::String(CompactString::from(s)),
            json @ (Value::Array(_) | Value::Object(_)) => Cell::Json(json),
        }
    }
}

/// Tests compare cells with the values they stand for.
impl PartialEq<Value> for Cell {
    fn eq(&self, other: &Value) -> bool {
        self.view() == FieldValue::from(other)
    }
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Cell, D::Error> {
        deserializer.deserialize_any(CellVisitor)
    }
}

struct CellVisitor;

/// What serde_json's own `Value` visitor makes of each JSON value, strings inline.
impl<'de> Visitor<'de> for CellVisitor {
    type Value = Cell;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Cell, E> {
        Ok(Cell::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Cell, E> {
        Ok(Cell::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Cell, E> {
        Ok(Cell::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Cell, E> {
        Ok(Number::from_f64(v).map_or(Cell::Null, Cell::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cell, E> {
        Ok(Cell::string(v))
    }

    fn visit_string<E>(self, v: String) -> Result<Cell, E> {
        Ok(Cell::String(CompactString::from(v)))
    }

    fn visit_unit<E>(self) -> Result<Cell, E> {
        Ok(Cell::Null)
    }

    fn visit_none<E>(self) -> Result<Cell, E> {
        Ok(Cell::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cell, D::Error> {
        Cell::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Cell, A::Error> {
        Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Cell::Json)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Cell, A::Error> {
        Value::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Cell::Json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every JSON value reads as the `Value` serde_json makes of it, strings included.
    #[test]
    fn a_cell_is_the_value_serde_json_reads() {
        let long = "x".repeat(40);
        for text in [
            "null".to_owned(),
            "true".into(),
            "-3".into(),
            "18446744073709551615".into(),
            "1250.5".into(),
            "1e400".into(),
            r#""2024-03-05""#.into(),
            r#""a\"b\n""#.into(),
            format!("{long:?}"),
            r#"[1,{"y":2}]"#.into(),
            r#"{"a":[null]}"#.into(),
        ] {
            let value: Result<Value, _> = serde_json::from_str(&text);
            let cell: Result<Cell, _> = serde_json::from_str(&text);
            match (value, cell) {
                (Ok(value), Ok(cell)) => {
                    assert_eq!(cell, value, "{text}");
                    assert_eq!(cell.to_value(), value, "{text}");
                    assert_eq!(Cell::from(value), cell, "{text}");
                }
                (value, cell) => assert_eq!(value.is_err(), cell.is_err(), "{text}"),
            }
        }
    }
}
