//! Splits the accepted rows of an upload into events that each fit in one bus message.

use observatory_model::survey::SurveyRow;

/// Splits rows into batches whose payload stays under `budget` bytes.
pub(super) fn batches(rows: Vec<SurveyRow>, budget: usize) -> Vec<Vec<SurveyRow>> {
    let mut out: Vec<Vec<SurveyRow>> = Vec::new();
    let mut current = Vec::new();
    let mut size = 256;
    for row in rows {
        let row_size = serde_json::to_vec(&row).map(|v| v.len() + 1).unwrap_or(1024);
        if !current.is_empty() && size + row_size > budget {
            out.push(std::mem::take(&mut current));
            size = 256;
        }
        size += row_size;
        current.push(row);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use observatory_model::survey::Cell;

    use super::*;

    #[test]
    fn batches_stay_under_the_budget_and_keep_order() {
        let rows: Vec<SurveyRow> = (0..100)
            .map(|i| SurveyRow {
                respondent_id: format!("R{i:03}"),
                values: [("x".to_owned(), Cell::Integer(i))].into(),
            })
            .collect();
        let split = batches(rows, 1024);
        assert!(split.len() > 1);
        let ids: Vec<String> = split.iter().flatten().map(|r| r.respondent_id.clone()).collect();
        assert_eq!(ids.len(), 100);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(split.iter().all(|b| serde_json::to_vec(b).unwrap().len() <= 1024));
    }
}
