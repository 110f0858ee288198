//! Report schedules: the `[[report]]` tables of `reports.toml`, each a kind, a cron
//! expression and a time zone; which period a run at a given time reports on; and when the
//! next and the latest runs fall. Pure: the scheduler that sleeps and writes lives in the cli.
//!
//! ```toml
//! [[report]]
//! kind = "monthly"
//! cron = "0 6 5 * *"          # minute hour day-of-month month day-of-week
//! timezone = "Europe/Paris"   # default UTC
//! ```
//!
//! A run reports on the period before the one it falls in: a monthly run on 5 November
//! publishes October, an annual run in January publishes the year before.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::Deserialize;

use crate::ReportError;
use crate::period::{Kind, Month, Period};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    report: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    kind: String,
    cron: String,
    timezone: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub kind: Kind,
    pub cron: String,
    pub timezone: Tz,
    parsed: Cron,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        (self.kind, &self.cron, self.timezone) == (other.kind, &other.cron, other.timezone)
    }
}

impl Schedule {
    pub fn new(kind: Kind, cron: &str, timezone: Tz) -> Result<Schedule, ReportError> {
        // Five fields (or a nickname such as @monthly): croner also reads seconds and years,
        // and a run in year 2 has no report period (found by fuzzing: the scheduler panicked).
        let fields = cron.split_whitespace().count();
        if fields != 5 && !cron.trim_start().starts_with('@') {
            return Err(ReportError::Parameter(format!(
                "cron '{cron}' for the {kind} report has {fields} fields; use five fields, minute hour \
                 day-of-month month day-of-week (e.g. \"0 6 5 * *\": the 5th of every month at 06:00)"
            )));
        }
        let parsed = Cron::from_str(cron).map_err(|e| {
            ReportError::Parameter(format!(
                "cron '{cron}' for the {kind} report: {e}; use five fields, minute hour day-of-month month \
                 day-of-week (e.g. \"0 6 5 * *\": the 5th of every month at 06:00)"
            ))
        })?;
        Ok(Schedule { kind, cron: cron.to_owned(), timezone, parsed })
    }

    /// Parses a `reports.toml`; every error names the entry and the field.
    pub fn parse_file(text: &str) -> Result<Vec<Schedule>, ReportError> {
        let file: File = toml::from_str(text)
            .map_err(|e| ReportError::Parameter(format!("reports config: {e}")))?;
        file.report
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                let at = format!("reports config, [[report]] number {}", i + 1);
                let kind: Kind = entry.kind.parse().map_err(|e| ReportError::Parameter(format!("{at}: {e}")))?;
                let timezone = match entry.timezone.as_deref() {
                    None => Tz::UTC,
                    Some(name) => name.parse().map_err(|_| {
                        ReportError::Parameter(format!(
                            "{at}: unknown time zone '{name}'; use an IANA name such as Europe/Paris"
                        ))
                    })?,
                };
                Schedule::new(kind, &entry.cron, timezone)
                    .map_err(|e| ReportError::Parameter(format!("{at}: {e}")))
            })
            .collect()
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        self.parsed.find_next_occurrence(&local, false).ok().map(|t| t.with_timezone(&Utc))
    }

    /// The latest run at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.timezone);
        self.parsed.find_previous_occurrence(&local, true).ok().map(|t| t.with_timezone(&Utc))
    }

    /// The period a run at `run` reports on: the month or year before the run's, in the
    /// schedule's time zone.
    pub fn period_of(&self, run: DateTime<Utc>) -> Period {
        let local = run.with_timezone(&self.timezone);
        match self.kind {
            Kind::Monthly => Period::Month(
                Month::new(local.year(), local.month()).expect("a calendar month").plus(-1),
            ),
            Kind::Annual => Period::Year(local.year() - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_monthly_schedule_in_paris_reports_the_month_before() {
        let schedules = Schedule::parse_file(
            "[[report]]\nkind = \"monthly\"\ncron = \"0 6 5 * *\"\ntimezone = \"Europe/Paris\"\n\n\
             [[report]]\nkind = \"annual\"\ncron = \"0 6 15 1 *\"\n",
        )
        .unwrap();
        let monthly = &schedules[0];
        // 5 November 2025 06:00 in Paris is 05:00 UTC (winter time).
        let now = Utc.with_ymd_and_hms(2025, 11, 3, 12, 0, 0).unwrap();
        let next = monthly.next_after(now).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2025, 11, 5, 5, 0, 0).unwrap());
        assert_eq!(monthly.period_of(next).code(), "2025-10");
        // Summer time: 5 July 06:00 Paris is 04:00 UTC.
        let july = monthly.next_after(Utc.with_ymd_and_hms(2025, 7, 1, 0, 0, 0).unwrap()).unwrap();
        assert_eq!(july, Utc.with_ymd_and_hms(2025, 7, 5, 4, 0, 0).unwrap());
        assert_eq!(monthly.latest_at_or_before(next).unwrap(), next, "inclusive");
        assert_eq!(
            monthly.latest_at_or_before(now).unwrap(),
            Utc.with_ymd_and_hms(2025, 10, 5, 4, 0, 0).unwrap()
        );
        // January's run reports December of the year before.
        assert_eq!(
            monthly.period_of(Utc.with_ymd_and_hms(2026, 1, 5, 5, 0, 0).unwrap()).code(),
            "2025-12"
        );
        let annual = &schedules[1];
        assert_eq!(annual.timezone, Tz::UTC);
        assert_eq!(annual.period_of(annual.next_after(now).unwrap()).code(), "2025");
    }

    #[test]
    fn errors_name_the_entry_and_what_to_write() {
        let err = |text: &str| Schedule::parse_file(text).unwrap_err().to_string();
        assert!(
            err("[[report]]\nkind = \"weekly\"\ncron = \"0 6 5 * *\"\n")
                .contains("number 1: unknown report kind 'weekly'")
        );
        assert!(
            err("[[report]]\nkind = \"monthly\"\ncron = \"61 6 5 * *\"\n")
                .contains("cron '61 6 5 * *'")
        );
        assert!(err("[[report]]\nkind = \"monthly\"\ncron = \"0 6 5 * *\"\ntimezone = \"Mars/Olympus\"\n").contains("unknown time zone 'Mars/Olympus'"));
        assert!(
            err("[[report]]\nkind = \"monthly\"\ncron = \"0 6 5 * *\"\nat = 1\n")
                .contains("unknown field")
        );
        assert!(Schedule::parse_file("").unwrap().is_empty());
        // Found by fuzzing: a seven-field cron (seconds and year 2) made the catch-up panic.
        let seven = err("[[report]]\nkind = \"monthly\"\ncron = \"* * MON L */15 */15 2\"\n");
        assert!(seven.contains("has 7 fields; use five fields"), "{seven}");
    }
}
