//! The annual report (after the SSMSI's annual report on digital offences and the ONS
//! bulletin): the year against the four before, the ICCS sections, rates per 100 000 by
//! département (map and table), victim types, and the victimisation survey beside recorded
//! incidents.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::chart::{self, Point};
use crate::common::{self, Context, MonthStatus};
use crate::period::Month;
use crate::source::{self, Source, int_of, num_of, str_of};
use crate::table::{Cell, Table};
use crate::{Document, ReportError};

/// Years the yearly series shows: the period and the four before it.
pub const SERIES_YEARS: i32 = 5;

/// What the annual build learnt that the methods box needs.
pub(crate) struct Annual {
    pub population: Option<String>,
}

pub(crate) async fn build(
    source: &impl Source,
    cx: &Context,
    year: i32,
    doc: &mut Document,
) -> Result<Annual, ReportError> {
    let first = year - SERIES_YEARS + 1;
    let years = source::counts(
        source,
        &cx.release,
        &format!("by=year&unit=offence&cyber=true&from={first}&to={year}"),
    )
    .await?;
    if years.rows.is_empty() {
        return Err(ReportError::NoData(format!(
            "release {} has no recorded cyber offence from {first} to {year}; choose a year the release covers \
             (GET /v1/incidents/counts?by=year&release={} lists them)",
            cx.release, cx.release
        )));
    }
    let coverage = common::Coverage::read(
        source,
        &cx.release,
        Month { year: first, month: 1 },
        Month { year, month: 12 },
    )
    .await?;
    // A year without a row: a final zero when every source closed every month, no figure
    // when no source covers any month (before the feeds began), else a provisional zero.
    let year_status = |y: i32| -> &'static str {
        let statuses: Vec<MonthStatus> =
            (1..=12).map(|m| coverage.status(Month { year: y, month: m })).collect();
        if statuses.iter().all(|s| *s == MonthStatus::Closed) {
            "final"
        } else if statuses.iter().all(|s| *s == MonthStatus::Missing) {
            "no data"
        } else {
            "provisional"
        }
    };
    let year_row = |rows: &source::Rows, y: i32| -> (Option<i64>, &'static str) {
        match rows
            .rows
            .iter()
            .find(|r| int_of(r, "year") == Some(y.into()) || str_of(r, "year") == y.to_string())
        {
            Some(row) => (
                int_of(row, "count"),
                if row.get("provisional") == Some(&Value::Bool(true)) {
                    "provisional"
                } else {
                    "final"
                },
            ),
            None => match year_status(y) {
                "no data" => (None, "no data"),
                status => (Some(0), status),
            },
        }
    };
    let value = |y: i32| -> (i64, bool) {
        let (count, status) = year_row(&years, y);
        (count.unwrap_or(0), status != "final")
    };

    if year_row(&years, year).1 == "no data" {
        return Err(ReportError::NoData(format!(
            "no agency has sent or closed any month of {year} in release {}: there is nothing to report for \
             that year yet (GET /v1/coverage?from={year}-01&to={year}-12&release={} shows what is covered)",
            cx.release, cx.release
        )));
    }
    doc.heading(format!("Recorded cyber offences in {year}"));
    let (current, p) = value(year);
    let change = common::Change::new(
        "on the year",
        year.to_string(),
        (year - 1).to_string(),
        value(year),
        value(year - 1),
    );
    let five = common::Change::new(
        "over four years",
        year.to_string(),
        first.to_string(),
        value(year),
        value(first),
    );
    doc.paragraph(format!(
        "In {year}, the agencies recorded {} cyber offences{}: {}; {}.",
        Cell::Int(current).display(),
        if p { " (provisional)" } else { "" },
        change.sentence(),
        five.sentence()
    ));
    let points: Vec<Point> = (first..=year)
        .map(|y| {
            let (count, status) = year_row(&years, y);
            Point {
                label: y.to_string(),
                value: count.map(|c| c as f64),
                provisional: status == "provisional",
            }
        })
        .collect();
    doc.add_figure(
        "yearly_series",
        format!("Recorded cyber offences by year, France, {first} to {year}"),
        chart::bars("Recorded cyber offences by year", &points),
    );
    let mut table = Table::new(
        "yearly_series",
        "Recorded cyber offences by year, France",
        &["year", "offences", "change on the year (%)", "status"],
    );
    for y in first..=year {
        let (count, status) = year_row(&years, y);
        let (before, _) = year_row(&years, y - 1);
        let change = match (count, before) {
            (Some(v), Some(b)) if y > first => common::change_cell(v, b),
            _ => Cell::Empty,
        };
        table.push(vec![
            Cell::text(y.to_string()),
            Cell::opt_int(count),
            change,
            Cell::text(status),
        ]);
    }
    table.notes.push(common::PROVISIONAL_NOTE.to_owned());
    table.notes.extend(cx.perturbation_note());
    table.sources.push(years.request.clone());
    doc.add_table(table);

    // The SSMSI groups digital offences in four families (against property, persons,
    // institutions, and the laws of the digital sphere); the observatory classifies in ICCS,
    // so its sections play that part: documented in the table's note.
    doc.heading("By ICCS section");
    let sections = source::counts(
        source,
        &cx.release,
        &format!("by=year,iccs_section&unit=offence&cyber=true&from={}&to={year}", year - 1),
    )
    .await?;
    let (before, now) = ((year - 1).to_string(), year.to_string());
    let mut table = Table::new(
        "by_iccs_section",
        format!("Recorded cyber offences by ICCS section, {before} and {year}"),
        &["code", "ICCS section", before.as_str(), now.as_str(), "change (%)"],
    );
    for row in two_years(&sections, "iccs_section", year, year_status(year - 1) != "no data") {
        table.push(row);
    }
    table.notes.push(
        "The ICCS sections stand for the four families of digital offences of the SSMSI's annual report: the \
         observatory classifies every agency's codes in ICCS 1.0, not in the SSMSI's families."
            .to_owned(),
    );
    table.sources.push(sections.request.clone());
    doc.add_table(table);

    doc.heading(format!("Rates per 100 000 inhabitants by département, {year}"));
    let rates = source::counts(
        source,
        &cx.release,
        &format!("by=departement&unit=offence&cyber=true&rate=per100k&from={year}&to={year}"),
    )
    .await?;
    let national = source::counts(
        source,
        &cx.release,
        &format!("unit=offence&cyber=true&rate=per100k&from={year}&to={year}"),
    )
    .await?;
    let national_rate =
        national.rows.first().and_then(|r| r.get("rate_per_100k")).and_then(Value::as_f64);
    let population = rates
        .rows
        .iter()
        .chain(&national.rows)
        .find_map(|r| int_of(r, "population_year"))
        .map(|y| format!("{y} (the figures in force for {year})"));
    let geography = observatory_reference::Geography::france();
    let mut values: BTreeMap<String, Option<f64>> = BTreeMap::new();
    let mut table = Table::new(
        "departement_rates",
        format!("Recorded cyber offences per 100 000 inhabitants by département, {year}"),
        &["code", "département", "offences", "population", "rate per 100 000"],
    );
    for d in geography.departements() {
        let row = rates.find("departement", &d.code);
        let rate = row.and_then(|r| r.get("rate_per_100k")).and_then(Value::as_f64);
        let count = row.and_then(|r| int_of(r, "count"));
        let pop = row
            .and_then(|r| int_of(r, "population"))
            .or_else(|| geography.population_in_force(&d.code, year).map(|(p, _)| p as i64));
        // A département without a row has a published count of zero: its rate is zero.
        let rate = rate.or_else(|| pop.filter(|_| row.is_none()).map(|_| 0.0));
        values.insert(d.code.clone(), rate);
        table.push(vec![
            Cell::text(&d.code),
            Cell::text(&d.name),
            Cell::Int(count.unwrap_or(0)),
            Cell::opt_int(pop),
            Cell::opt_num(rate, 1),
        ]);
    }
    // Incidents whose record names no département count in France's total but in no
    // département: shown, so the rows and the total can be reconciled.
    if let Some(row) = rates.rows.iter().find(|r| r.get("departement").is_none_or(Value::is_null)) {
        table.push(vec![
            Cell::Empty,
            Cell::text("département not stated"),
            Cell::opt_int(int_of(row, "count")),
            Cell::Empty,
            Cell::Empty,
        ]);
    }
    table.push(vec![
        Cell::text("FR"),
        Cell::text("France"),
        Cell::opt_int(national.rows.first().and_then(|r| int_of(r, "count"))),
        Cell::opt_int(national.rows.first().and_then(|r| int_of(r, "population"))),
        Cell::opt_num(national_rate, 1),
    ]);
    table.notes.push(format!(
        "Rate: the département's published count over its INSEE legal population{}, per 100 000. Offences are \
         counted where they were recorded as committed.",
        population.as_deref().map(|p| format!(" of {p}")).unwrap_or_default()
    ));
    table.notes.extend(cx.perturbation_note());
    table.sources.push(rates.request.clone());
    table.sources.push(national.request.clone());
    doc.add_figure(
        "departement_map",
        format!(
            "Recorded cyber offences per 100 000 inhabitants by département, {year}{}",
            national_rate
                .map(|r| format!(" (France: {})", Cell::num(r, 1).display()))
                .unwrap_or_default()
        ),
        crate::map::choropleth(
            "Rates per 100 000 by département",
            "per 100 000 inhabitants",
            &values,
            1,
        ),
    );
    doc.add_table(table);

    doc.heading("Victims");
    let victims = source::counts(
        source,
        &cx.release,
        &format!("by=year,victim_type&unit=offence&cyber=true&from={}&to={year}", year - 1),
    )
    .await?;
    let mut table = Table::new(
        "by_victim_type",
        format!("Recorded cyber offences by type of victim, {before} and {year}"),
        &["code", "victim type", before.as_str(), now.as_str(), "change (%)"],
    );
    for row in two_years(&victims, "victim_type", year, year_status(year - 1) != "no data") {
        table.push(row);
    }
    table.sources.push(victims.request.clone());
    doc.add_table(table);

    doc.heading("Reports to online platforms");
    let reports =
        source::counts(source, &cx.release, &format!("by=year&unit=report&from={first}&to={year}"))
            .await?;
    let mut table = Table::new(
        "platform_reports",
        "Reports to online platforms by year",
        &["year", "reports", "status"],
    );
    for y in first..=year {
        let (count, status) = year_row(&reports, y);
        table.push(vec![Cell::text(y.to_string()), Cell::opt_int(count), Cell::text(status)]);
    }
    table.notes.push(
        "Unit: report. Not comparable with, and never added to, recorded offences.".to_owned(),
    );
    table.sources.push(reports.request.clone());
    doc.add_table(table);

    survey_section(source, cx, year, doc).await?;
    Ok(Annual { population })
}

