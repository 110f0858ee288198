//! The fixed-shape text of keys, stamps and dates, written byte by byte. The ingest writes
//! several per record (subject, message id, revision stamp, payload dates, the fingerprinted
//! copy of those dates), and going through `core::fmt` for each was a fifth of its CPU per
//! record. Every writer gives the bytes `format!` (or chrono's `Serialize`) gives: the bytes
//! on the stream and the fingerprints of revisions already stored depend on it.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as lowercase hex, two digits each: for a big-endian integer, the same text
/// as `{:0w$x}` with `w` twice its size in bytes.
fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(b & 0x0f)]));
    }
}

/// Appends `{value:032x}`.
pub(crate) fn push_hex_u128(out: &mut String, value: u128) {
    push_hex(out, &value.to_be_bytes());
}

/// Appends `{value:016x}`.
pub(crate) fn push_hex_u64(out: &mut String, value: u64) {
    push_hex(out, &value.to_be_bytes());
}

/// Appends `{value}`.
pub(crate) fn push_decimal(out: &mut String, value: u32) {
    // u32::MAX has ten digits, written from the last.
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

/// `YYYY-MM-DD` for the years chrono writes with four digits and no sign (0 to 9999); `None`
/// for the others, which chrono writes as `+10000-01-01` or `-0001-01-01`.
fn date_digits(date: NaiveDate) -> Option<[u8; 10]> {
    let year = u32::try_from(date.year()).ok().filter(|year| *year <= 9999)?;
    let mut text = *b"0000-00-00";
    for (at, value, width) in [(0, year, 4), (5, date.month(), 2), (8, date.day(), 2)] {
        let mut rest = value;
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
    }
    Some(text)
}

/// Serialises a date as chrono does (its `Display` text, a JSON string) without `core::fmt`.
pub(crate) fn serialize_date<S: Serializer>(
    date: &NaiveDate,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match date_digits(*date).as_ref().map(|digits| std::str::from_utf8(digits)) {
        Some(Ok(text)) => serializer.serialize_str(text),
        // A signed year (never a validated record's): chrono's own text.
        _ => date.serialize(serializer),
    }
}

/// [`serialize_date`] for an optional date (`None` as `null`, as serde writes it).
pub(crate) fn serialize_optional_date<S: Serializer>(
    date: &Option<NaiveDate>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match date {
        Some(date) => serialize_date(date, serializer),
        None => serializer.serialize_none(),
    }
}

/// A date read as chrono reads it (`NaiveDate`'s `FromStr`), without chrono's general
/// parser for the `YYYY-MM-DD` form every event has: a rebuild reads two or three per event.
struct Date(NaiveDate);

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Date;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a formatted date string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Date, E> {
                match plain_date(text.as_bytes()) {
                    Some(date) => Ok(Date(date)),
                    // Any other form, or no such day: chrono decides, and words the error.
                    None => text.parse().map(Date).map_err(E::custom),
                }
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The value of a few ASCII digits (at most nine: no overflow), `None` if any is not one.
pub(crate) fn digits_value(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0, |value, &digit| {
        digit.is_ascii_digit().then(|| value * 10 + u32::from(digit - b'0'))
    })
}

/// The day `YYYY-MM-DD` names, when it has that form and the day exists.
pub(crate) fn plain_date(text: &[u8]) -> Option<NaiveDate> {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *text else { return None };
    let year = digits_value(&[y0, y1, y2, y3])?;
    let month = digits_value(&[m0, m1])?;
    let day = digits_value(&[d0, d1])?;
    NaiveDate::from_ymd_opt(year as i32, month, day)
}

/// Deserialises a date as chrono does ([`Date`]).
pub(crate) fn deserialize_date<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<NaiveDate, D::Error> {
    Date::deserialize(deserializer).map(|date| date.0)
}

/// [`deserialize_date`] for an optional date (`null` as `None`).
pub(crate) fn deserialize_optional_date<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<NaiveDate>, D::Error> {
    Option::<Date>::deserialize(deserializer).map(|date| date.map(|date| date.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Edge values and a spread of others, from a fixed xorshift.
    fn samples() -> Vec<u128> {
        let mut values = vec![0, 1, 9, 10, 15, 16, 255, 256, u128::MAX, u128::MAX - 1, 1 << 127];
        values.extend((0..128).map(|shift| 1u128 << shift));
        values.extend((0..32).map(|nibble| 0xau128 << (4 * nibble)));
        values.push(u128::from(u64::MAX));
        values.push(u128::from(u64::MAX) + 1);
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2_000 {
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            values.push((u128::from(next()) << 64) | u128::from(next()));
        }
        values
    }

    #[test]
    fn hex_is_the_text_of_format() {
        for value in samples() {
            let mut text = String::new();
            push_hex_u128(&mut text, value);
            assert_eq!(text, format!("{value:032x}"));
            let low = value as u64;
            let mut text = String::new();
            push_hex_u64(&mut text, low);
            assert_eq!(text, format!("{low:016x}"));
        }
    }

    #[test]
    fn decimals_are_the_text_of_format() {
        let mut values = vec![0, 1, 9, 10, 11, 99, 100, 999_999_999, 1_000_000_000, u32::MAX];
        values.extend((0..32).map(|shift| 1u32 << shift));
        values.extend(samples().into_iter().map(|value| value as u32));
        for value in values {
            let mut text = "x".to_owned();
            push_decimal(&mut text, value);
            assert_eq!(text, format!("x{value}"));
        }
    }

    /// Payload dates are fingerprinted: a byte of difference with chrono's text would make a
    /// resent revision a conflict.
    #[test]
    fn dates_are_the_text_of_chrono() {
        #[derive(Serialize)]
        struct Written {
            #[serde(serialize_with = "serialize_date")]
            date: NaiveDate,
            #[serde(serialize_with = "serialize_optional_date")]
            until: Option<NaiveDate>,
        }
        #[derive(Serialize)]
        struct Chrono {
            date: NaiveDate,
            until: Option<NaiveDate>,
        }
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let mut dates = vec![
            NaiveDate::MIN,
            NaiveDate::MAX,
            ymd(-1, 12, 31),
            ymd(0, 1, 1),
            ymd(1, 1, 1),
            ymd(9, 9, 9),
            ymd(99, 10, 10),
            ymd(999, 12, 31),
            ymd(1000, 1, 1),
            ymd(2024, 2, 29),
            ymd(9999, 12, 31),
            ymd(10000, 1, 1),
        ];
        dates.extend((0..40_000).step_by(7).map(|days| ymd(1940, 1, 1) + chrono::Days::new(days)));
        for date in dates {
            for until in [None, Some(date)] {
                let written = serde_json::to_string(&Written { date, until }).unwrap();
                assert_eq!(written, serde_json::to_string(&Chrono { date, until }).unwrap());
                let tree = serde_json::to_value(Written { date, until }).unwrap();
                assert_eq!(tree, serde_json::to_value(Chrono { date, until }).unwrap());
            }
        }
    }

    /// A date is read to the value, or refused with the error, that chrono's own
    /// `Deserialize` gives: for the plain form and every other text chrono may meet.
    #[test]
    fn dates_are_read_as_chrono_reads_them() {
        #[derive(Debug, serde::Deserialize)]
        struct Ours {
            #[serde(deserialize_with = "deserialize_date")]
            date: NaiveDate,
            #[serde(default, deserialize_with = "deserialize_optional_date")]
            until: Option<NaiveDate>,
        }
        #[derive(Debug, serde::Deserialize)]
        struct Chrono {
            date: NaiveDate,
            #[serde(default)]
            until: Option<NaiveDate>,
        }
        let mut texts: Vec<String> = [
            "2024-02-29",
            "2023-02-29",
            "2024-04-31",
            "2024-00-10",
            "2024-13-01",
            "2024-01-00",
            "0000-01-01",
            "0999-12-31",
            "9999-12-31",
            "+10000-01-01",
            "-0001-12-31",
            "+2024-01-01",
            "2024-1-01",
            "2024-01-1",
            " 2024-01-01",
            "2024-01-01 ",
            "2024/01/01",
            "2024-01-01T00:00:00",
            "20240101",
            "",
            "2024-0a-01",
            "２０２４-01-01",
            "2024-01-01Z",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        let start = NaiveDate::from_ymd_opt(1899, 12, 25).unwrap();
        texts.extend(
            (0..60_000).step_by(13).map(|days| (start + chrono::Days::new(days)).to_string()),
        );
        for text in texts {
            for json in [
                format!("{{\"date\":{}}}", serde_json::Value::from(text.clone())),
                format!(
                    "{{\"date\":\"2024-01-01\",\"until\":{}}}",
                    serde_json::Value::from(text.clone())
                ),
            ] {
                let ours = serde_json::from_str::<Ours>(&json).map(|o| (o.date, o.until));
                let chrono = serde_json::from_str::<Chrono>(&json).map(|c| (c.date, c.until));
                match (ours, chrono) {
                    (Ok(ours), Ok(chrono)) => assert_eq!(ours, chrono, "{json}"),
                    (Err(ours), Err(chrono)) => assert_eq!(ours.to_string(), chrono.to_string()),
                    (ours, chrono) => panic!("{json}: {ours:?} vs {chrono:?}"),
                }
            }
        }
        for json in
            [r#"{"date":"2024-01-01","until":null}"#, r#"{"date":"2024-01-01"}"#, r#"{"date":7}"#]
        {
            let ours = serde_json::from_str::<Ours>(json).map(|o| (o.date, o.until));
            let chrono = serde_json::from_str::<Chrono>(json).map(|c| (c.date, c.until));
            assert_eq!(format!("{ours:?}"), format!("{chrono:?}"), "{json}");
        }
    }
}
