//! Property tests (fuzzing) of what the reports read from outside: the `reports.toml` schedules
//! (`Schedule::parse_file`, then the runs and periods of each schedule accepted) and the
//! `--period`/`--kind` of `observatory report` (`Period::parse`, `Kind`). No panic; a refusal
//! names the entry, field or value at fault; an accepted period is exactly what was written.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use observatory_fuzzing::{config, mutated_text};
use proptest::prelude::*;

use crate::{Kind, Period, Schedule};

const SEED: &str = "[[report]]\nkind = \"monthly\"\ncron = \"0 6 5 * *\"\ntimezone = \"Europe/Paris\"\n\n[[report]]\nkind = \"annual\"\ncron = \"0 6 15 1 *\"\n";

const PIECES: &[&str] = &[
    "\n",
    "\"",
    "'",
    "[",
    "]",
    "[[report]]\n",
    "=",
    "#",
    "\\",
    "\\u0000",
    "\u{feff}",
    "\0",
    "kind = \"annual\"\n",
    "kind = \"weekly\"\n",
    "cron = \"",
    "timezone = \"",
    "Mars/Olympus",
    "America/Sao_Paulo",
    "Pacific/Kiritimati",
    "UTC",
    "*",
    "*/0",
    "*/61",
    "0",
    "59",
    "60",
    "31",
    "30 2",
    "29 2",
    "L",
    "W",
    "#5",
    "MON-FRI",
    "1-0",
    "1,2,3",
    " ",
    "?",
    "@yearly",
    "99999999999999999999",
    "-1",
    "9",
    "at = 1\n",
    "report = 3\n",
];

/// One `[[report]]` table from parts: cron fields of every kind, zones real and not.
fn built_toml() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        proptest::sample::select(
            &[
                "*", "0", "5", "59", "60", "*/15", "*/0", "1-5", "5-1", "L", "LW", "15W", "MON",
                "1#5", "?", "30", "31", "2", "12", "13"
            ][..]
        )
        .prop_map(str::to_owned),
        "[0-9*/,LW#?-]{1,4}",
    ];
    let cron = proptest::collection::vec(field, 4..8).prop_map(|f| f.join(" "));
    let zone = proptest::option::of(prop_oneof![
        proptest::sample::select(
            &[
                "UTC",
                "Europe/Paris",
                "America/Sao_Paulo",
                "Pacific/Kiritimati",
                "Australia/Lord_Howe",
                "Mars/Olympus",
                ""
            ][..]
        )
        .prop_map(str::to_owned),
        "[A-Za-z/_]{0,12}",
    ]);
    let kind = proptest::sample::select(&["monthly", "annual", "weekly", ""][..]);
    proptest::collection::vec((kind, cron, zone), 0..3).prop_map(|entries| {
        entries
            .iter()
            .map(|(kind, cron, zone)| {
                let zone = zone.as_ref().map_or(String::new(), |z| format!("timezone = {z:?}\n"));
                format!("[[report]]\nkind = {kind:?}\ncron = {cron:?}\n{zone}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// Moments to ask a schedule about, from 1970 to 2200.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..7_258_118_400).prop_map(|s| Utc.timestamp_opt(s, 0).unwrap())
}

fn check_schedules(text: &str, at: DateTime<Utc>) -> Result<(), TestCaseError> {
    match Schedule::parse_file(text) {
        Ok(schedules) => {
            for schedule in &schedules {
                if let Some(next) = schedule.next_after(at) {
                    prop_assert!(next > at, "{} after {}: {}", schedule.cron, at, next);
                    let period = schedule.period_of(next);
                    prop_assert_eq!(period.kind(), schedule.kind);
                    prop_assert_eq!(
                        Period::parse(schedule.kind, &period.code()).ok(),
                        Some(period)
                    );
                }
                if let Some(latest) = schedule.latest_at_or_before(at) {
                    prop_assert!(latest <= at, "{} before {}: {}", schedule.cron, at, latest);
                    let _ = schedule.period_of(latest);
                }
            }
        }
        Err(error) => {
            let message = error.to_string();
            prop_assert!(message.starts_with("reports config"), "{}", message);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_report_schedules_mutated(text in mutated_text(SEED, PIECES, 0..6, 1..6), at in instant()) {
        check_schedules(&text, at)?;
    }

    #[test]
    fn fuzz_report_schedules_built(text in built_toml(), at in instant()) {
        check_schedules(&text, at)?;
    }

    #[test]
    fn fuzz_report_schedules_any_text(text in ".{0,80}", at in instant()) {
        check_schedules(&text, at)?;
    }

    /// `--period` and the report paths' period: accepted exactly as written, or refused quoting
    /// what was written.
    #[test]
    fn fuzz_report_periods(
        text in prop_oneof![
            "[0-9+-]{4}(-[0-9+-]{1,3})?",
            "[+-]?[0-9]{1,6}",
            ".{0,10}",
        ],
        annual in any::<bool>(),
    ) {
        let kind = if annual { Kind::Annual } else { Kind::Monthly };
        match Period::parse(kind, &text) {
            Ok(period) => {
                prop_assert_eq!(period.code(), text.as_str());
                prop_assert_eq!(period.kind(), kind);
                let _ = (period.label(), period.previous(), period.months());
            }
            Err(error) => prop_assert!(error.to_string().contains(&format!("'{text}'")), "{}", error),
        }
        if let Ok(parsed) = Kind::from_str(&text) {
            prop_assert_eq!(parsed.name(), text.as_str());
        }
    }
}
