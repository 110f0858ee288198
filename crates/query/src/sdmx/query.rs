//! Parsing of an SDMX REST v2 data query: the key path segment and the query parameters. Pure:
//! a query either becomes a [`DataQuery`] or an [`SdmxError`] naming the part that is wrong
//! (400 for syntax, 422 for what the syntax allows but the dataflow does not).

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::dataflow::{Attr, Dataflow, Dim, OBS_VALUE, TIME_PERIOD};
use super::error::SdmxError;
use super::format::Labels;
use crate::vintage::Vintage;

/// A comparison of `c[COMPONENT]=op:value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    NotContains,
    StartsWith,
    EndsWith,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "co" => Op::Contains,
            "nc" => Op::NotContains,
            "sw" => Op::StartsWith,
            "ew" => Op::EndsWith,
            _ => return None,
        })
    }

    /// Whether `value op operand` holds, comparing with `cmp`.
    fn holds(self, value: &str, operand: &str, cmp: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Eq => cmp == Equal,
            Op::Ne => cmp != Equal,
            Op::Lt => cmp == Less,
            Op::Le => cmp != Greater,
            Op::Gt => cmp == Greater,
            Op::Ge => cmp != Less,
            Op::Contains => value.contains(operand),
            Op::NotContains => !value.contains(operand),
            Op::StartsWith => value.starts_with(operand),
            Op::EndsWith => value.ends_with(operand),
        }
    }
}

/// What a `c[...]` filter applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Dim(Dim),
    TimePeriod,
    ObsValue,
    Attr(Attr),
}

impl Component {
    fn parse(id: &str) -> Option<Component> {
        match id {
            TIME_PERIOD => Some(Component::TimePeriod),
            OBS_VALUE => Some(Component::ObsValue),
            _ => {
                Dim::parse(id).map(Component::Dim).or_else(|| Attr::parse(id).map(Component::Attr))
            }
        }
    }
}

/// `c[X]=A,B+C`: A OR (B AND C).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub component: Component,
    pub any_of: Vec<Vec<(Op, String)>>,
}

impl Filter {
    /// Whether a code (or text value) passes, compared as text.
    pub fn accepts_text(&self, value: &str) -> bool {
        self.any_of.iter().any(|all| {
            all.iter().all(|(op, operand)| op.holds(value, operand, value.cmp(operand.as_str())))
        })
    }

    /// Whether a number passes; an operand that is not a number never matches.
    pub fn accepts_number(&self, value: f64) -> bool {
        self.any_of.iter().any(|all| {
            all.iter().all(|(op, operand)| match operand.parse::<f64>() {
                Ok(x) => op.holds("", "", value.total_cmp(&x)),
                Err(_) => false,
            })
        })
    }

    /// Whether a period ("2024" or "2024-03") passes: a period is compared by the months it
    /// spans, so `ge:2024-03` keeps periods that start in or after March 2024 (not the year
    /// 2024) and `le:2024` keeps periods that end by December 2024.
    pub fn accepts_period(&self, period: &str) -> bool {
        let Some((start, end)) = months(period) else { return false };
        self.any_of.iter().any(|all| {
            all.iter().all(|(op, operand)| {
                let Some((low, high)) = months(operand) else { return false };
                match op {
                    Op::Eq => start == low && end == high,
                    Op::Ne => !(start == low && end == high),
                    Op::Ge => start >= low,
                    Op::Gt => start > high,
                    Op::Le => end <= high,
                    Op::Lt => end < low,
                    other => other.holds(period, operand, period.cmp(operand.as_str())),
                }
            })
        })
    }

