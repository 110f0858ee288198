//! Victimisation items: the derived columns an item's statistics need (victim, reported), the
//! victims' domain of an estimate, and the estimation request a wave's design gives.

use observatory_model::survey::VictimisationItem;
use observatory_stats::{
    CiMethod, Estimate, EstimateRequest, LonelyPsu, StatisticSpec, StatsError, Table,
};

use super::engine::WaveInfo;
use super::error::SurveyQueryError;

/// Derived columns never clash with declared variables, whose names start with a letter.
pub(super) const VICTIM: &str = "__victim";
pub(super) const REPORTED: &str = "__reported";
pub(super) const VICTIMS: &str = "__victims";
pub(super) const REPORTED_VICTIMS: &str = "__reported_victims";

impl WaveInfo {
    /// The victimisation item `name` of the wave; without a name, its only item.
    pub(super) fn item(&self, name: Option<&str>) -> Result<VictimisationItem, SurveyQueryError> {
        let items = &self.declaration.victimisation_items;
        let names = || items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ");
        match name {
            Some(name) => self.declaration.item(name).cloned().ok_or_else(|| {
                SurveyQueryError::BadRequest(format!(
                    "item='{name}' is not a victimisation item of this wave; declared: {}",
                    names()
                ))
            }),
            None if items.len() == 1 => Ok(items[0].clone()),
            None if items.is_empty() => Err(SurveyQueryError::BadRequest(format!(
                "wave '{}' of '{}' declares no victimisation item",
                self.wave, self.survey
            ))),
            None => Err(SurveyQueryError::BadRequest(format!(
                "item= is required; the wave declares: {}",
                names()
            ))),
        }
    }
}

/// The request `observatory estimate` builds from its flags, with the design flags taken from
/// the wave's declaration (and the closure's final weights).
pub fn estimate_request(
    wave: &WaveInfo,
    statistics: Vec<StatisticSpec>,
    by: Vec<String>,
    ci: CiMethod,
    level: f64,
) -> EstimateRequest {
    let design = &wave.declaration.design;
    EstimateRequest {
        weights: wave.weights(),
        strata: design.strata.clone(),
        clusters: design.clusters.clone(),
        fpc: design.fpc.clone(),
        lonely_psu: design
            .lonely_psu
            .and_then(|rule| rule.as_str().parse::<LonelyPsu>().ok())
            .unwrap_or(LonelyPsu::Fail),
        statistics,
        by,
        ci,
        level,
        // Intervals reaching outside what the declaration allows are flagged.
        ranges: wave
            .declaration
            .variables
            .iter()
            .filter(|v| v.min.is_some() || v.max.is_some())
            .map(|v| (v.name.clone(), (v.min, v.max)))
            .collect(),
        ..Default::default()
    }
}

/// Per row: `Some(true)` when `column` holds `value`, `Some(false)` for another value, `None`
/// when missing. Numeric columns (integer variables) compare by number.
pub fn indicator(
    table: &Table,
    column: &str,
    value: &str,
) -> Result<Vec<Option<bool>>, StatsError> {
    let column = table.require(column, "victimisation item")?;
    let wanted = value.parse::<f64>().ok();
    Ok((0..table.n_rows())
        .map(|row| match column.numeric() {
            Some(values) if values[row].is_nan() => None,
            Some(values) => Some(wanted == Some(values[row])),
            None => column.text(row).map(|t| t == value),
        })
        .collect())
}

fn as_number(flag: Option<bool>) -> f64 {
    match flag {
        Some(true) => 1.0,
        Some(false) => 0.0,
        None => f64::NAN,
    }
}

/// Adds the columns the item statistics need: `__victim` (yes/no, a domain), `__reported`
/// (1/0 for victims answering the follow-up, 0 for non-victims), `__victims` (1/0) and `__reported_victims` (1 for
/// a victim who reported, 0 for a non-victim or a victim who did not, missing when unknown).
pub fn with_item_columns(table: &Table, item: &VictimisationItem) -> Result<Table, StatsError> {
    let victim = indicator(table, &item.victim, &item.victim_value)?;
    let reported = match &item.reported {
        Some(column) => indicator(table, column, &item.reported_value)?,
        None => vec![None; table.n_rows()],
    };
    // Non-victims answer 0 rather than missing: the victims' domain estimate is the same,
    // and the other domain stays estimable.
    let reported: Vec<Option<bool>> = victim
        .iter()
        .zip(reported)
        .map(|(v, r)| if *v == Some(false) { Some(false) } else { r })
        .collect();
    let mut out = table.clone();
    let labels: Vec<Option<&str>> =
        victim.iter().map(|v| v.map(|v| if v { "yes" } else { "no" })).collect();
    out.add_text(VICTIM, &labels)?;
    out.add_numeric(REPORTED, reported.iter().map(|r| as_number(*r)).collect())?;
    out.add_numeric(VICTIMS, victim.iter().map(|v| as_number(*v)).collect())?;
    let reported_victims = victim
        .iter()
        .zip(&reported)
        .map(|(v, r)| match (v, r) {
            (Some(false), _) => 0.0,
            (Some(true), r) => as_number(*r),
            (None, _) => f64::NAN,
        })
        .collect();
    out.add_numeric(REPORTED_VICTIMS, reported_victims)?;
    Ok(out)
}

/// Keeps the estimates of the victims' domain and drops the helper column from their domain.
pub(super) fn victims_domain(
    estimates: Vec<Estimate>,
    statistic: &str,
    variable: &str,
) -> Vec<Estimate> {
    estimates
        .into_iter()
        .filter(|e| e.domain.as_ref().and_then(|d| d.get(VICTIM)) == Some("yes"))
        .map(|mut e| {
            if let Some(domain) = e.domain.as_mut() {
                domain.0.retain(|(column, _)| column != VICTIM);
            }
            if e.domain.as_ref().is_some_and(|d| d.0.is_empty()) {
                e.domain = None;
            }
            e.statistic = statistic.to_owned();
            e.variable = variable.to_owned();
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> VictimisationItem {
        serde_json::from_str(r#"{"name":"fraud","victim":"v","reported":"r","iccs":"0701"}"#)
            .unwrap()
    }

    #[test]
    fn item_columns_follow_the_skip_pattern() {
        let mut table = Table::new();
        table.add_text("v", &[Some("yes"), Some("yes"), Some("no"), None, Some("yes")]).unwrap();
        table.add_text("r", &[Some("yes"), Some("no"), None, None, None]).unwrap();
        let out = with_item_columns(&table, &item()).unwrap();
        let col = |name: &str| out.column(name).unwrap().numeric().unwrap().to_vec();
        let same = |a: Vec<f64>, b: [f64; 5]| {
            a.iter().zip(b).all(|(x, y)| (x.is_nan() && y.is_nan()) || *x == y)
        };
        assert!(same(col(VICTIMS), [1.0, 1.0, 0.0, f64::NAN, 1.0]));
        assert!(same(col(REPORTED), [1.0, 0.0, 0.0, f64::NAN, f64::NAN]));
        assert!(same(col(REPORTED_VICTIMS), [1.0, 0.0, 0.0, f64::NAN, f64::NAN]));
        let victim = out.column(VICTIM).unwrap();
        assert_eq!(victim.text(2).as_deref(), Some("no"));
        assert!(victim.is_missing(3));
    }

    #[test]
    fn integer_items_compare_by_number() {
        let mut table = Table::new();
        table.add_numeric("v", vec![1.0, 0.0, f64::NAN]).unwrap();
        assert_eq!(indicator(&table, "v", "1").unwrap(), vec![Some(true), Some(false), None]);
    }
}
