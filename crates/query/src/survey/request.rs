//! Parameters of the survey endpoints. Pure: a query string either becomes a request or a
//! message saying exactly what is wrong.

use observatory_model::is_valid_source_id;
use observatory_model::survey::is_valid_wave_id;
use observatory_stats::CiMethod;

use crate::request::{OutputFormat, RequestError};
use crate::vintage::Vintage;

/// `stat=`: the statistic of `GET /v1/surveys/{survey}/estimates`, as the CLI's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Mean,
    Total,
    Prop,
    Ratio,
}

impl Stat {
    fn parse(text: &str) -> Option<Stat> {
        match text {
            "mean" => Some(Stat::Mean),
            "total" => Some(Stat::Total),
            "prop" => Some(Stat::Prop),
            "ratio" => Some(Stat::Ratio),
            _ => None,
        }
    }
}

/// `GET /v1/surveys/{survey}/estimates?wave=&stat=&var=&by=&ci=&level=&min_sequence=`
#[derive(Debug, Clone, PartialEq)]
pub struct EstimatesQuery {
    pub wave: String,
    pub stat: Stat,
    /// One statistic per variable; `NUM/DEN` for ratios.
    pub vars: Vec<String>,
    pub by: Vec<String>,
    pub ci: CiMethod,
    pub level: f64,
    pub min_sequence: Option<u64>,
    pub vintage: Vintage,
    /// `json` (default), `jsonstat`, `arrow` or `parquet`.
    pub format: OutputFormat,
}

/// `GET /v1/surveys/{survey}/reporting-rate` and `/dark-figure`.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemQuery {
    pub wave: String,
    /// The victimisation item; may be left out when the wave declares exactly one.
    pub item: Option<String>,
    pub by: Vec<String>,
    pub ci: CiMethod,
    pub level: f64,
    pub min_sequence: Option<u64>,
    /// Dark figure only: agencies whose recorded incidents are compared (all when empty).
    pub sources: Vec<String>,
    /// Dark figure only: wait for the incident projection to reach this sequence.
    pub incidents_min_sequence: Option<u64>,
    /// Dark figure only: the counting unit of the recorded incidents (all units, side by side,
    /// when absent; never added).
    pub unit: Option<String>,
    /// Which committed state (of the surveys, and for the dark figure of the incidents too).
    pub vintage: Vintage,
}

fn bad<T>(message: String) -> Result<T, RequestError> {
    Err(RequestError(message))
}

fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
}

fn sequence(name: &str, value: &str) -> Result<u64, RequestError> {
    value.parse().map_err(|_| {
        RequestError(format!("{name}='{value}' is not a stream sequence (a non-negative integer)"))
    })
}

fn level(value: &str) -> Result<f64, RequestError> {
    match value.parse::<f64>() {
        Ok(l) if l > 0.0 && l < 1.0 => Ok(l),
        _ => bad(format!(
            "level='{value}' is not a confidence level; use a number strictly between 0 and 1, e.g. 0.95"
        )),
    }
}

fn ci(value: &str) -> Result<CiMethod, RequestError> {
    value.parse::<CiMethod>().map_err(|e| RequestError(format!("ci='{value}': {e}")))
}

fn wave(value: Option<String>) -> Result<String, RequestError> {
    match value {
        None => {
            bad("wave= is required (e.g. wave=2024); GET /v1/surveys/{survey}/waves lists them"
                .into())
        }
        Some(w) if !is_valid_wave_id(&w) => bad(format!("wave='{w}' is not a wave id")),
        Some(w) => Ok(w),
    }
}

/// Refuses repeated parameters: a list is one comma-separated value.
fn unique(params: &[(String, String)]) -> Result<(), RequestError> {
    let mut seen = std::collections::HashSet::new();
    for (key, _) in params {
        if !seen.insert(key.as_str()) {
            return bad(format!(
                "parameter '{key}' is given twice; give it once (a list is one comma-separated value)"
            ));
        }
    }
    Ok(())
}

impl EstimatesQuery {
    pub fn parse(params: &[(String, String)]) -> Result<EstimatesQuery, RequestError> {
        unique(params)?;
        let (mut w, mut stat, mut vars, mut by) = (None, None, Vec::new(), Vec::new());
        let (mut method, mut lvl, mut min_sequence) = (CiMethod::Auto, 0.95, None);
        let mut vintage = Vintage::Current;
        let mut format = OutputFormat::Json;
        for (key, value) in params {
            if vintage.take(key, value)? {
                continue;
            }
            match key.as_str() {
                "wave" => w = Some(value.clone()),
                "format" => {
                    format = match value.as_str() {
                        "json" => OutputFormat::Json,
                        "jsonstat" => OutputFormat::JsonStat,
                        "arrow" => OutputFormat::Arrow,
                        "parquet" => OutputFormat::Parquet,
                        other => {
                            return bad(format!(
                                "format='{other}' is not supported for estimates; use json, jsonstat, arrow or parquet"
                            ));
                        }
                    }
                }
                "stat" => {
                    stat = Some(Stat::parse(value).ok_or_else(|| {
                        RequestError(format!(
                            "stat='{value}' is not supported; use mean, total, prop or ratio"
                        ))
                    })?)
                }
                "var" => vars = list(value),
                "by" => by = list(value),
                "ci" => method = ci(value)?,
                "level" => lvl = level(value)?,
                "min_sequence" => min_sequence = Some(sequence(key, value)?),
                other => {
                    return bad(format!(
                        "unknown parameter '{other}'; use wave, stat, var, by, ci, level, format, min_sequence, release, as_of or as_of_time"
                    ));
                }
            }
        }
        let wave = wave(w)?;
        let Some(stat) = stat else {
            return bad("stat= is required: mean, total, prop or ratio".into());
        };
        if vars.is_empty() {
            return bad(
                "var= is required: one or more comma-separated variables (NUM/DEN for stat=ratio)"
                    .into(),
            );
        }
        if let Some(v) = vars.iter().find(|v| (stat == Stat::Ratio) != v.contains('/')) {
            return bad(if stat == Stat::Ratio {
                format!("var='{v}': a ratio is NUMERATOR/DENOMINATOR, e.g. var=api.stu/enroll")
            } else {
                format!("var='{v}': '/' only appears in ratios (stat=ratio)")
            });
        }
        vintage.check_min_sequence(min_sequence)?;
        Ok(EstimatesQuery {
            wave,
            stat,
            vars,
            by,
            ci: method,
            level: lvl,
            min_sequence,
            vintage,
            format,
        })
    }
}