    /// The months a `TIME_PERIOD` filter can reach, to bound the counts requests: the hull of
    /// its alternatives (`None` where one is open on that side).
    pub fn month_window(&self) -> (Option<String>, Option<String>) {
        let mut lows: Vec<Option<String>> = Vec::new();
        let mut highs: Vec<Option<String>> = Vec::new();
        for all in &self.any_of {
            let mut low: Option<String> = None;
            let mut high: Option<String> = None;
            for (op, operand) in all {
                let Some((start, end)) = months(operand) else { continue };
                let (l, h) = match op {
                    Op::Eq => (Some(start), Some(end)),
                    Op::Ge | Op::Gt => (Some(start), None),
                    Op::Le | Op::Lt => (None, Some(end)),
                    _ => (None, None),
                };
                if let Some(l) = l {
                    low = Some(low.map_or(l.clone(), |x: String| x.max(l)));
                }
                if let Some(h) = h {
                    high = Some(high.map_or(h.clone(), |x: String| x.min(h)));
                }
            }
            lows.push(low);
            highs.push(high);
        }
        let hull = |bounds: Vec<Option<String>>, pick: fn(String, String) -> String| {
            bounds.into_iter().try_fold(None::<String>, |acc, b| {
                let b = b?;
                Some(Some(acc.map_or(b.clone(), |a| pick(a, b))))
            })?
        };
        (hull(lows, std::cmp::min), hull(highs, std::cmp::max))
    }
}

/// The first and last month of "YYYY" or "YYYY-MM" (also "YYYY-Mmm", "YYYY-A1" as SDMX writes
/// reporting periods).
pub fn months(period: &str) -> Option<(String, String)> {
    let year_ok = |y: &str| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit());
    match period.split_once('-') {
        None if year_ok(period) => Some((format!("{period}-01"), format!("{period}-12"))),
        Some((y, "A1")) if year_ok(y) => Some((format!("{y}-01"), format!("{y}-12"))),
        Some((y, m)) if year_ok(y) => {
            let m = m.strip_prefix('M').unwrap_or(m);
            match m.parse::<u8>() {
                // Two ASCII digits: `parse` alone takes a sign ("+3").
                Ok(n @ 1..=12) if m.len() == 2 && m.bytes().all(|b| b.is_ascii_digit()) => {
                    let month = format!("{y}-{n:02}");
                    Some((month.clone(), month))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// `dimensionAtObservation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtObservation {
    TimePeriod,
    Dim(Dim),
    AllDimensions,
}

/// One alternative of the key: per dimension, the codes asked for (`None` = any).
pub type Key = Vec<Option<Vec<String>>>;

#[derive(Debug, Clone, PartialEq)]
pub struct DataQuery {
    /// Alternatives (`,` in the key); each selects the product of its dimensions' codes.
    pub keys: Vec<Key>,
    pub filters: Vec<Filter>,
    pub vintage: Vintage,
    pub updated_after: Option<DateTime<Utc>>,
    pub include_history: bool,
    pub first_n: Option<usize>,
    pub last_n: Option<usize>,
    pub at_observation: AtObservation,
    /// Which attributes the answer carries.
    pub attributes: Vec<Attr>,
    pub measures: bool,
    /// `format=` (a convenience over `Accept`).
    pub format: Option<String>,
    /// `labels=` (also a parameter of the SDMX-CSV media type).
    pub labels: Option<Labels>,
}

/// Codes are SDMX ids: letters, digits, `_`, `@`, `$`, `-`.
fn is_id(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"_@$-".contains(&b))
}

/// The `{key}` path segment: `all` or `*` for everything, else comma-separated keys of
/// dot-separated dimension values, `*` or an empty segment for any code, `+` between codes
/// (the v1 OR); trailing dimensions left out are wildcards.
pub fn parse_key(text: &str) -> Result<Vec<Key>, SdmxError> {
    if text.is_empty() || text == "*" || text == "all" {
        return Ok(vec![vec![None; Dim::ALL.len()]]);
    }
    let mut keys = Vec::new();
    for key in text.split(',') {
        let parts: Vec<&str> = key.split('.').collect();
        if parts.len() > Dim::ALL.len() {
            return Err(SdmxError::semantic(format!(
                "key '{key}' has {} dimensions; INCIDENTS has {} before TIME_PERIOD: {}",
                parts.len(),
                Dim::ALL.len(),
                Dim::ALL.map(Dim::id).join(".")
            )));
        }
        let mut parsed: Key = vec![None; Dim::ALL.len()];
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() || *part == "*" {
                continue;
            }
            let codes: Vec<String> = part.split('+').map(str::to_owned).collect();
            if let Some(bad) = codes.iter().find(|c| !is_id(c)) {
                return Err(SdmxError::syntax(format!(
                    "key '{key}': '{bad}' in dimension {} ({}) is not a code; codes are letters, digits, _, @, $ and -, \
                     '*' is any code and '+' separates codes",
                    i + 1,
                    Dim::ALL[i].id()
                )));
            }
            parsed[i] = Some(codes);
        }
        keys.push(parsed);
    }
    Ok(keys)
}

/// Pairs of the query string, percent-decoded with `+` kept (it is the AND of `c[...]`, and an
/// offset sign in a date-time).
pub fn raw_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|raw| {
        let kept = raw.replace('+', "%2B");
        url::form_urlencoded::parse(kept.as_bytes()).into_owned().collect()
    })
    .unwrap_or_default()
}

