//! Property tests (fuzzing) of the survey endpoints' query strings: `estimates`
//! (`EstimatesQuery`), `reporting-rate` and `dark-figure` (`ItemQuery`), and the listings'
//! `min_sequence` and vintage (`listing_query`). No panic; a refusal names the parameter it is
//! about (or the required one left out); an accepted query holds a wave id and a level in (0, 1).

use observatory_fuzzing::config;
use observatory_model::survey::is_valid_wave_id;
use proptest::prelude::*;

use super::handlers::listing_query;
use super::request::{EstimatesQuery, ItemQuery, Stat};
use crate::fuzz::support::{KEYS, VALUES, names_a_parameter, query_string};
use crate::request::{RequestError, query_pairs};

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_survey_estimates_query_strings(raw in query_string(KEYS, VALUES)) {
        let pairs = query_pairs(Some(&raw));
        match EstimatesQuery::parse(&pairs) {
            Ok(q) => {
                prop_assert!(is_valid_wave_id(&q.wave));
                prop_assert!(q.level > 0.0 && q.level < 1.0);
                prop_assert!(!q.vars.is_empty());
                prop_assert!(q.vars.iter().all(|v| (q.stat == Stat::Ratio) == v.contains('/')));
            }
            Err(RequestError(message)) => {
                prop_assert!(
                    names_a_parameter(&message, &pairs, &["wave=", "stat=", "var="]),
                    "{:?} names no parameter of {:?}", message, pairs
                );
            }
        }
    }

    #[test]
    fn fuzz_survey_item_query_strings(raw in query_string(KEYS, VALUES), dark in any::<bool>()) {
        let pairs = query_pairs(Some(&raw));
        match ItemQuery::parse(&pairs, dark) {
            Ok(q) => {
                prop_assert!(is_valid_wave_id(&q.wave));
                prop_assert!(q.level > 0.0 && q.level < 1.0);
                prop_assert!(dark || (q.sources.is_empty() && q.unit.is_none()));
            }
            Err(RequestError(message)) => {
                prop_assert!(
                    names_a_parameter(&message, &pairs, &["wave="]),
                    "{:?} names no parameter of {:?}", message, pairs
                );
            }
        }
    }

    #[test]
    fn fuzz_survey_listing_query_strings(raw in query_string(KEYS, VALUES)) {
        if let Err(error) = listing_query(Some(&raw)) {
            let pairs = query_pairs(Some(&raw));
            prop_assert_eq!(error.status(), axum::http::StatusCode::BAD_REQUEST);
            prop_assert!(
                names_a_parameter(error.message(), &pairs, &[]),
                "{:?} names no parameter of {:?}", error.message(), pairs
            );
        }
    }
}
