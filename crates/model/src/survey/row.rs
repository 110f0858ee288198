//! One respondent row checked against its wave's declaration: each value read by its declared
//! type (as R reads a CSV cell), bounds and allowed values enforced, design variables required.
//! The ingest checks rows as they arrive, the projector re-checks them as they travelled.

use std::collections::{BTreeMap, HashMap};

use super::events::{Cell, SurveyRow, SurveyVariable, SurveyWaveDeclared, VariableType};
use crate::validate::FieldError;

const MAX_TEXT_LEN: usize = 2_000;

/// Names a cell for an error message.
fn describe(cell: &Cell) -> String {
    match cell {
        Cell::Integer(i) => format!("the number {i}"),
        Cell::Number(x) => format!("the number {x}"),
        Cell::Text(t) if t.chars().count() <= 40 => format!("{t:?}"),
        Cell::Text(_) => "a long text".into(),
    }
}

fn to_number(cell: &Cell) -> Result<Option<f64>, String> {
    match cell {
        Cell::Number(x) => Ok(Some(*x)),
        Cell::Integer(i) => Ok(Some(*i as f64)),
        // A CSV cell: read as R (and `observatory estimate`) read it.
        Cell::Text(t) => {
            let t = t.trim();
            if t.is_empty() || t == "NA" {
                return Ok(None);
            }
            t.parse::<f64>()
                .map(Some)
                .map_err(|_| format!("expected a number, got {}", describe(cell)))
        }
    }
}

fn check_number(variable: &SurveyVariable, cell: &Cell) -> Result<Option<Cell>, String> {
    let Some(x) = to_number(cell)? else {
        return Ok(None);
    };
    if !x.is_finite() {
        return Err(format!("expected a finite number, got {}", describe(cell)));
    }
    let out = if variable.kind == VariableType::Integer {
        if x.fract() != 0.0 || x.abs() >= 9.2e18 {
            return Err(format!("expected an integer, got {}", describe(cell)));
        }
        match cell {
            Cell::Integer(i) => Cell::Integer(*i),
            _ => Cell::Integer(x as i64),
        }
    } else {
        Cell::Number(x)
    };
    if let Some(min) = variable.min.filter(|m| x < *m) {
        return Err(format!("{x} is below the declared minimum {min}"));
    }
    if let Some(max) = variable.max.filter(|m| x > *m) {
        return Err(format!("{x} is above the declared maximum {max}"));
    }
    Ok(Some(out))
}

