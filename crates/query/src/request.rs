//! Parsing and checking of `GET /v1/incidents/counts` parameters. Pure: a request either
//! becomes a [`CountsRequest`] or a message that says exactly what is wrong.

use std::collections::BTreeMap;

use observatory_model::{Channel, VictimType, is_departement, is_valid_source_id};
use observatory_reference::{Geography, Iccs};

use crate::vintage::Vintage;

/// A dimension of the count grain, usable in `by=` and as a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    Year,
    Month,
    Departement,
    Iccs,
    Cyber,
    VictimType,
    Channel,
    Source,
    IccsSection,
    IccsDivision,
    IccsGroup,
    Region,
    Unit,
}

impl Dimension {
    pub const ALL: [Dimension; 13] = [
        Dimension::Year,
        Dimension::Month,
        Dimension::Departement,
        Dimension::Iccs,
        Dimension::Cyber,
        Dimension::VictimType,
        Dimension::Channel,
        Dimension::Source,
        Dimension::IccsSection,
        Dimension::IccsDivision,
        Dimension::IccsGroup,
        Dimension::Region,
        Dimension::Unit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Year => "year",
            Dimension::Month => "month",
            Dimension::Departement => "departement",
            Dimension::Iccs => "iccs",
            Dimension::Cyber => "cyber",
            Dimension::VictimType => "victim_type",
            Dimension::Channel => "channel",
            Dimension::Source => "source",
            Dimension::IccsSection => "iccs_section",
            Dimension::IccsDivision => "iccs_division",
            Dimension::IccsGroup => "iccs_group",
            Dimension::Region => "region",
            Dimension::Unit => "unit",
        }
    }

    /// The column of the stored counts table this dimension reads. The API name
    /// ([`Dimension::name`]) is the client's; this one is the projector's, so a rename on
    /// either side stays on that side.
    pub fn column(self) -> &'static str {
        use observatory_store::layout::counts;
        match self {
            Dimension::Year => counts::YEAR,
            Dimension::Month => counts::MONTH,
            Dimension::Departement => counts::DEPARTEMENT,
            Dimension::Iccs => counts::ICCS,
            Dimension::Cyber => counts::CYBER,
            Dimension::VictimType => counts::VICTIM_TYPE,
            Dimension::Channel => counts::CHANNEL,
            Dimension::Source => counts::SOURCE,
            Dimension::IccsSection => counts::ICCS_SECTION,
            Dimension::IccsDivision => counts::ICCS_DIVISION,
            Dimension::IccsGroup => counts::ICCS_GROUP,
            Dimension::Region => counts::REGION,
            Dimension::Unit => counts::UNIT,
        }
    }

    pub fn is_geography(self) -> bool {
        matches!(self, Dimension::Departement | Dimension::Region)
    }

    pub fn parse(name: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.name() == name)
    }

    fn names() -> String {
        Dimension::ALL.map(Dimension::name).join(", ")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Json,
    Csv,
    /// JSON-stat 2.0 (counts only).
    JsonStat,
    /// An Arrow IPC stream.
    Arrow,
    Parquet,
}

/// `rate=`: which rate to add to rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// Count per 100 000 inhabitants (INSEE legal population).
    Per100k,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CountsRequest {
    pub by: Vec<Dimension>,
    /// Inclusive month range as "YYYY-MM".
    pub from: Option<String>,
    pub to: Option<String>,
    /// Allowed values per dimension (an empty map filters nothing). ICCS values match
    /// their whole subtree.
    pub filters: BTreeMap<Dimension, Vec<String>>,
    pub format: OutputFormat,
    pub min_sequence: Option<u64>,
    pub rate: Option<Rate>,
    /// Which committed state to answer from (`release`, `as_of`, `as_of_time`).
    pub vintage: Vintage,
    /// `history=releases`: every distinct published value of each row across releases.
    pub history: bool,
}

