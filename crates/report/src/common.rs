//! What both kinds of report share: the release's description, coverage, changes and their
//! wording, labels from the reference data, the methods box and the revisions table.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::ReportError;
use crate::document::{Block, Document, ReleaseInfo};
use crate::period::Month;
use crate::source::{Source, str_of};
use crate::table::{Cell, Table};

pub const PROVISIONAL_NOTE: &str = "Provisional: at least one agency has not yet declared the month complete \
    (POST /v1/periods/close); the figure may still rise as late records arrive. Final: every agency sending \
    this kind of record closed the month.";

/// What every section needs to know: the release asked for and its disclosure metadata.
#[derive(Debug, Clone)]
pub struct Context {
    pub release: String,
    pub disclosure: Option<Value>,
}

impl Context {
    /// The perturbation note for a table of public counts.
    pub fn perturbation_note(&self) -> Option<String> {
        let d = self.disclosure.as_ref()?;
        (d.get("method").and_then(Value::as_str) == Some("cell-key")).then(|| {
            format!(
                "Public figures: counts perturbed by the cell-key method (noise at most ±{}, no count published in 1..{}); \
                 a total is perturbed on its own, so parts need not add up to it.",
                d.get("D").and_then(Value::as_i64).unwrap_or(0),
                d.get("js").and_then(Value::as_i64).unwrap_or(0)
            )
        })
    }
}

/// What the agencies said about a month, from `/v1/coverage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonthStatus {
    /// Every source closed it: a missing row is a final zero.
    Closed,
    /// Some source sent or closed something, not every one closed it: provisional.
    Open,
    /// No source covers it (before the feeds began): no figure, not a zero.
    Missing,
}

/// `/v1/coverage` over a month range: which months every source has closed.
pub struct Coverage {
    pub request: String,
    months: BTreeMap<String, (bool, bool)>,
}

impl Coverage {
    pub async fn read(
        source: &impl Source,
        release: &str,
        from: Month,
        to: Month,
    ) -> Result<Coverage, ReportError> {
        let request =
            format!("/v1/coverage?from={}&to={}&release={release}", from.code(), to.code());
        let answer = source.get(&request).await?;
        // Per month: (every source closed it, some source covers it).
        let mut months: BTreeMap<String, (bool, bool)> = BTreeMap::new();
        for row in answer.get("coverage").and_then(Value::as_array).into_iter().flatten() {
            let Some(row) = row.as_object() else { continue };
            let entry = months.entry(str_of(row, "month").to_owned()).or_insert((true, false));
            let status = str_of(row, "status");
            entry.0 &= status == "closed";
            entry.1 |= status != "missing";
        }
        Ok(Coverage { request, months })
    }

    pub fn status(&self, month: Month) -> MonthStatus {
        match self.months.get(&month.code()) {
            Some((true, _)) => MonthStatus::Closed,
            Some((false, true)) => MonthStatus::Open,
            _ => MonthStatus::Missing,
        }
    }
}

/// A published monthly figure: the row's count and flag, or what coverage says of a month
/// without a row (a final zero, a provisional zero, or no figure at all).
pub fn month_figure(
    rows: &crate::source::Rows,
    coverage: &Coverage,
    month: Month,
) -> (Option<i64>, &'static str) {
    match rows.find("month", &month.code()) {
        Some(row) => {
            let provisional = row.get("provisional") == Some(&Value::Bool(true));
            (crate::source::int_of(row, "count"), if provisional { "provisional" } else { "final" })
        }
        None => match coverage.status(month) {
            MonthStatus::Closed => (Some(0), "final"),
            MonthStatus::Open => (Some(0), "provisional"),
            MonthStatus::Missing => (None, "no data"),
        },
    }
}

/// A change between two published figures.
pub struct Change {
    pub what: &'static str,
    pub period: String,
    pub base_period: String,
    pub value: (i64, bool),
    pub base: (i64, bool),
}

impl Change {
    pub fn new(
        what: &'static str,
        period: impl Into<String>,
        base_period: impl Into<String>,
        value: (i64, bool),
        base: (i64, bool),
    ) -> Change {
        Change { what, period: period.into(), base_period: base_period.into(), value, base }
    }