fn as_text(cell: &Cell) -> String {
    match cell {
        Cell::Text(t) => t.clone(),
        Cell::Integer(i) => i.to_string(),
        Cell::Number(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", *x as i64),
        Cell::Number(x) => x.to_string(),
    }
}

fn check_cell(variable: &SurveyVariable, cell: &Cell) -> Result<Option<Cell>, String> {
    match variable.kind {
        VariableType::Numeric | VariableType::Integer => check_number(variable, cell),
        VariableType::Categorical => {
            let text = as_text(cell);
            if text.is_empty() {
                return Ok(None);
            }
            if variable.values.contains(&text) {
                Ok(Some(Cell::Text(text)))
            } else {
                let mut allowed =
                    variable.values.iter().take(20).cloned().collect::<Vec<_>>().join(", ");
                if variable.values.len() > 20 {
                    allowed.push_str(", …");
                }
                Err(format!("{} is not an allowed value ({allowed})", describe(cell)))
            }
        }
        VariableType::Text => {
            let text = as_text(cell);
            if text.is_empty() {
                Ok(None)
            } else if text.len() > MAX_TEXT_LEN {
                Err(format!("{} bytes long; at most {MAX_TEXT_LEN}", text.len()))
            } else {
                Ok(Some(Cell::Text(text)))
            }
        }
    }
}

/// Checks one respondent row (column → value, from any wire format) against the declared
/// variables, normalising each value to its declared type. Every problem is reported, each
/// naming its column.
pub fn validate_row<I>(
    declaration: &SurveyWaveDeclared,
    cells: I,
) -> Result<SurveyRow, Vec<FieldError>>
where
    I: IntoIterator<Item = (String, Option<Cell>)>,
{
    let mut errors = Vec::new();
    let mut respondent_id = None;
    let mut given: HashMap<String, Cell> = HashMap::new();
    for (name, cell) in cells {
        if name == declaration.respondent_id {
            respondent_id = Some(cell);
        } else if declaration.variable(&name).is_none() {
            let mut list: Vec<&str> =
                declaration.variables.iter().take(20).map(|v| v.name.as_str()).collect();
            if declaration.variables.len() > 20 {
                list.push("…");
            }
            errors.push(FieldError::new(
                &name,
                format!(
                    "not a variable of wave '{}'; declared: {}, {}",
                    declaration.wave,
                    declaration.respondent_id,
                    list.join(", ")
                ),
            ));
        } else if let Some(cell) = cell {
            given.insert(name, cell);
        }
    }
    let id_field = declaration.respondent_id.as_str();
    let respondent_id = match respondent_id.flatten().map(|c| as_text(&c)) {
        None => {
            errors.push(FieldError::new(id_field, "required: the respondent id"));
            None
        }
        Some(id) if id.trim().is_empty() => {
            errors.push(FieldError::new(id_field, "must not be empty"));
            None
        }
        Some(id) if id.len() > crate::MAX_ID_LEN => {
            errors.push(FieldError::new(
                id_field,
                format!("{} bytes long; at most {}", id.len(), crate::MAX_ID_LEN),
            ));
            None
        }
        // As for incident ids: two respondent ids that look the same must be the same.
        Some(id) => match crate::validate::identifier_problem(&id) {
            Some(problem) => {
                errors.push(FieldError::new(id_field, problem));
                None
            }
            None => Some(id),
        },
    };
    let design: HashMap<&str, &str> = declaration.design_columns().into_iter().collect();
    let mut values = BTreeMap::new();
    for variable in &declaration.variables {
        let checked = match given.remove(&variable.name) {
            Some(cell) => match check_cell(variable, &cell) {
                Ok(value) => value,
                Err(error) => {
                    errors.push(FieldError::new(&variable.name, error));
                    continue;
                }
            },
            None => None,
        };
        match checked {
            Some(value) => {
                values.insert(variable.name.clone(), value);
            }
            None => {
                if let Some(role) = design.get(variable.name.as_str()) {
                    errors.push(FieldError::new(
                        &variable.name,
                        format!("required: design variable ({role}) may not be missing"),
                    ));
                } else if variable.required {
                    errors.push(FieldError::new(&variable.name, "required"));
                }
            }
        }
    }
    match respondent_id {
        Some(respondent_id) if errors.is_empty() => Ok(SurveyRow { respondent_id, values }),
        _ => Err(errors),
    }
}

/// Re-checks a row as it travelled (the projector trusts nothing it did not check itself).
pub fn check_row(
    declaration: &SurveyWaveDeclared,
    row: &SurveyRow,
) -> Result<SurveyRow, Vec<FieldError>> {
    let cells =
        row.values.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).chain(std::iter::once((
            declaration.respondent_id.clone(),
            Some(Cell::Text(row.respondent_id.clone())),
        )));
    validate_row(declaration, cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::survey::fixtures::{csv_row, declaration};

    #[test]
    fn rows_are_typed_like_the_cli_reads_csv_and_every_problem_is_named() {
        let d = declaration();
        let row = validate_row(
            &d,
            csv_row(&[
                ("hh", "H1"),
                ("region", "11"),
                ("psu", "7"),
                ("w", "33.84699630737305"),
                ("victim", "no"),
                ("age", "NA"),
            ]),
        )
        .unwrap();
        assert_eq!(row.values["w"], Cell::Number("33.84699630737305".parse().unwrap()));
        assert_eq!(row.values["psu"], Cell::Integer(7));
        assert!(!row.values.contains_key("age"));
        let errors = validate_row(
            &d,
            csv_row(&[
                ("hh", "H2"),
                ("region", "99"),
                ("psu", "7.5"),
                ("w", ""),
                ("age", "200"),
                ("colour", "red"),
            ]),
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields.len(), 6, "{errors:?}");
        for f in ["region", "psu", "w", "victim", "age", "colour"] {
            assert!(fields.contains(&f), "{f} missing from {errors:?}");
        }
        assert!(
            errors.iter().any(|e| e.field == "w" && e.error.contains("design variable (weights)"))
        );
        // Respondent ids are identifiers: nothing around them, nothing invisible in them.
        for (id, problem) in [
            (" H3", "leading or trailing spaces"),
            ("H\u{202E}3", "U+202E"),
            ("H\u{200B}3", "U+200B"),
        ] {
            let row = [("hh", id), ("region", "11"), ("psu", "7"), ("w", "1.5"), ("victim", "no")];
            let errors = validate_row(&d, csv_row(&row)).unwrap_err();
            assert!(
                errors.iter().any(|e| e.field == "hh" && e.error.contains(problem)),
                "{id:?}: {errors:?}"
            );
        }
    }
}
