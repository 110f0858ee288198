//! Property tests (fuzzing) of the SDMX data query: the `{key}` path segment (`parse_key`), the
//! query parameters (`raw_pairs`, `DataQuery::parse`: `c[...]`, `startPeriod`, `updatedAfter`,
//! `dimensionAtObservation`, …), the plan of counts requests a parsed query becomes, the
//! selection of observations (`firstNObservations`, `lastNObservations`, filters) and content
//! negotiation (`Accept`, `format=`). No panic; a refusal carries the SDMX status of its kind
//! (400 syntax, 413, 422 semantics, 406 format) and names the part of the query it is about.

use axum::http::StatusCode;
use observatory_fuzzing::config;
use proptest::prelude::*;

use super::dataflow::{Dataflow, Dim};
use super::format::{Kind, Labels, negotiate};
use super::plan::{MAX_PARTS, Observation, Value, plan, select};
use super::query::{DataQuery, months, parse_key, raw_pairs};
use crate::fuzz::support::{names_a_parameter, raw_encode};

const PARAMETERS: &[&str] = &[
    "c[TIME_PERIOD]",
    "c[OBS_VALUE]",
    "c[CYBER]",
    "c[REF_AREA]",
    "c[ICCS]",
    "c[SOURCE]",
    "c[OBS_STATUS]",
    "c[DISCLOSURE]",
    "c[COLOUR]",
    "c%5BCYBER%5D",
    "c[",
    "c[]",
    "startPeriod",
    "endPeriod",
    "updatedAfter",
    "updateAfter",
    "asOf",
    "includeHistory",
    "firstNObservations",
    "lastNObservations",
    "dimensionAtObservation",
    "attributes",
    "measures",
    "format",
    "labels",
    "release",
    "colour",
    "",
];

const VALUES: &[&str] = &[
    "",
    "2024",
    "2024-03",
    "2024-M03",
    "2024-A1",
    "2024-13",
    "2024-+3",
    "2024-M+3",
    "ge:2024",
    "le:2024-12",
    "ge:2024-01+le:2024-12",
    "ge:2024,le:2020",
    "eq:2024-03",
    "gt:10",
    "lt:1e3",
    "ne:_T",
    "co:09",
    "nc:x",
    "sw:0",
    "ew:1",
    "xx:1",
    "ge:",
    ":",
    "true",
    "false",
    "_T",
    "A",
    "FR",
    "R11",
    "75",
    "0903",
    "offence",
    "P",
    "EXACT",
    "CKM",
    "2025-11-01T00:00:00Z",
    "2025-11-01T00:00:00+01:00",
    "2025-11-01T00:00:00",
    "2025-11-01",
    "+10000-01-01",
    "9999-12-31T23:59:59-23:59",
    "-262143-01-01T00:00:00Z",
    "yesterday",
    "0",
    "1",
    "18446744073709551615",
    "18446744073709551616",
    "TIME_PERIOD",
    "AllDimensions",
    "ICCS",
    "dsd",
    "none",
    "OBS_STATUS,DISCLOSURE",
    "OBS_STATUS,COLOUR",
    "all",
    "OBS_VALUE",
    "id",
    "name",
    "both",
    "xml",
    "csv",
    "json",
    "r1",
    "r0",
];

/// Keys as the path carries them: the v2 and v1 forms, near misses and anything.
fn key() -> impl Strategy<Value = String> {
    let code = prop_oneof![
        proptest::sample::select(
            &[
                "",
                "*",
                "A",
                "M",
                "Q",
                "FR",
                "R11",
                "R84",
                "75",
                "2A",
                "XX",
                "_T",
                "09",
                "0903",
                "090321",
                "true",
                "false",
                "individual",
                "email",
                "pn",
                "gn",
                "offence",
                "offence_PER_100K",
                "A+M",
                "R11+75",
                "F R",
                "é",
                "a.b",
            ][..]
        )
        .prop_map(str::to_owned),
        "[A-Za-z0-9_@$+*-]{0,6}",
    ];
    prop_oneof![
        8 => proptest::collection::vec(proptest::collection::vec(code, 0..10), 1..4).prop_map(
            |keys| keys.iter().map(|k| k.join(".")).collect::<Vec<_>>().join(",")
        ),
        1 => proptest::sample::select(&["all", "*", ""][..]).prop_map(str::to_owned),
        1 => ".{0,24}",
    ]
}