    fn provisional(&self) -> bool {
        self.value.1 || self.base.1
    }

    pub fn sentence(&self) -> String {
        let mark = if self.provisional() { " (p)" } else { "" };
        match percent(self.value.0, self.base.0) {
            Some(p) => format!("{} {}{mark}", signed(p), self.what),
            None => format!("no comparison {} (no figure then)", self.what),
        }
    }

    pub fn row(&self) -> Vec<Cell> {
        let mark = if self.provisional() { " (p)" } else { "" };
        vec![
            Cell::text(self.what),
            Cell::text(format!("{}{mark}", self.period)),
            Cell::Int(self.value.0),
            Cell::text(&self.base_period),
            Cell::Int(self.base.0),
            change_cell(self.value.0, self.base.0),
        ]
    }
}

pub fn percent(value: i64, base: i64) -> Option<f64> {
    (base != 0).then(|| (value - base) as f64 / base as f64 * 100.0)
}

fn signed(p: f64) -> String {
    let shown = Cell::num(p.abs(), 1).display();
    if shown == "0.0" {
        "0.0 %".to_owned()
    } else if p > 0.0 {
        format!("+{shown} %")
    } else {
        format!("−{shown} %")
    }
}

pub fn change_cell(value: i64, base: i64) -> Cell {
    Cell::opt_num(percent(value, base), 1)
}

/// A code's label from the reference data (ICCS, geography) or a readable form of the value.
pub fn label(dimension: &str, code: &str) -> String {
    match dimension {
        "iccs" | "iccs_section" | "iccs_division" | "iccs_group" => {
            observatory_reference::Iccs::v1_0()
                .get(code)
                .map_or_else(|| code.to_owned(), |e| e.label.clone())
        }
        "departement" => observatory_reference::Geography::france()
            .departement(code)
            .map_or_else(|| code.to_owned(), |d| d.name.clone()),
        "region" => observatory_reference::Geography::france()
            .region(code)
            .map_or_else(|| code.to_owned(), |r| r.name.clone()),
        _ => match code {
            "sms" => "SMS".to_owned(),
            "public_body" => "Public body".to_owned(),
            _ => {
                let text = code.replace('_', " ");
                let mut chars = text.chars();
                chars.next().map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
            }
        },
    }
}

/// `GET /v1/releases/{id}`.
pub async fn release(source: &impl Source, id: &str) -> Result<(ReleaseInfo, Value), ReportError> {
    let answer = source.get(&format!("/v1/releases/{id}")).await?;
    let info = ReleaseInfo {
        id: answer.get("id").and_then(Value::as_str).unwrap_or(id).to_owned(),
        name: answer.get("name").and_then(Value::as_str).map(str::to_owned),
        created_at: answer
            .get("created_at")
            .and_then(Value::as_str)
            .ok_or_else(|| ReportError::Answer(format!("release {id} has no created_at")))?
            .to_owned(),
    };
    Ok((info, answer))
}