fn datetime(name: &str, value: &str) -> Result<DateTime<Utc>, SdmxError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(t.and_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(SdmxError::syntax(format!(
        "{name}='{value}' is not an xs:dateTime; e.g. 2025-11-01T00:00:00Z (a date alone is midnight UTC)"
    )))
}

fn count(name: &str, value: &str) -> Result<usize, SdmxError> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(SdmxError::syntax(format!("{name}='{value}' is not a positive integer"))),
    }
}

/// The component id inside `c[...]`, or `None` when `key` is not a component filter.
fn component_id(key: &str) -> Option<&str> {
    key.strip_prefix("c[").and_then(|rest| rest.strip_suffix(']'))
}

fn parse_filter(id: &str, value: &str) -> Result<Filter, SdmxError> {
    let component = Component::parse(id).ok_or_else(|| {
        SdmxError::semantic(format!(
            "c[{id}]: INCIDENTS has no component {id}; components are {}, {TIME_PERIOD}, {OBS_VALUE}, {}",
            Dim::ALL.map(Dim::id).join(", "),
            Attr::ALL.map(Attr::id).join(", ")
        ))
    })?;
    let mut any_of = Vec::new();
    for alternative in value.split(',') {
        let mut all = Vec::new();
        for term in alternative.split('+') {
            let (op, operand) = match term.split_once(':') {
                Some((op, operand)) => match Op::parse(op) {
                    Some(op) => (op, operand),
                    None => {
                        return Err(SdmxError::syntax(format!(
                            "c[{id}]={value}: '{op}' is not an operator; use eq, ne, lt, le, gt, ge, co, nc, sw or ew"
                        )));
                    }
                },
                None => (Op::Eq, term),
            };
            if operand.is_empty() {
                return Err(SdmxError::syntax(format!(
                    "c[{id}]={value}: an empty value; give op:value terms, ',' for OR and '+' for AND"
                )));
            }
            if component == Component::TimePeriod && months(operand).is_none() {
                return Err(SdmxError::syntax(format!(
                    "c[{id}]={value}: '{operand}' is not a period; use YYYY or YYYY-MM"
                )));
            }
            all.push((op, operand.to_owned()));
        }
        any_of.push(all);
    }
    Ok(Filter { component, any_of })
}