/// The rows of a `by=year,<dimension>` answer as a table of the year before against the year:
/// code, label, both counts and the change. The year before is left empty (not zeros) when no
/// source covers it.
fn two_years(
    rows: &source::Rows,
    dimension: &str,
    year: i32,
    before_covered: bool,
) -> Vec<Vec<Cell>> {
    let mut codes: Vec<&str> = rows.rows.iter().map(|r| str_of(r, dimension)).collect();
    codes.sort_unstable();
    codes.dedup();
    codes
        .into_iter()
        .map(|code| {
            let count = |y: i32| {
                rows.rows
                    .iter()
                    .find(|r| str_of(r, dimension) == code && int_of(r, "year") == Some(y.into()))
                    .and_then(|r| int_of(r, "count"))
                    .unwrap_or(0)
            };
            let (now, before) = (count(year), count(year - 1));
            let (before, change) = if before_covered {
                (Cell::Int(before), common::change_cell(now, before))
            } else {
                (Cell::Empty, Cell::Empty)
            };
            vec![
                Cell::text(code),
                Cell::text(common::label(dimension, code)),
                before,
                Cell::Int(now),
                change,
            ]
        })
        .collect()
}

/// The victimisation survey: prevalence with its 95 % interval, the reporting rate ("taux de
/// plainte") and the survey's victims beside the incidents recorded, for every wave whose
/// reference period falls in the year. A year without a wave says so; it does not fail.
async fn survey_section(
    source: &impl Source,
    cx: &Context,
    year: i32,
    doc: &mut Document,
) -> Result<(), ReportError> {
    doc.heading("What victims say: the victimisation survey");
    let listing = source.get(&format!("/v1/surveys?release={}", cx.release)).await?;
    let mut waves = Vec::new();
    for survey in listing.get("surveys").and_then(Value::as_array).into_iter().flatten() {
        let name = survey.get("survey").and_then(Value::as_str).unwrap_or_default();
        for wave in survey.get("waves").and_then(Value::as_array).into_iter().flatten() {
            let from =
                wave.pointer("/reference_period/from").and_then(Value::as_str).unwrap_or_default();
            let to =
                wave.pointer("/reference_period/to").and_then(Value::as_str).unwrap_or_default();
            let (y0, y1) = (
                from.get(..4).and_then(|y| y.parse::<i32>().ok()),
                to.get(..4).and_then(|y| y.parse::<i32>().ok()),
            );
            let closed = wave.get("final_weights").and_then(Value::as_bool).unwrap_or(false)
                || wave.get("status").and_then(Value::as_str) == Some("closed");
            if closed && y0.is_some_and(|a| a <= year) && y1.is_some_and(|b| b >= year) {
                waves.push((name.to_owned(), wave.clone()));
            }
        }
    }
    if waves.is_empty() {
        doc.notice(format!(
            "No closed survey wave in release {} has a reference period in {year}: the survey section will be \
             filled once a wave covering {year} is closed and released.",
            cx.release
        ));
        return Ok(());
    }
    let mut table = Table::new(
        "survey",
        format!(
            "Victimisation, reporting and recorded incidents, {year} (survey {})",
            waves
                .iter()
                .map(|(s, w)| format!(
                    "{s}, wave {}",
                    w.get("wave").and_then(Value::as_str).unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        &[
            "item",
            "prevalence (%)",
            "95 % CI (%)",
            "victims (estimate)",
            "reporting rate (%)",
            "95 % CI (%) ",
            "recorded offences",
            "recorded per victim",
        ],
    );
    for (survey, wave) in &waves {
        let wave_id = wave.get("wave").and_then(Value::as_str).unwrap_or_default();
        for item in wave.get("items").and_then(Value::as_array).into_iter().flatten() {
            let item = item.as_str().unwrap_or_default();
            let request = format!(
                "/v1/surveys/{survey}/dark-figure?wave={wave_id}&item={item}&unit=offence&release={}",
                cx.release
            );
            let answer = source.get(&request).await?;
            let estimates = answer.get("survey_estimates").cloned().unwrap_or(Value::Null);
            let pct = |v: Option<f64>| v.map(|x| x * 100.0);
            let interval = |e: &Value| match (num_of(e, "ci_lower"), num_of(e, "ci_upper")) {
                (Some(a), Some(b)) => Cell::text(format!(
                    "{} to {}",
                    Cell::num(a * 100.0, 1).display(),
                    Cell::num(b * 100.0, 1).display()
                )),
                _ => Cell::Empty,
            };
            let prevalence = &estimates["prevalence"];
            let rate = &estimates["reporting_rate"];
            let recorded = answer.pointer("/recorded_incidents/count").and_then(Value::as_i64);
            let per_victim = answer
                .pointer("/recorded_incidents/by_unit/0/recorded_per_estimated_victim")
                .and_then(Value::as_f64);
            let label = answer.pointer("/item/label").and_then(Value::as_str).unwrap_or(item);
            table.push(vec![
                Cell::text(label),
                Cell::opt_num(pct(num_of(prevalence, "estimate")), 1),
                interval(prevalence),
                Cell::opt_num(num_of(&estimates["victims"], "estimate"), 0),
                Cell::opt_num(pct(num_of(rate, "estimate")), 1),
                interval(rate),
                Cell::opt_int(recorded),
                Cell::opt_num(per_victim, 2),
            ]);
            table.sources.push(request);
            if let Some(caveats) = answer.get("caveats").and_then(Value::as_array)
                && table.notes.is_empty()
            {
                table.notes.extend(caveats.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
    }
    doc.paragraph(
        "Survey estimates come from a sample and carry sampling error (95 % confidence intervals beside them); a \
         domain with fewer than 10 respondents is withheld. The survey counts victims (once however often they \
         were victimised, whether or not they reported); agencies count recorded offences: the two units differ, \
         so the gap between them is an order of magnitude of the dark figure, not a measure of it.",
    );
    doc.add_table(table);
    Ok(())
}
