//! What a report covers: its kind and its period, and the month arithmetic of its windows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ReportError;

/// The two scheduled publications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Monthly,
    Annual,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Monthly, Kind::Annual];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Monthly => "monthly",
            Kind::Annual => "annual",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = ReportError;

    fn from_str(s: &str) -> Result<Kind, ReportError> {
        Kind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            ReportError::Parameter(format!("unknown report kind '{s}'; use monthly or annual"))
        })
    }
}

/// A calendar month, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    /// 1..=12
    pub month: u32,
}

impl Month {
    pub fn new(year: i32, month: u32) -> Option<Month> {
        ((1..=12).contains(&month) && (1000..=9999).contains(&year))
            .then_some(Month { year, month })
    }

    /// The month `n` months later (earlier when negative).
    pub fn plus(self, n: i32) -> Month {
        let index = self.year * 12 + self.month as i32 - 1 + n;
        Month { year: index.div_euclid(12), month: index.rem_euclid(12) as u32 + 1 }
    }

    /// `YYYY-MM`, as the counts API writes months.
    pub fn code(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }

    /// "October 2025".
    pub fn label(self) -> String {
        const NAMES: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        format!("{} {}", NAMES[self.month as usize - 1], self.year)
    }

    /// "Oct 2025", for axes.
    pub fn short_label(self) -> String {
        format!("{} {}", &self.label()[..3], self.year)
    }

    pub fn parse(s: &str) -> Option<Month> {
        let (y, m) = s.split_once('-')?;
        // ASCII digits only: `parse` alone takes a sign ("2025-+1").
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        Month::new(y.parse().ok()?, m.parse().ok()?)
    }
}

/// The period a report covers: a month for a monthly report, a year for an annual one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    Month(Month),
    Year(i32),
}

impl Period {
    /// Parses `--period` for a kind: `2025-10` for monthly, `2025` for annual.
    pub fn parse(kind: Kind, s: &str) -> Result<Period, ReportError> {
        match kind {
            Kind::Monthly => Month::parse(s).map(Period::Month).ok_or_else(|| {
                ReportError::Parameter(format!(
                    "period '{s}' is not a month; a monthly report takes --period YYYY-MM (e.g. 2025-10)"
                ))
            }),
            Kind::Annual => s
                .parse::<i32>()
                .ok()
                .filter(|y| s.len() == 4 && (1000..=9999).contains(y))
                .map(Period::Year)
                .ok_or_else(|| {
                    ReportError::Parameter(format!(
                        "period '{s}' is not a year; an annual report takes --period YYYY (e.g. 2025)"
                    ))
                }),
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Period::Month(_) => Kind::Monthly,
            Period::Year(_) => Kind::Annual,
        }
    }

    /// The period as it appears in paths and parameters: `2025-10` or `2025`.
    pub fn code(self) -> String {
        match self {
            Period::Month(m) => m.code(),
            Period::Year(y) => format!("{y:04}"),
        }
    }

    pub fn label(self) -> String {
        match self {
            Period::Month(m) => m.label(),
            Period::Year(y) => y.to_string(),
        }
    }

    /// The first and last month the period spans.
    pub fn months(self) -> (Month, Month) {
        match self {
            Period::Month(m) => (m, m),
            Period::Year(y) => (Month { year: y, month: 1 }, Month { year: y, month: 12 }),
        }
    }

    /// The period before this one (the previous month or year).
    pub fn previous(self) -> Period {
        match self {
            Period::Month(m) => Period::Month(m.plus(-1)),
            Period::Year(y) => Period::Year(y - 1),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_wrap_across_years_both_ways() {
        let oct = Month::new(2025, 10).unwrap();
        assert_eq!(oct.plus(3).code(), "2026-01");
        assert_eq!(oct.plus(-24).code(), "2023-10");
        assert_eq!(oct.plus(-10).code(), "2024-12");
        assert_eq!(Month::new(2025, 1).unwrap().plus(-1).code(), "2024-12");
        assert_eq!(oct.label(), "October 2025");
        assert_eq!(oct.short_label(), "Oct 2025");
    }

    #[test]
    fn periods_parse_by_kind_and_say_what_is_wrong() {
        assert_eq!(Period::parse(Kind::Monthly, "2025-10").unwrap().code(), "2025-10");
        assert_eq!(Period::parse(Kind::Annual, "2025").unwrap().code(), "2025");
        for (kind, bad) in [
            (Kind::Monthly, "2025"),
            (Kind::Monthly, "2025-13"),
            (Kind::Monthly, "2025-1"),
            // Found by fuzzing: a sign passed the parse, so "2025-+1" published 2025-01.
            (Kind::Monthly, "2025-+1"),
            (Kind::Monthly, ""),
            (Kind::Annual, "2025-10"),
            (Kind::Annual, "25"),
            (Kind::Annual, "+2025"),
        ] {
            let err = Period::parse(kind, bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
        assert!("weekly".parse::<Kind>().unwrap_err().to_string().contains("monthly or annual"));
    }
}