impl Default for CountsRequest {
    fn default() -> Self {
        CountsRequest {
            by: Vec::new(),
            from: None,
            to: None,
            filters: BTreeMap::new(),
            format: OutputFormat::Json,
            min_sequence: None,
            rate: None,
            vintage: Vintage::Current,
            history: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

/// Query pairs in order, repeats kept, so the parsers can refuse a repeated parameter.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|raw| url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn bad<T>(message: String) -> Result<T, RequestError> {
    Err(RequestError(message))
}

/// "2024-03" stays; "2024" becomes its first (`from`) or last (`to`) month.
fn month_bound(name: &str, value: &str, end: bool) -> Result<String, RequestError> {
    let valid_year = |y: &str| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit());
    // Two ASCII digits: `parse` alone takes "+1", and months are compared as text.
    let valid_month = |m: &str| {
        m.len() == 2
            && m.bytes().all(|b| b.is_ascii_digit())
            && matches!(m.parse::<u8>(), Ok(1..=12))
    };
    match value.split_once('-') {
        None if valid_year(value) => Ok(format!("{value}-{}", if end { "12" } else { "01" })),
        Some((y, m)) if valid_year(y) && valid_month(m) => Ok(value.to_owned()),
        _ => bad(format!(
            "{name}='{value}' is not a month; use YYYY-MM (e.g. 2024-03) or a year YYYY"
        )),
    }
}

fn check_value(dimension: Dimension, value: &str) -> Result<(), RequestError> {
    let ok = match dimension {
        Dimension::Year => value.len() == 4 && value.bytes().all(|b| b.is_ascii_digit()),
        Dimension::Month => month_bound("month", value, false).is_ok() && value.len() == 7,
        Dimension::Departement => is_departement(value),
        Dimension::Iccs => Iccs::v1_0().contains(value),
        Dimension::Cyber => value == "true" || value == "false",
        Dimension::VictimType => VictimType::parse(value).is_some(),
        Dimension::Channel => Channel::parse(value).is_some(),
        Dimension::Source => is_valid_source_id(value),
        Dimension::IccsSection => value.len() == 2 && Iccs::v1_0().contains(value),
        Dimension::IccsDivision => value.len() == 4 && Iccs::v1_0().contains(value),
        Dimension::IccsGroup => value.len() == 5 && Iccs::v1_0().contains(value),
        Dimension::Region => Geography::france().region(value).is_some(),
        Dimension::Unit => matches!(value, "offence" | "victim" | "report"),
    };
    if ok {
        return Ok(());
    }
    let expected = match dimension {
        Dimension::Year => "a year YYYY".to_owned(),
        Dimension::Month => "a month YYYY-MM".to_owned(),
        Dimension::Departement => "an INSEE département code (01..95, 2A, 2B, 971..976)".to_owned(),
        Dimension::Iccs => {
            "a code of ICCS 1.0 (matches its subtree; GET /v1/reference/iccs lists them)".to_owned()
        }
        Dimension::Cyber => "true or false".to_owned(),
        Dimension::VictimType => format!("one of {}", VictimType::allowed()),
        Dimension::Channel => format!("one of {}", Channel::allowed()),
        Dimension::Source => "an agency id".to_owned(),
        Dimension::IccsSection => "an ICCS 1.0 section (2 digits, e.g. 09)".to_owned(),
        Dimension::IccsDivision => "an ICCS 1.0 division (4 digits, e.g. 0903)".to_owned(),
        Dimension::IccsGroup => "an ICCS 1.0 group (5 digits, e.g. 09031)".to_owned(),
        Dimension::Region => "an INSEE région code (e.g. 11 for Île-de-France)".to_owned(),
        Dimension::Unit => "offence, victim or report".to_owned(),
    };
    bad(format!("{}='{value}' is not valid; expected {expected}", dimension.name()))
}

impl CountsRequest {
    pub fn parse(params: &[(String, String)]) -> Result<CountsRequest, RequestError> {
        let mut request = CountsRequest::default();
        let mut seen = std::collections::HashSet::new();
        for (key, value) in params {
            if !seen.insert(key.as_str()) {
                return bad(format!(
                    "parameter '{key}' is given twice; give it once (a list is one comma-separated value)"
                ));
            }
            if request.vintage.take(key, value)? {
                continue;
            }
            match key.as_str() {
                "history" => match value.as_str() {
                    "releases" => request.history = true,
                    other => {
                        return bad(format!(
                            "history='{other}' is not supported; use history=releases"
                        ));
                    }
                },
                "by" => {
                    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        let Some(dimension) = Dimension::parse(name) else {
                            return bad(format!(
                                "unknown dimension '{name}' in by=; available: {}",
                                Dimension::names()
                            ));
                        };
                        if request.by.contains(&dimension) {
                            return bad(format!("dimension '{name}' appears twice in by="));
                        }
                        request.by.push(dimension);
                    }
                }
                "from" => request.from = Some(month_bound("from", value, false)?),
                "to" => request.to = Some(month_bound("to", value, true)?),
                "format" => {
                    request.format = match value.as_str() {
                        "json" => OutputFormat::Json,
                        "csv" => OutputFormat::Csv,
                        "jsonstat" => OutputFormat::JsonStat,
                        "arrow" => OutputFormat::Arrow,
                        "parquet" => OutputFormat::Parquet,
                        other => {
                            return bad(format!(
                                "format='{other}' is not supported; use json, csv, jsonstat, arrow or parquet"
                            ));
                        }
                    }
                }
                "rate" => {
                    request.rate = match value.as_str() {
                        "per100k" => Some(Rate::Per100k),
                        other => {
                            return bad(format!(
                                "rate='{other}' is not supported; use rate=per100k"
                            ));
                        }
                    }
                }
                "min_sequence" => request.min_sequence = Some(value.parse().map_err(|_| {
                    RequestError(format!(
                        "min_sequence='{value}' is not a stream sequence (a non-negative integer)"
                    ))
                })?),
                name => {
                    let Some(dimension) = Dimension::parse(name) else {
                        return bad(format!(
                            "unknown parameter '{name}'; use by, from, to, format, rate, min_sequence, release, as_of, as_of_time, history or a dimension filter ({})",
                            Dimension::names()
                        ));
                    };
                    // A filter is a set: `75,75` is Paris once (its population too).
                    let mut values: Vec<String> = Vec::new();
                    for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                        if !values.iter().any(|seen| seen == v) {
                            values.push(v.to_owned());
                        }
                    }
                    if values.is_empty() {
                        return bad(format!(
                            "{name}= is empty; give one or more comma-separated values"
                        ));
                    }
                    for v in &values {
                        check_value(dimension, v)?;
                    }
                    request.filters.insert(dimension, values);
                }
            }
        }
        if let (Some(from), Some(to)) = (&request.from, &request.to)
            && from > to
        {
            return bad(format!("from={from} is after to={to}"));
        }
        request.vintage.check_min_sequence(request.min_sequence)?;
        if request.history {
            if request.format != OutputFormat::Json {
                let name = match request.format {
                    OutputFormat::Csv => "CSV",
                    OutputFormat::JsonStat => "JSON-stat",
                    OutputFormat::Arrow => "an Arrow stream",
                    _ => "Parquet",
                };
                return bad(format!(
                    "history=releases answers one list of values per row, which {name} cannot carry; use format=json"
                ));
            }
            if request.vintage != Vintage::Current || request.min_sequence.is_some() {
                return bad("history=releases spans every release; drop release, as_of, as_of_time and min_sequence"
                    .to_owned());
            }
            if request.rate.is_some() {
                return bad(
                    "history=releases carries counts; ask rates of one release with release=<id>"
                        .to_owned(),
                );
            }
        }
        Ok(request)
    }

    /// Whether the grouping and filters leave exactly one counting unit per row.
    pub fn unit_is_fixed(&self) -> bool {
        self.by.contains(&Dimension::Unit)
            || self.filters.get(&Dimension::Unit).is_some_and(|units| units.len() == 1)
    }

    /// Years the request can touch, to skip whole year partitions.
    pub fn year_range(&self) -> (Option<i32>, Option<i32>) {
        let year = |m: &Option<String>| m.as_ref().and_then(|m| m[..4].parse().ok());
        (year(&self.from), year(&self.to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_in_order() {
        let pairs = query_pairs(Some("by=month%2Cdepartement&cyber=true&x=a+b&by=year"));
        assert_eq!(pairs[0], ("by".into(), "month,departement".into()));
        assert_eq!(pairs[2], ("x".into(), "a b".into()));
        assert_eq!(pairs.len(), 4);
    }

    fn parse(query: &[(&str, &str)]) -> Result<CountsRequest, RequestError> {
        CountsRequest::parse(
            &query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn the_issue_example_parses() {
        let r = parse(&[
            ("by", "month,departement,iccs"),
            ("from", "2024-01"),
            ("to", "2024-12"),
            ("cyber", "true"),
            ("departement", "75,92"),
            ("format", "csv"),
        ])
        .unwrap();
        assert_eq!(r.by, vec![Dimension::Month, Dimension::Departement, Dimension::Iccs]);
        assert_eq!(r.filters[&Dimension::Departement], vec!["75", "92"]);
        assert_eq!(r.format, OutputFormat::Csv);
        assert_eq!(r.year_range(), (Some(2024), Some(2024)));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("by", "colour")], "unknown dimension 'colour'"),
            (&[("from", "2024-13")], "from='2024-13' is not a month"),
            // A sign passed u8's parse, and months are compared as text.
            (&[("to", "2024-+1")], "to='2024-+1' is not a month"),
            (&[("month", "2024-+1")], "month='2024-+1' is not valid"),
            (&[("from", "2024-05"), ("to", "2024-01")], "is after"),
            (&[("format", "xml")], "format='xml'"),
            (&[("departement", "20")], "departement='20'"),
            (&[("cyber", "yes")], "true or false"),
            (&[("min_sequence", "-1")], "min_sequence"),
            (&[("colour", "red")], "unknown parameter 'colour'"),
        ];
        for (query, expected) in cases {
            let error = parse(query).unwrap_err().0;
            assert!(error.contains(expected), "{query:?}: {error}");
        }
    }

    #[test]
    fn a_filter_is_a_set() {
        let r = parse(&[("departement", "75,75, 92,75"), ("region", "11,11")]).unwrap();
        assert_eq!(r.filters[&Dimension::Departement], vec!["75", "92"]);
        assert_eq!(r.filters[&Dimension::Region], vec!["11"]);
    }

    #[test]
    fn codes_that_cannot_occur_are_refused() {
        for (query, expected) in [
            (("iccs", "0999"), "iccs='0999' is not valid"),
            (("iccs", "0903,0999"), "iccs='0999'"),
            (("iccs_section", "99"), "iccs_section='99'"),
            (("iccs_division", "0999"), "iccs_division='0999'"),
        ] {
            let error = parse(&[query]).unwrap_err().0;
            assert!(error.contains(expected), "{query:?}: {error}");
        }
        assert!(parse(&[("iccs", "0903")]).is_ok());
        assert!(parse(&[("iccs_division", "0903")]).is_ok());
    }

    #[test]
    fn a_year_is_a_month_range() {
        let r = parse(&[("from", "2023"), ("to", "2024")]).unwrap();
        assert_eq!((r.from.as_deref(), r.to.as_deref()), (Some("2023-01"), Some("2024-12")));
    }
}
