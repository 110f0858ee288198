//! The declaration and row builders the survey module's tests share.

use super::{Cell, SurveyWaveDeclared};

pub(super) fn declaration() -> SurveyWaveDeclared {
    serde_json::from_str(
        r#"{"survey":"cvs","wave":"2024","population":"households",
            "reference_period":{"from":"2024-01-01","to":"2024-12-31"},"respondent_id":"hh",
            "design":{"weights":"w","strata":"region","clusters":["psu"]},
            "variables":[{"name":"region","type":"categorical","values":["11","84"]},
                         {"name":"psu","type":"integer"},{"name":"w","type":"numeric","min":0},
                         {"name":"victim","type":"categorical","values":["yes","no"],"required":true},
                         {"name":"reported","type":"categorical","values":["yes","no"]},
                         {"name":"age","type":"integer","min":15,"max":120}],
            "victimisation_items":[{"name":"fraud","victim":"victim","reported":"reported","iccs":"0701"}]}"#,
    )
    .unwrap()
}

pub(super) fn csv_row(pairs: &[(&str, &str)]) -> Vec<(String, Option<Cell>)> {
    pairs.iter().map(|(k, v)| (k.to_string(), Some(Cell::Text(v.to_string())))).collect()
}
