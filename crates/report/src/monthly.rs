//! The monthly note (after the SSMSI's "Interstats Conjoncture"): recorded cyber offences by
//! month over 25 months, the changes on the month, on the year and over three months, the
//! month by ICCS division and by channel, and platform reports in their own unit.

use crate::chart::{self, Point};
use crate::common::{self, Change, Context};
use crate::period::Month;
use crate::source::{self, Source, str_of};
use crate::table::{Cell, Table};
use crate::{Document, ReportError};

/// Months the national series shows: the period and the 24 before it.
pub const SERIES_MONTHS: i32 = 25;

pub(crate) async fn build(
    source: &impl Source,
    cx: &Context,
    month: Month,
    doc: &mut Document,
) -> Result<(), ReportError> {
    let first = month.plus(1 - SERIES_MONTHS);
    let series = source::counts(
        source,
        &cx.release,
        &format!("by=month&unit=offence&cyber=true&from={}&to={}", first.code(), month.code()),
    )
    .await?;
    if series.rows.is_empty() {
        return Err(ReportError::NoData(format!(
            "release {} has no recorded cyber offence from {} to {}; choose a period the release covers \
             (GET /v1/incidents/counts?by=month&release={} lists its months)",
            cx.release,
            first.code(),
            month.code(),
            cx.release
        )));
    }
    let coverage = common::Coverage::read(source, &cx.release, first, month).await?;
    let months: Vec<Month> = (0..SERIES_MONTHS).map(|i| first.plus(i)).collect();
    // A month without a row is a published zero (provisional unless every source closed it),
    // or no figure at all when no source covers it yet.
    let figure = |m: Month| common::month_figure(&series, &coverage, m);
    let value = |m: Month| -> (i64, bool) {
        let (count, status) = figure(m);
        (count.unwrap_or(0), status != "final")
    };

    if figure(month).1 == "no data" {
        return Err(ReportError::NoData(format!(
            "no agency has sent or closed {} in release {}: there is nothing to report for that month yet \
             (GET /v1/coverage?from={}&to={}&release={} shows which months each agency covers)",
            month.code(),
            cx.release,
            month.code(),
            month.code(),
            cx.release
        )));
    }
    doc.heading(format!("Recorded cyber offences, {}", month.label()));
    let (current, current_p) = value(month);
    let changes = [
        Change::new(
            "on the month",
            month.short_label(),
            month.plus(-1).short_label(),
            value(month),
            value(month.plus(-1)),
        ),
        Change::new(
            "on the same month a year earlier",
            month.short_label(),
            month.plus(-12).short_label(),
            value(month),
            value(month.plus(-12)),
        ),
        Change::new(
            "last three months on the three before",
            format!("{} to {}", month.plus(-2).short_label(), month.short_label()),
            format!("{} to {}", month.plus(-5).short_label(), month.plus(-3).short_label()),
            sum(&value, month.plus(-2), 3),
            sum(&value, month.plus(-5), 3),
        ),
    ];
    doc.paragraph(format!(
        "In {}, the agencies recorded {} cyber offences{}: {}.",
        month.label(),
        Cell::Int(current).display(),
        if current_p { " (provisional)" } else { "" },
        changes.iter().map(Change::sentence).collect::<Vec<_>>().join("; ")
    ));

    let points: Vec<Point> = months
        .iter()
        .map(|m| {
            let (count, status) = figure(*m);
            Point {
                label: m.short_label(),
                value: count.map(|c| c as f64),
                provisional: status == "provisional",
            }
        })
        .collect();
    doc.add_figure(
        "national_series",
        format!("Recorded cyber offences by month, France, {} to {}", first.label(), month.label()),
        chart::line("Recorded cyber offences by month", &points, 6),
    );

    let mut table = Table::new(
        "national_series",
        "Recorded cyber offences by month, France",
        &["month", "offences", "status"],
    );
    for m in &months {
        let (count, status) = figure(*m);
        table.push(vec![Cell::text(m.code()), Cell::opt_int(count), Cell::text(status)]);
    }
    table.notes.push(common::PROVISIONAL_NOTE.to_owned());
    table.notes.extend(cx.perturbation_note());
    table.sources.push(series.request.clone());
    table.sources.push(coverage.request.clone());
    doc.add_table(table);

    let mut table = Table::new(
        "changes",
        "Changes in recorded cyber offences",
        &["comparison", "period", "offences", "compared with", "offences then", "change (%)"],
    );
    for c in &changes {
        table.push(c.row());
    }
    table.notes.push("Changes are computed from the published monthly figures; a change involving a provisional month is marked (p) and may be revised.".to_owned());
    table.sources.push(series.request.clone());
    doc.add_table(table);

    doc.heading("By category of offence and by channel");
    for (by, id, title, label) in [
        (
            "iccs_division",
            "by_iccs_division",
            "Recorded cyber offences by ICCS division",
            "ICCS division",
        ),
        ("channel", "by_channel", "Recorded cyber offences by channel", "channel"),
    ] {
        let now = source::counts(
            source,
            &cx.release,
            &format!("by={by}&unit=offence&cyber=true&from={0}&to={0}", month.code()),
        )
        .await?;
        let then = source::counts(
            source,
            &cx.release,
            &format!("by={by}&unit=offence&cyber=true&from={0}&to={0}", month.plus(-12).code()),
        )
        .await?;
        let (now_label, then_label) = (month.short_label(), month.plus(-12).short_label());
        let columns = ["code", label, now_label.as_str(), then_label.as_str(), "change (%)"];
        let mut table = Table::new(id, format!("{title}, {}", month.label()), &columns);
        let mut codes: Vec<String> =
            now.rows.iter().chain(&then.rows).map(|r| str_of(r, by).to_owned()).collect();
        codes.sort();
        codes.dedup();
        for code in codes {
            let a = now.count_where(by, &code).unwrap_or(0);
            let b = then.count_where(by, &code).unwrap_or(0);
            table.push(vec![
                Cell::text(&code),
                Cell::text(common::label(by, &code)),
                Cell::Int(a),
                Cell::Int(b),
                common::change_cell(a, b),
            ]);
        }
        table.notes.push(
            "Each row is perturbed on its own: rows need not add up to the national total."
                .to_owned(),
        );
        table.sources.push(now.request.clone());
        table.sources.push(then.request.clone());
        doc.add_table(table);
    }

    doc.heading("Reports to online platforms");
    let first_reports = month.plus(-12);
    let reports = source::counts(
        source,
        &cx.release,
        &format!("by=month&unit=report&from={}&to={}", first_reports.code(), month.code()),
    )
    .await?;
    doc.paragraph(
        "Platform reports are counted in their own unit (one report, whoever files it and however many offences \
         it describes): they are shown apart and never added to recorded offences.",
    );
    let mut table = Table::new(
        "platform_reports",
        "Reports to online platforms by month",
        &["month", "reports", "status"],
    );
    for m in (0..13).map(|i| first_reports.plus(i)) {
        let (count, status) = common::month_figure(&reports, &coverage, m);
        table.push(vec![Cell::text(m.code()), Cell::opt_int(count), Cell::text(status)]);
    }
    table.notes.push(
        "Unit: report. Not comparable with, and never added to, recorded offences.".to_owned(),
    );
    table.sources.push(reports.request.clone());
    doc.add_table(table);
    Ok(())
}

fn sum(value: &impl Fn(Month) -> (i64, bool), from: Month, n: i32) -> (i64, bool) {
    (0..n).map(|i| value(from.plus(i))).fold((0, false), |(s, p), (v, q)| (s + v, p || q))
}
