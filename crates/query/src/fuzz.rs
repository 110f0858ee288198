//! Property tests (fuzzing) of the query strings of `/v1/incidents/counts` and `/v1/coverage`:
//! raw query strings, arbitrary or built from the parameters and values the API knows (and
//! near misses), mutated, through `query_pairs`, `CountsRequest::parse` and the coverage
//! parser. No panic; a refusal is a sentence naming the parameter it is about; an accepted
//! request holds only well-formed months and filters. The SDMX and survey parsers have their
//! own modules (`sdmx::fuzz`, `survey::fuzz`) on the [`support`] here.

use observatory_fuzzing::config;
use proptest::prelude::*;

use self::support::query_string;
use crate::api::CoverageQuery;
use crate::request::{CountsRequest, Dimension, OutputFormat, RequestError, query_pairs};

pub(crate) mod support {
    //! What the query crate's fuzz properties share: the parameters, values and query strings
    //! of its endpoints (the configuration is every crate's, in `observatory-fuzzing`).

    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Values any parameter may be sent: the API's own, near misses and troublemakers.
    pub(crate) const VALUES: &[&str] = &[
        "",
        " ",
        ",",
        ",,",
        "2024",
        "2024-03",
        "2024-13",
        "2024-00",
        "2024-+1",
        "2024--1",
        "2024-3",
        "+202-01",
        "２０２４",
        "2024-M03",
        "2024-A1",
        "2025-11-01T00:00:00Z",
        "2025-11-01T00:00:00+01:00",
        "2025-11-01T00:00:00 01:00",
        "2025-11-01",
        "yesterday",
        "r1",
        "r0",
        "r01",
        "r18446744073709551616",
        "0",
        "1",
        "-1",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999",
        "1e3",
        "json",
        "csv",
        "jsonstat",
        "arrow",
        "parquet",
        "xml",
        "per100k",
        "releases",
        "true",
        "false",
        "75",
        "75,92",
        "2A",
        "20",
        "971",
        "0903",
        "09",
        "0999",
        "090321",
        "11",
        "offence",
        "victim",
        "report",
        "individual",
        "email",
        "pn",
        "PN",
        "year,month",
        "month,month",
        "departement,iccs,unit",
        "colour",
        "\u{0}",
        "é",
        "\u{feff}",
        "%",
        "%zz",
        "%2B",
        "a+b",
        "mean",
        "ratio",
        "x/y",
        "0.95",
        "NaN",
        "1",
        "wald",
        "logit",
        "2024",
    ];

    /// Parameter names of every query endpoint, and strays.
    pub(crate) const KEYS: &[&str] = &[
        "by",
        "from",
        "to",
        "format",
        "rate",
        "min_sequence",
        "release",
        "as_of",
        "as_of_time",
        "history",
        "year",
        "month",
        "departement",
        "iccs",
        "cyber",
        "victim_type",
        "channel",
        "source",
        "iccs_section",
        "iccs_division",
        "iccs_group",
        "region",
        "unit",
        "wave",
        "stat",
        "var",
        "ci",
        "level",
        "item",
        "incidents_min_sequence",
        "colour",
        "",
        "BY",
    ];

