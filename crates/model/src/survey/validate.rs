//! What a declaration, a batch or a closure must satisfy on its own: id rules, a declaration's
//! variables, design and victimisation items, and the shape of a batch or of final weights.
//! Rows against their declaration are checked in [`super::row`]; what depends on earlier events
//! (ownership, duplicates, closure) in [`super::ledger`].

use std::collections::HashSet;

use super::events::{
    Cell, FINAL_WEIGHT_COLUMN, SurveyResponsesRecorded, SurveyWaveClosed, SurveyWaveDeclared,
    VariableType,
};
use crate::validate::FieldError;

const MAX_VARIABLES: usize = 2_000;
const MAX_LABEL_LEN: usize = 500;
const MAX_VALUE_LEN: usize = 200;
const MAX_STAGES: usize = 4;

/// Whether `id` may name a survey: it becomes a URL segment and an object-store path segment.
pub fn is_valid_survey_id(id: &str) -> bool {
    is_slug(id, 64)
}

/// Whether `id` may name a wave (same alphabet as survey ids, e.g. `2024`, `2024-t1`).
pub fn is_valid_wave_id(id: &str) -> bool {
    is_slug(id, 32)
}

fn is_slug(id: &str, max: usize) -> bool {
    !id.is_empty()
        && id.len() <= max
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Variable names are kept to what survey software exports (`api00`, `sch.wide`, `acs_k3`):
/// a letter, then letters, digits, `_`, `.` or `-`.
pub fn is_valid_variable_name(name: &str) -> bool {
    name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl SurveyWaveDeclared {
    /// Every problem of the declaration, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut fail = |field: String, error: String| errors.push(FieldError { field, error });
        if !is_valid_survey_id(&self.survey) {
            fail(
                "survey".into(),
                format!(
                    "'{}' is not a survey id: use 1 to 64 lowercase letters, digits, '-' or '_'",
                    self.survey
                ),
            );
        }
        if !is_valid_wave_id(&self.wave) {
            fail(
                "wave".into(),
                format!(
                    "'{}' is not a wave id: use 1 to 32 lowercase letters, digits, '-' or '_' (e.g. \"2024\")",
                    self.wave
                ),
            );
        }
        if self.title.as_ref().is_some_and(|t| t.len() > MAX_LABEL_LEN) {
            fail("title".into(), format!("at most {MAX_LABEL_LEN} bytes"));
        }
        if self.reference_period.to < self.reference_period.from {
            fail(
                "reference_period.to".into(),
                format!(
                    "{} is before reference_period.from {}",
                    self.reference_period.to, self.reference_period.from
                ),
            );
        }
        if !is_valid_variable_name(&self.respondent_id) {
            fail(
                "respondent_id".into(),
                format!(
                    "'{}' is not a column name (a letter, then letters, digits, '_', '.', '-'; at most 64)",
                    self.respondent_id
                ),
            );
        }
        if self.variables.is_empty() {
            fail("variables".into(), "declare at least one variable".into());
        }
        if self.variables.len() > MAX_VARIABLES {
            fail(
                "variables".into(),
                format!("{} variables; at most {MAX_VARIABLES}", self.variables.len()),
            );
        }
        let mut seen = HashSet::new();
        for (i, v) in self.variables.iter().enumerate() {
            let at = |field: &str| format!("variables[{i}].{field}");
            if !is_valid_variable_name(&v.name) {
                fail(
                    at("name"),
                    format!(
                        "'{}' is not a variable name (a letter, then letters, digits, '_', '.', '-'; at most 64)",
                        v.name
                    ),
                );
            } else if !seen.insert(v.name.as_str()) {
                fail(at("name"), format!("'{}' is declared twice", v.name));
            } else if v.name == self.respondent_id {
                fail(
                    at("name"),
                    format!(
                        "'{}' is the respondent_id column; do not declare it as a variable",
                        v.name
                    ),
                );
            } else if v.name == FINAL_WEIGHT_COLUMN {
                fail(
                    at("name"),
                    format!(
                        "'{FINAL_WEIGHT_COLUMN}' is reserved for the final weights of the closure"
                    ),
                );
            }
            if v.label.as_ref().is_some_and(|l| l.len() > MAX_LABEL_LEN) {
                fail(at("label"), format!("at most {MAX_LABEL_LEN} bytes"));
            }
            match v.kind {
                VariableType::Categorical => {
                    if v.values.is_empty() {
                        fail(
                            at("values"),
                            "a categorical variable lists its allowed values".into(),
                        );
                    }
                    let mut distinct = HashSet::new();
                    for value in &v.values {
                        if value.is_empty() || value.len() > MAX_VALUE_LEN {
                            fail(
                                at("values"),
                                format!("'{value}': values are 1 to {MAX_VALUE_LEN} bytes"),
                            );
                        } else if !distinct.insert(value) {
                            fail(at("values"), format!("'{value}' is listed twice"));
                        }
                    }
                }
                _ if !v.values.is_empty() => {
                    fail(
                        at("values"),
                        format!(
                            "only categorical variables list values; '{}' is {}",
                            v.name, v.kind
                        ),
                    );
                }
                _ => {}
            }
            let numeric = matches!(v.kind, VariableType::Numeric | VariableType::Integer);
            for (field, bound) in [("min", v.min), ("max", v.max)] {
                match bound {
                    Some(_) if !numeric => fail(
                        at(field),
                        format!(
                            "only numeric and integer variables have bounds; '{}' is {}",
                            v.name, v.kind
                        ),
                    ),
                    Some(b) if !b.is_finite() => fail(at(field), "must be a finite number".into()),
                    _ => {}
                }
            }
            if let (Some(min), Some(max)) = (v.min, v.max)
                && min > max
            {
                fail(at("max"), format!("{max} is below min {min}"));
            }
        }

        let known = |name: &str| name == self.respondent_id || self.variable(name).is_some();
        let numeric = |name: &str| {
            self.variable(name)
                .is_some_and(|v| matches!(v.kind, VariableType::Numeric | VariableType::Integer))
        };
        if let Some(w) = &self.design.weights
            && !numeric(w)
        {
            fail(
                "design.weights".into(),
                format!("'{w}' is not a declared numeric or integer variable"),
            );
        }
        if let Some(s) = &self.design.strata
            && !known(s)
        {
            fail("design.strata".into(), format!("'{s}' is not a declared variable"));
        }
        if self.design.clusters.len() > MAX_STAGES {
            fail(
                "design.clusters".into(),
                format!("{} stages; at most {MAX_STAGES}", self.design.clusters.len()),
            );
        }
        for (i, c) in self.design.clusters.iter().enumerate() {
            if !known(c) {
                fail(format!("design.clusters[{i}]"), format!("'{c}' is not a declared variable"));
            }
        }
        for (i, f) in self.design.fpc.iter().enumerate() {
            if !numeric(f) {
                fail(
                    format!("design.fpc[{i}]"),
                    format!("'{f}' is not a declared numeric or integer variable"),
                );
            }
        }
        if self.design.fpc.len() > self.design.clusters.len().max(1) {
            fail(
                "design.fpc".into(),
                format!(
                    "{} fpc columns for {} sampling stages; give at most one per stage",
                    self.design.fpc.len(),
                    self.design.clusters.len().max(1)
                ),
            );
        }

        let mut names = HashSet::new();
        for (i, item) in self.victimisation_items.iter().enumerate() {
            let at = |field: &str| format!("victimisation_items[{i}].{field}");
            if !is_valid_variable_name(&item.name) {
                fail(
                    at("name"),
                    format!(
                        "'{}' is not an item name (a letter, then letters, digits, '_', '.', '-')",
                        item.name
                    ),
                );
            } else if !names.insert(item.name.as_str()) {
                fail(at("name"), format!("'{}' is declared twice", item.name));
            }
            if item.label.as_ref().is_some_and(|l| l.len() > MAX_LABEL_LEN) {
                fail(at("label"), format!("at most {MAX_LABEL_LEN} bytes"));
            }
            if let Err(error) = self.indicator_check(&item.victim, &item.victim_value) {
                fail(at("victim"), error);
            }
            if let Some(reported) = &item.reported {
                if reported == &item.victim {
                    fail(
                        at("reported"),
                        "the follow-up must be another variable than the victimisation question"
                            .into(),
                    );
                } else if let Err(error) = self.indicator_check(reported, &item.reported_value) {
                    fail(at("reported"), error);
                }
            }
            if !((2..=6).contains(&item.iccs.len())
                && item.iccs.bytes().all(|b| b.is_ascii_digit()))
            {
                fail(
                    at("iccs"),
                    format!("'{}' is not an ICCS code (2 to 6 digits, e.g. \"0701\")", item.iccs),
                );
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// An item's question must be categorical with `value` allowed, or integer with `value` an integer.
    fn indicator_check(&self, name: &str, value: &str) -> Result<(), String> {
        let Some(variable) = self.variable(name) else {
            return Err(format!("'{name}' is not a declared variable"));
        };
        match variable.kind {
            VariableType::Categorical if variable.values.iter().any(|v| v == value) => Ok(()),
            VariableType::Categorical => Err(format!(
                "'{value}' is not an allowed value of '{name}' ({})",
                variable.values.join(", ")
            )),
            VariableType::Integer if value.parse::<i64>().is_ok() => Ok(()),
            other => Err(format!(
                "'{name}' is {other}; an item needs a categorical variable (or an integer one with an integer value)"
            )),
        }
    }
}

fn valid_respondent_id(id: &str) -> bool {
    !id.trim().is_empty() && id.len() <= crate::MAX_ID_LEN && !id.chars().any(char::is_control)
}

impl SurveyResponsesRecorded {
    /// What holds without the declaration: ids and names well formed, at least one row.
    pub fn validate_shape(&self) -> Result<(), String> {
        if !is_valid_survey_id(&self.survey) || !is_valid_wave_id(&self.wave) {
            return Err(format!("'{}'/'{}' is not a survey/wave id", self.survey, self.wave));
        }
        if self.rows.is_empty() {
            return Err("a batch holds at least one row".into());
        }
        for (i, row) in self.rows.iter().enumerate() {
            if !valid_respondent_id(&row.respondent_id) {
                return Err(format!(
                    "rows[{i}].respondent_id is empty, too long or has a control character"
                ));
            }
            if let Some(name) = row.values.keys().find(|n| !is_valid_variable_name(n)) {
                return Err(format!("rows[{i}].values: '{name}' is not a variable name"));
            }
            if row.values.values().any(|c| matches!(c, Cell::Number(x) if !x.is_finite())) {
                return Err(format!("rows[{i}].values: numbers must be finite"));
            }
        }
        Ok(())
    }
}

impl SurveyWaveClosed {
    /// What holds without the ledger: ids well formed, weights positive and finite.
    pub fn validate_shape(&self) -> Result<(), String> {
        if !is_valid_survey_id(&self.survey) || !is_valid_wave_id(&self.wave) {
            return Err(format!("'{}'/'{}' is not a survey/wave id", self.survey, self.wave));
        }
        for (id, weight) in &self.final_weights {
            if id.is_empty() || id.len() > crate::MAX_ID_LEN {
                return Err(format!("final_weights: respondent id '{id}' is empty or too long"));
            }
            if !(weight.is_finite() && *weight > 0.0) {
                return Err(format!(
                    "final_weights: respondent '{id}': weight {weight} is not a positive finite number"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::survey::fixtures::declaration;

    #[test]
    fn a_good_declaration_passes_and_a_bad_one_names_every_field() {
        declaration().validate().unwrap();
        let mut bad = declaration();
        bad.wave = "Wave 1".into();
        bad.design.weights = Some("region".into());
        bad.design.clusters = vec!["nowhere".into()];
        bad.variables[0].values.clear();
        bad.victimisation_items[0].victim_value = "oui".into();
        bad.victimisation_items[0].iccs = "7".into();
        let errors = bad.validate().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "wave",
            "design.weights",
            "design.clusters[0]",
            "variables[0].values",
            "victimisation_items[0].victim",
            "victimisation_items[0].iccs",
        ] {
            assert!(fields.contains(&f), "{f} missing from {errors:?}");
        }
    }
}
