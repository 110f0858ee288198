//! The fixed-shape text of keys, stamps and dates, written byte by byte. The ingest writes
//! several per record (subject, message id, revision stamp, payload dates, the fingerprinted
//! copy of those dates), and going through `core::fmt` for each was a fifth of its CPU per
//! record. Every writer gives the bytes `format!` (or chrono's `Serialize`) gives: the bytes
//! on the stream and the fingerprints of revisions already stored depend on it.

use chrono::{Datelike, NaiveDate};
use serde::{Serialize, Serializer};

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
}