    fn part(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(pool).prop_map(str::to_owned),
            1 => ".{0,10}",
            1 => proptest::collection::vec(proptest::sample::select(pool), 1..4)
                .prop_map(|parts| parts.join(",")),
        ]
    }

    /// `key=value` pairs percent-encoded as a client would (or not), joined by `&`; sometimes
    /// with a key repeated, a pair without `=`, or bytes a browser would never send.
    pub(crate) fn query_string(
        keys: &'static [&'static str],
        values: &'static [&'static str],
    ) -> impl Strategy<Value = String> {
        let pair = (part(keys), part(values), 0u8..6).prop_map(|(k, v, style)| match style {
            0 => k,
            1 => format!("{k}={v}"),
            2 => format!("{}={}", raw_encode(&k), v.replace(' ', "+")),
            _ => format!("{}={}", raw_encode(&k), raw_encode(&v)),
        });
        prop_oneof![
            6 => vec(pair, 0..6).prop_map(|pairs| pairs.join("&")),
            1 => ".{0,40}",
            1 => vec(any::<u8>(), 0..40).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ]
    }

    /// Percent-encodes what is not unreserved, as a careful client does.
    pub(crate) fn raw_encode(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// Whether `message` names one of the parameters of `pairs` (or one of `required`, for a
    /// parameter that was left out).
    pub(crate) fn names_a_parameter(
        message: &str,
        pairs: &[(String, String)],
        required: &[&str],
    ) -> bool {
        pairs.iter().any(|(k, _)| {
            if k.is_empty() { message.contains("''") } else { message.contains(k.as_str()) }
        }) || required.iter().any(|r| message.contains(r))
    }
}

/// A month the counts engine compares as text: `YYYY-MM` in ASCII digits, month 01 to 12.
fn is_month(m: &str) -> bool {
    m.len() == 7
        && m.as_bytes()[4] == b'-'
        && m.bytes().enumerate().all(|(i, b)| i == 4 || b.is_ascii_digit())
        && matches!(m[5..].parse::<u8>(), Ok(1..=12))
}

fn check_counts(pairs: &[(String, String)]) -> Result<(), TestCaseError> {
    match CountsRequest::parse(pairs) {
        Ok(request) => {
            for bound in [&request.from, &request.to].into_iter().flatten() {
                prop_assert!(is_month(bound), "{:?} accepted as a month from {:?}", bound, pairs);
            }
            if let (Some(from), Some(to)) = (&request.from, &request.to) {
                prop_assert!(from <= to);
            }
            for (dimension, values) in &request.filters {
                prop_assert!(!values.is_empty());
                for v in values {
                    prop_assert!(!v.is_empty() && v.trim() == v, "{:?}: {:?}", dimension, v);
                    if *dimension == Dimension::Month {
                        prop_assert!(is_month(v), "month={:?} accepted", v);
                    }
                }
            }
            if request.history {
                prop_assert_eq!(request.format, OutputFormat::Json);
            }
            let _ = request.year_range();
            let _ = request.unit_is_fixed();
        }
        Err(RequestError(message)) => {
            prop_assert!(!message.trim().is_empty());
            prop_assert!(
                support::names_a_parameter(&message, pairs, &[]),
                "{:?} names no parameter of {:?}",
                message,
                pairs
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// `GET /v1/incidents/counts?…` with any query string.
    #[test]
    fn fuzz_counts_query_strings(raw in query_string(support::KEYS, support::VALUES)) {
        check_counts(&query_pairs(Some(&raw)))?;
    }

    /// The counts parser on pairs no query string decodes to (any text, NULs, lone
    /// surrogates replaced): a panic-free answer still.
    #[test]
    fn fuzz_counts_pairs(pairs in proptest::collection::vec(
        (
            prop_oneof![proptest::sample::select(support::KEYS).prop_map(str::to_owned), ".{0,8}"],
            prop_oneof![proptest::sample::select(support::VALUES).prop_map(str::to_owned), ".{0,16}"],
        ),
        0..6,
    )) {
        check_counts(&pairs)?;
    }

    /// `GET /v1/coverage?…`: from, to, source and format checked as the counts parser checks
    /// them; every refusal is a 400 naming the parameter.
    #[test]
    fn fuzz_coverage_query_strings(raw in query_string(support::KEYS, support::VALUES)) {
        let pairs = query_pairs(Some(&raw));
        if let Err(error) = CoverageQuery::parse(&pairs) {
            prop_assert_eq!(error.status(), axum::http::StatusCode::BAD_REQUEST);
            prop_assert!(
                support::names_a_parameter(error.message(), &pairs, &[]),
                "{:?} names no parameter of {:?}",
                error.message(),
                pairs
            );
        }
    }
}