fn query_string() -> impl Strategy<Value = String> {
    let part = |pool: &'static [&'static str]| {
        prop_oneof![
            4 => proptest::sample::select(pool).prop_map(str::to_owned),
            1 => ".{0,10}",
            1 => proptest::collection::vec(proptest::sample::select(pool), 1..3)
                .prop_map(|p| p.join(",")),
        ]
    };
    let pair = (part(PARAMETERS), part(VALUES), 0u8..4).prop_map(|(k, v, style)| match style {
        0 => k,
        1 | 2 => format!("{k}={v}"),
        _ => format!("{}={}", raw_encode(&k), raw_encode(&v)),
    });
    prop_oneof![
        6 => proptest::collection::vec(pair, 0..6).prop_map(|p| p.join("&")),
        1 => ".{0,40}",
    ]
}

fn flow() -> Dataflow {
    Dataflow::new("OBSERVATORY", &["pn".into(), "gn".into()])
}

/// A month a counts request compares as text.
fn is_month(m: &str) -> bool {
    m.len() == 7
        && m.as_bytes()[4] == b'-'
        && m.bytes().enumerate().all(|(i, b)| i == 4 || b.is_ascii_digit())
        && matches!(m[5..].parse::<u8>(), Ok(1..=12))
}

/// Observations of a few series and periods, some periods not periods at all.
fn observations() -> impl Strategy<Value = Vec<Observation>> {
    let period = prop_oneof![
        proptest::sample::select(
            &["2024", "2024-01", "2024-12", "2025-06", "2024-13", "", "x"][..]
        )
        .prop_map(str::to_owned),
        ".{0,8}",
    ];
    let observation = (0usize..3, period, any::<i64>(), any::<bool>(), any::<bool>()).prop_map(
        |(series, period, count, provisional, exact)| Observation {
            key: vec![["A", "M", "Q"][series].to_owned(); Dim::ALL.len()],
            period,
            value: Value::Count(count),
            status: if provisional { "P" } else { "A" },
            disclosure: if exact { "EXACT" } else { "CKM" },
        },
    );
    proptest::collection::vec(observation, 0..12)
}