/// The methods box: where every number comes from and how it was treated.
pub fn methods(doc: &Document, release: &Value, cx: &Context, population: Option<&str>) -> Block {
    let mut items = vec![(
        "Release".to_owned(),
        format!(
            "{}{} (committed {})",
            doc.release.id,
            doc.release.name.as_deref().map(|n| format!(", \"{n}\"")).unwrap_or_default(),
            doc.release.created_at
        ),
    )];
    if let Some(projections) = release.get("projections").and_then(Value::as_object) {
        for (name, p) in projections {
            items.push((
                format!("Stream sequence ({name})"),
                format!(
                    "{} (projection version {})",
                    p.get("sequence").and_then(Value::as_u64).unwrap_or(0),
                    p.get("version").and_then(Value::as_u64).unwrap_or(0)
                ),
            ));
            if let Some(reference) = p.get("reference").and_then(Value::as_object) {
                let pins: Vec<String> = reference
                    .iter()
                    .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or_default()))
                    .collect();
                if !pins.is_empty() {
                    items.push((format!("Reference data ({name})"), pins.join(", ")));
                }
            }
        }
    }
    items.push((
        "Population".to_owned(),
        population.map_or_else(
            || "INSEE legal populations (not used in this report)".to_owned(),
            |p| format!("INSEE legal populations, {p}"),
        ),
    ));
    items.push((
        "Disclosure control".to_owned(),
        match cx.disclosure.as_ref() {
            Some(d) if d.get("method").and_then(Value::as_str) == Some("cell-key") => format!(
                "cell-key method, perturbation table {} (D = {}, V = {}, js = {}); losses published only \
                 for counts of 10 or more; survey domains under 10 respondents withheld",
                d.get("ptable").and_then(Value::as_str).unwrap_or("?"),
                d.get("D").and_then(Value::as_i64).unwrap_or(0),
                d.get("V").and_then(Value::as_f64).map_or("?".to_owned(), |v| Cell::num(v, 0).display()),
                d.get("js").and_then(Value::as_i64).unwrap_or(0),
            ),
            Some(d) => d.to_string(),
            None => "none stated".to_owned(),
        },
    ));
    items.push(("Provisional".to_owned(), PROVISIONAL_NOTE.to_owned()));
    items.push((
        "Counting".to_owned(),
        "Incidents by month of occurrence, classified in ICCS 1.0 through each agency's crosswalk; offences, \
         victims and platform reports are separate units and never added. Series are raw, not seasonally \
         adjusted; changes are computed from the published (perturbed) figures."
            .to_owned(),
    ));
    Block::Facts { title: "Methods".to_owned(), items }
}

/// The revisions table: every cell this report shares with the same report built from the
/// previous release of its kind whose published value differs, with both values.
pub fn revisions(current: &Document, previous: Option<&Document>) -> Table {
    let mut table = Table::new(
        "revisions",
        "Revisions since the previous release",
        &["table", "row", "column", "previous", "now"],
    );
    let Some(previous) = previous else {
        table.notes.push("No earlier report of this kind: nothing to compare with.".to_owned());
        return table;
    };
    table.notes.push(format!(
        "Cells whose published value differs from the same cell built from release {} (the release of the \
         previous report of this kind).",
        previous.release.id
    ));
    for now in &current.tables {
        let Some(then) = previous.table(&now.id) else { continue };
        let index = |t: &Table| -> BTreeMap<String, Vec<Cell>> {
            t.rows
                .iter()
                .map(|r| (r.first().map(Cell::csv).unwrap_or_default(), r.clone()))
                .collect()
        };
        let (before, after) = (index(then), index(now));
        let keys: BTreeSet<&String> = before.keys().filter(|k| after.contains_key(*k)).collect();
        for key in keys {
            for (c, column) in now.columns.iter().enumerate().skip(1) {
                let Some(ci) = then.columns.iter().position(|x| x == column) else { continue };
                let (a, b) = (&before[key][ci], &after[key][c]);
                let numeric = |x: &Cell| matches!(x, Cell::Int(_) | Cell::Num { .. } | Cell::Empty);
                if numeric(a) && numeric(b) && a != b {
                    table.push(vec![
                        Cell::text(&now.title),
                        Cell::text(key),
                        Cell::text(column),
                        a.clone(),
                        b.clone(),
                    ]);
                }
            }
        }
    }
    if table.rows.is_empty() {
        table.notes.push("No published value changed.".to_owned());
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_worded_with_their_sign_and_provisional_mark() {
        assert_eq!(
            Change::new("on the month", "a", "b", (110, false), (100, false)).sentence(),
            "+10.0 % on the month"
        );
        assert_eq!(
            Change::new("on the month", "a", "b", (90, true), (100, false)).sentence(),
            "−10.0 % on the month (p)"
        );
        assert!(
            Change::new("on the month", "a", "b", (5, false), (0, false))
                .sentence()
                .contains("no comparison on the month")
        );
        assert_eq!(change_cell(5, 0), Cell::Empty);
        assert_eq!(label("channel", "sms"), "SMS");
        assert_eq!(label("channel", "social_network"), "Social network");
        assert_eq!(label("departement", "2A"), "Corse-du-Sud");
    }
}