impl ItemQuery {
    /// `dark_figure` admits `source` and `incidents_min_sequence`, and no `by`.
    pub fn parse(
        params: &[(String, String)],
        dark_figure: bool,
    ) -> Result<ItemQuery, RequestError> {
        unique(params)?;
        let mut query = ItemQuery {
            wave: String::new(),
            item: None,
            by: Vec::new(),
            // The survey package's default for proportions (svyciprop); totals fall back to t.
            ci: CiMethod::Logit,
            level: 0.95,
            min_sequence: None,
            sources: Vec::new(),
            incidents_min_sequence: None,
            unit: None,
            vintage: Vintage::Current,
        };
        let mut w = None;
        for (key, value) in params {
            if query.vintage.take(key, value)? {
                continue;
            }
            match key.as_str() {
                "wave" => w = Some(value.clone()),
                "item" => query.item = Some(value.clone()),
                "by" if !dark_figure => query.by = list(value),
                "ci" => query.ci = ci(value)?,
                "level" => query.level = level(value)?,
                "min_sequence" => query.min_sequence = Some(sequence(key, value)?),
                "source" if dark_figure => {
                    query.sources = list(value);
                    if let Some(s) = query.sources.iter().find(|s| !is_valid_source_id(s)) {
                        return bad(format!("source='{s}' is not an agency id"));
                    }
                }
                "unit" if dark_figure => match value.as_str() {
                    "offence" | "victim" | "report" => query.unit = Some(value.clone()),
                    other => {
                        return bad(format!(
                            "unit='{other}' is not a counting unit; use offence, victim or report"
                        ));
                    }
                },
                "incidents_min_sequence" if dark_figure => {
                    query.incidents_min_sequence = Some(sequence(key, value)?)
                }
                other => {
                    let allowed = if dark_figure {
                        "wave, item, ci, level, min_sequence, source, unit, incidents_min_sequence, release, as_of or as_of_time"
                    } else {
                        "wave, item, by, ci, level, min_sequence, release, as_of or as_of_time"
                    };
                    return bad(format!("unknown parameter '{other}'; use {allowed}"));
                }
            }
        }
        query.wave = wave(w)?;
        query.vintage.check_min_sequence(query.min_sequence)?;
        if query.vintage != Vintage::Current && query.incidents_min_sequence.is_some() {
            return bad("incidents_min_sequence waits for the newest incidents; with release, as_of or as_of_time \
                 the incidents come from the same vintage"
                .into());
        }
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_issue_example_parses_with_the_cli_defaults() {
        let q = EstimatesQuery::parse(&pairs(&[
            ("wave", "2000"),
            ("stat", "mean"),
            ("var", "api00,api99"),
            ("by", "stype"),
        ]))
        .unwrap();
        assert_eq!((q.stat, q.vars.len(), q.ci, q.level), (Stat::Mean, 2, CiMethod::Auto, 0.95));
        let q = EstimatesQuery::parse(&pairs(&[
            ("wave", "2000"),
            ("stat", "ratio"),
            ("var", "api.stu/enroll"),
            ("ci", "wald"),
        ]))
        .unwrap();
        assert_eq!((q.stat, q.ci), (Stat::Ratio, CiMethod::Wald));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("stat", "mean"), ("var", "x")], "wave= is required"),
            (&[("wave", "2000"), ("var", "x")], "stat= is required"),
            (&[("wave", "2000"), ("stat", "median"), ("var", "x")], "stat='median'"),
            (&[("wave", "2000"), ("stat", "ratio"), ("var", "x")], "NUMERATOR/DENOMINATOR"),
            (&[("wave", "2000"), ("stat", "mean"), ("var", "x"), ("level", "95")], "level='95'"),
            (&[("wave", "2000"), ("stat", "mean"), ("var", "x"), ("ci", "exact")], "ci='exact'"),
            (
                &[("wave", "2000"), ("stat", "mean"), ("var", "x"), ("weights", "w")],
                "unknown parameter 'weights'",
            ),
            (&[("wave", "2000"), ("wave", "2001")], "given twice"),
        ];
        for (query, expected) in cases {
            let error = EstimatesQuery::parse(&pairs(query)).unwrap_err().0;
            assert!(error.contains(expected), "{query:?}: {error}");
        }
        assert!(
            ItemQuery::parse(&pairs(&[("wave", "1"), ("source", "pn")]), false)
                .unwrap_err()
                .0
                .contains("unknown parameter 'source'")
        );
        let dark = ItemQuery::parse(&pairs(&[("wave", "1"), ("source", "pn,gn")]), true).unwrap();
        assert_eq!((dark.sources.len(), dark.ci), (2, CiMethod::Logit));
    }
}