proptest! {
    #![proptest_config(config(256))]

    /// The key alone: a 400 for a code that is not an SDMX id, a 422 for too many dimensions,
    /// each quoting the key; else one selection per alternative, of every dimension.
    #[test]
    fn fuzz_sdmx_keys(key in key()) {
        match parse_key(&key) {
            Ok(keys) => {
                prop_assert!(!keys.is_empty());
                for k in &keys {
                    prop_assert_eq!(k.len(), Dim::ALL.len());
                    for codes in k.iter().flatten() {
                        prop_assert!(codes.iter().all(|c| !c.is_empty()), "{:?}", k);
                    }
                }
            }
            Err(error) => {
                prop_assert!(matches!(error.status().as_u16(), 400 | 422), "{:?}", error);
                prop_assert!(error.message().starts_with("key '"), "{}", error.message());
            }
        }
    }

    /// A whole data query: parsed, planned into counts requests, its observations selected.
    #[test]
    fn fuzz_sdmx_data_queries(key in key(), raw in query_string(), obs in observations()) {
        let pairs = raw_pairs(Some(&raw));
        let query = match DataQuery::parse(&key, &pairs) {
            Ok(query) => query,
            Err(error) => {
                prop_assert!(matches!(error.status().as_u16(), 400 | 422), "{:?}", error);
                prop_assert!(
                    error.message().starts_with("key '")
                        || names_a_parameter(error.message(), &pairs, &["updatedAfter"]),
                    "{:?} names no parameter of {:?}",
                    error.message(),
                    pairs
                );
                return Ok(());
            }
        };
        match plan(&query, &flow()) {
            Ok(parts) => {
                prop_assert!(parts.len() <= MAX_PARTS);
                for part in &parts {
                    for bound in [&part.request.from, &part.request.to].into_iter().flatten() {
                        prop_assert!(is_month(bound), "{:?} planned as a month from {:?}", bound, raw);
                    }
                }
            }
            Err(error) => {
                prop_assert!(
                    matches!(error.status(), StatusCode::UNPROCESSABLE_ENTITY | StatusCode::PAYLOAD_TOO_LARGE),
                    "{:?}", error
                );
                prop_assert!(!error.message().trim().is_empty());
            }
        }
        let n = obs.len();
        let kept = select(&query, obs);
        prop_assert!(kept.len() <= n);
    }

    /// `firstNObservations` and `lastNObservations` at any size, up to `usize::MAX`: each
    /// series keeps at most that many of its observations.
    #[test]
    fn fuzz_sdmx_first_and_last_n(
        first in proptest::option::of(prop_oneof![1usize..5, Just(usize::MAX), any::<usize>()]),
        last in proptest::option::of(prop_oneof![1usize..5, Just(usize::MAX), any::<usize>()]),
        obs in observations(),
    ) {
        let mut raw = Vec::new();
        if let Some(n) = first.filter(|&n| n > 0) {
            raw.push(format!("firstNObservations={n}"));
        }
        if let Some(n) = last.filter(|&n| n > 0) {
            raw.push(format!("lastNObservations={n}"));
        }
        let query = DataQuery::parse("all", &raw_pairs(Some(&raw.join("&")))).unwrap();
        let n = obs.len();
        let kept = select(&query, obs);
        prop_assert!(kept.len() <= n);
        if let (Some(f), Some(l)) = (query.first_n, query.last_n) {
            for series in ["A", "M", "Q"] {
                let count = kept.iter().filter(|o| o.key[0] == series).count();
                prop_assert!(count <= f.saturating_add(l));
            }
        }
    }

    /// Periods as SDMX writes them: a period is read as its first and last month, in order.
    #[test]
    fn fuzz_sdmx_periods(period in prop_oneof![
        "[0-9+-]{4}(-(M|A)?[0-9+-]{1,2})?",
        ".{0,10}",
    ]) {
        if let Some((first, last)) = months(&period) {
            prop_assert!(is_month(&first) && is_month(&last), "{:?} from {:?}", (first, last), period);
            prop_assert!(first <= last);
        }
    }

    /// Content negotiation: any `Accept` and `format=`; a format served, or a 406 naming what
    /// was asked for and what is served.
    #[test]
    fn fuzz_sdmx_negotiation(
        accept in proptest::option::of(prop_oneof![
            "((application/vnd\\.sdmx\\.(data|structure)\\+(xml|csv|json)|text/csv|\\*/\\*|application/\\*|image/png)(; ?(version=[0-9.]{0,5}|q=[0-9.]{0,4}|labels=[a-z]{0,5}))*)(, ?(text/csv|application/json)(;q=0?\\.?[0-9]))?",
            ".{0,40}",
        ]),
        format in proptest::option::of(prop_oneof![
            proptest::sample::select(&["xml", "json", "csv", "sdmx-ml", "sdmx-json", "sdmx-csv", "pdf", ""][..]).prop_map(str::to_owned),
            ".{0,6}",
        ]),
        labels in proptest::option::of(proptest::sample::select(&[Labels::Id, Labels::Name, Labels::Both][..])),
        structure in any::<bool>(),
    ) {
        let kind = if structure { Kind::Structure } else { Kind::Data };
        if let Err(error) = negotiate(kind, accept.as_deref(), format.as_deref(), labels) {
            prop_assert_eq!(error.status(), StatusCode::NOT_ACCEPTABLE);
            let message = error.message();
            prop_assert!(
                message.contains("served:") || message.starts_with("labels="),
                "{}", message
            );
        }
    }
}