impl DataQuery {
    pub fn parse(key: &str, pairs: &[(String, String)]) -> Result<DataQuery, SdmxError> {
        let mut query = DataQuery {
            keys: parse_key(key)?,
            filters: Vec::new(),
            vintage: Vintage::Current,
            updated_after: None,
            include_history: false,
            first_n: None,
            last_n: None,
            at_observation: AtObservation::TimePeriod,
            attributes: Attr::ALL.to_vec(),
            measures: true,
            format: None,
            labels: None,
        };
        let mut seen = std::collections::HashSet::new();
        for (name, value) in pairs {
            let canonical = if name == "updateAfter" { "updatedAfter" } else { name.as_str() };
            // `c[X]` may come encoded: `c%5BX%5D` decodes to the same name.
            if !seen.insert(canonical.to_owned()) {
                return Err(SdmxError::syntax(format!(
                    "parameter '{name}' is given twice; give it once ('c[X]=a,b' is an OR, '+' an AND)"
                )));
            }
            if let Some(id) = component_id(name) {
                query.filters.push(parse_filter(id, value)?);
                continue;
            }
            match canonical {
                "asOf" => query.vintage = Vintage::Time(datetime(name, value)?),
                "release" => {
                    let mut vintage = Vintage::Current;
                    vintage.take(name, value).map_err(|e| SdmxError::syntax(e.0))?;
                    query.vintage = vintage;
                }
                "updatedAfter" => query.updated_after = Some(datetime(name, value)?),
                "includeHistory" => {
                    query.include_history = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(SdmxError::syntax(format!(
                                "includeHistory='{value}' is not a boolean; use true or false"
                            )));
                        }
                    }
                }
                "firstNObservations" => query.first_n = Some(count(name, value)?),
                "lastNObservations" => query.last_n = Some(count(name, value)?),
                "startPeriod" | "endPeriod" => {
                    // One period, named as sent: `c[TIME_PERIOD]` is where lists and operators go.
                    if months(value).is_none() {
                        return Err(SdmxError::syntax(format!(
                            "{name}='{value}' is not a period; use YYYY or YYYY-MM"
                        )));
                    }
                    let op = if canonical == "startPeriod" { "ge" } else { "le" };
                    let filter = parse_filter(TIME_PERIOD, &format!("{op}:{value}"))?;
                    match query.filters.iter_mut().find(|f| f.component == Component::TimePeriod) {
                        // Both bounds hold at once: an AND inside every alternative.
                        Some(existing) => {
                            for all in &mut existing.any_of {
                                all.extend(filter.any_of[0].iter().cloned());
                            }
                        }
                        None => query.filters.push(filter),
                    }
                }
                "dimensionAtObservation" => {
                    query.at_observation = match value.as_str() {
                        TIME_PERIOD => AtObservation::TimePeriod,
                        "AllDimensions" => AtObservation::AllDimensions,
                        other => AtObservation::Dim(Dim::parse(other).ok_or_else(|| {
                            SdmxError::semantic(format!(
                                "dimensionAtObservation='{other}' is not a dimension of INCIDENTS; use TIME_PERIOD, \
                                 AllDimensions or one of {}",
                                Dim::ALL.map(Dim::id).join(", ")
                            ))
                        })?),
                    }
                }
                "attributes" => {
                    query.attributes = match value.as_str() {
                        "dsd" | "all" | "obs" => Attr::ALL.to_vec(),
                        // Every attribute of INCIDENTS is attached to observations.
                        "none" | "msd" | "dataset" | "series" => Vec::new(),
                        list => list
                            .split(',')
                            .map(|id| {
                                Attr::parse(id).ok_or_else(|| {
                                    SdmxError::semantic(format!(
                                        "attributes: '{id}' is not an attribute of INCIDENTS; use dsd, all, none, obs or {}",
                                        Attr::ALL.map(Attr::id).join(", ")
                                    ))
                                })
                            })
                            .collect::<Result<_, _>>()?,
                    }
                }
                "measures" => {
                    query.measures = match value.as_str() {
                        "all" | OBS_VALUE => true,
                        "none" => false,
                        other => {
                            return Err(SdmxError::semantic(format!(
                                "measures='{other}' is not a measure of INCIDENTS; use all, none or OBS_VALUE"
                            )));
                        }
                    }
                }
                "format" => query.format = Some(value.clone()),
                "labels" => {
                    query.labels = Some(Labels::parse(value).ok_or_else(|| {
                        SdmxError::syntax(format!("labels='{value}' is not supported; use id, name or both"))
                    })?)
                }
                other => {
                    return Err(SdmxError::syntax(format!(
                        "unknown parameter '{other}'; use c[COMPONENT], startPeriod, endPeriod, updatedAfter, asOf, \
                         includeHistory, firstNObservations, lastNObservations, dimensionAtObservation, attributes, \
                         measures, format, labels or release"
                    )));
                }
            }
        }
        let period =
            |name: &str| pairs.iter().find(|(k, _)| k == name).and_then(|(_, v)| months(v));
        if let (Some((start, _)), Some((_, end))) = (period("startPeriod"), period("endPeriod"))
            && start > end
        {
            return Err(SdmxError::semantic(format!(
                "startPeriod starts in {start}, after endPeriod ends ({end}): no period lies between them"
            )));
        }
        if let (Some(after), Vintage::Time(as_of)) = (query.updated_after, &query.vintage)
            && after > *as_of
        {
            return Err(SdmxError::semantic(format!(
                "updatedAfter={after} is later than asOf={as_of}: nothing can have changed after the state asked for"
            )));
        }
        Ok(query)
    }

    pub fn filter(&self, component: Component) -> Option<&Filter> {
        self.filters.iter().find(|f| f.component == component)
    }

    /// The codes of `dim` one key alternative selects, checked against the codelist: `None`
    /// when an unknown code is named.
    pub fn select(&self, flow: &Dataflow, key: &Key, dim: Dim) -> Result<Vec<String>, SdmxError> {
        let codelist = flow.codelist(dim);
        if let Some(codes) = &key[dim.position()] {
            for code in codes {
                if codelist.get(code).is_none() {
                    return Err(SdmxError::semantic(format!(
                        "{} has no code '{code}' (codelist {}: GET /sdmx/v2/structure/codelist/{}/{}/{} lists them)",
                        dim.id(),
                        codelist.id,
                        flow.agency,
                        codelist.id,
                        super::dataflow::VERSION
                    )));
                }
            }
        }
        let filter = self.filter(Component::Dim(dim));
        Ok(codelist
            .codes
            .iter()
            .filter(|c| key[dim.position()].as_ref().is_none_or(|codes| codes.contains(&c.id)))
            .filter(|c| filter.is_none_or(|f| f.accepts_text(&c.id)))
            .map(|c| c.id.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(raw: &str) -> Vec<(String, String)> {
        raw_pairs(Some(raw))
    }

    #[test]
    fn keys_take_the_v2_and_the_v1_forms() {
        let keys = parse_key("A.FR.*.._T,M.R11+75").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0][0], Some(vec!["A".to_owned()]));
        assert_eq!(keys[0][2], None);
        assert_eq!(keys[0][3], None);
        assert_eq!(keys[0][4], Some(vec!["_T".to_owned()]));
        assert_eq!(keys[0][7], None, "trailing dimensions are wildcards");
        assert_eq!(keys[1][1], Some(vec!["R11".to_owned(), "75".to_owned()]));
        assert_eq!(parse_key("all").unwrap(), vec![vec![None; 8]]);
        assert_eq!(parse_key("A.B.C.D.E.F.G.H.I").unwrap_err().status().as_u16(), 422);
        assert_eq!(parse_key("A.F R").unwrap_err().status().as_u16(), 400);
    }

    #[test]
    fn component_filters_read_or_and_and() {
        let q = DataQuery::parse(
            "all",
            &pairs("c%5BTIME_PERIOD%5D=ge:2024-01+le:2024-12&c[CYBER]=true,_T"),
        )
        .unwrap();
        let time = q.filter(Component::TimePeriod).unwrap();
        assert_eq!(time.any_of.len(), 1);
        assert_eq!(time.any_of[0].len(), 2);
        assert!(time.accepts_period("2024-03"));
        assert!(time.accepts_period("2024"));
        assert!(!time.accepts_period("2025-01"));
        assert_eq!(time.month_window(), (Some("2024-01".into()), Some("2024-12".into())));
        let cyber = q.filter(Component::Dim(Dim::Cyber)).unwrap();
        assert!(
            cyber.accepts_text("true") && cyber.accepts_text("_T") && !cyber.accepts_text("false")
        );
        // The specification's examples: A OR (B AND C); ≠A OR =B.
        let f = parse_filter("CYBER", "A,B+C").unwrap();
        assert_eq!(
            f.any_of,
            vec![vec![(Op::Eq, "A".into())], vec![(Op::Eq, "B".into()), (Op::Eq, "C".into())]]
        );
        let f = parse_filter("CYBER", "ne:A,B").unwrap();
        assert!(f.accepts_text("C") && f.accepts_text("B"));
        let value = parse_filter("OBS_VALUE", "gt:10").unwrap();
        assert!(value.accepts_number(11.0) && !value.accepts_number(10.0));
    }

    #[test]
    fn periods_compare_by_the_months_they_span() {
        let f = parse_filter("TIME_PERIOD", "ge:2024-03").unwrap();
        assert!(!f.accepts_period("2024"), "the year 2024 starts before March");
        assert!(f.accepts_period("2025"));
        let f = parse_filter("TIME_PERIOD", "2024").unwrap();
        assert!(f.accepts_period("2024") && !f.accepts_period("2024-05"));
        let open = parse_filter("TIME_PERIOD", "ge:2024,le:2020").unwrap();
        assert_eq!(open.month_window(), (None, None));
        assert_eq!(months("2024-M05"), Some(("2024-05".into(), "2024-05".into())));
        assert_eq!(months("2024-13"), None);
        // Found by fuzzing: "+3" parsed as a month, then split as an AND in startPeriod.
        assert_eq!(months("2024-+3"), None);
        assert_eq!(months("2024-M+3"), None);
    }

    #[test]
    fn bad_parameters_say_what_is_wrong() {
        let cases: &[(&str, u16, &str)] = &[
            ("c[COLOUR]=red", 422, "no component COLOUR"),
            ("c[CYBER]=xx:true", 400, "'xx' is not an operator"),
            ("c[TIME_PERIOD]=ge:2024-13", 400, "not a period"),
            ("firstNObservations=0", 400, "positive integer"),
            ("dimensionAtObservation=COLOUR", 422, "not a dimension"),
            ("asOf=yesterday", 400, "xs:dateTime"),
            ("updatedAfter=2025-02-01T00:00:00Z&asOf=2025-01-01T00:00:00Z", 422, "later than asOf"),
            ("colour=red", 400, "unknown parameter 'colour'"),
            ("attributes=COLOUR", 422, "not an attribute"),
            ("labels=all", 400, "labels='all'"),
            ("c[CYBER]=true&c%5BCYBER%5D=false", 400, "given twice"),
            ("startPeriod=2025-12&endPeriod=2025-11", 422, "after endPeriod"),
            // Found by fuzzing: the error named c[TIME_PERIOD]; a list was read as an OR.
            ("startPeriod=", 400, "startPeriod='' is not a period"),
            ("endPeriod=2024,2025", 400, "endPeriod='2024,2025' is not a period"),
            ("startPeriod=2024%2Ble:2020", 400, "startPeriod='2024+le:2020'"),
        ];
        for (raw, status, text) in cases {
            let error = DataQuery::parse("all", &pairs(raw)).unwrap_err();
            assert_eq!(error.status().as_u16(), *status, "{raw}: {}", error.message());
            assert!(error.message().contains(text), "{raw}: {}", error.message());
        }
        let q = DataQuery::parse("all", &pairs("updateAfter=2025-01-01T00:00:00%2B01:00")).unwrap();
        assert_eq!(q.updated_after.unwrap().to_rfc3339(), "2024-12-31T23:00:00+00:00");
        let q = DataQuery::parse("all", &pairs("asOf=2025-01-01T00:00:00+01:00")).unwrap();
        assert!(matches!(q.vintage, Vintage::Time(_)));
    }

    #[test]
    fn a_key_selects_codes_of_the_codelist() {
        let flow = Dataflow::new("OBSERVATORY", &["pn".into(), "gn".into()]);
        let q = DataQuery::parse("A.FR.*.true", &pairs("c[SOURCE]=ne:_T")).unwrap();
        let key = &q.keys[0];
        assert_eq!(q.select(&flow, key, Dim::Freq).unwrap(), vec!["A"]);
        assert_eq!(q.select(&flow, key, Dim::Cyber).unwrap(), vec!["true"]);
        assert_eq!(q.select(&flow, key, Dim::Source).unwrap(), vec!["pn", "gn"]);
        assert!(q.select(&flow, key, Dim::Iccs).unwrap().len() > 100);
        let q = DataQuery::parse("A.XX", &[]).unwrap();
        let error = q.select(&flow, &q.keys[0], Dim::RefArea).unwrap_err();
        assert_eq!(error.status().as_u16(), 422);
        assert!(error.message().contains("REF_AREA has no code 'XX'"));
    }
}
