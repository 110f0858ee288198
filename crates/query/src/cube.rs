//! The shape every JSON-stat 2.0 answer shares: dimensions whose categories are numbered in the
//! order the rows first show them, a last metric dimension `measure`, and each row's place in
//! the row-major `value` array (the last dimension varies fastest). The counts and the survey
//! estimates fill the values; this builds the index they both need.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

/// One category of the `measure` dimension.
pub struct Metric {
    pub id: &'static str,
    pub label: &'static str,
    pub decimals: u32,
}

pub struct Cube {
    ids: Vec<String>,
    categories: Vec<Vec<String>>,
    positions: Vec<HashMap<String, usize>>,
    keys: Vec<Vec<usize>>,
    metrics: Vec<Metric>,
}

impl Cube {
    pub fn new(ids: Vec<String>, metrics: Vec<Metric>) -> Cube {
        let n = ids.len();
        Cube {
            ids,
            categories: vec![Vec::new(); n],
            positions: vec![HashMap::new(); n],
            keys: Vec::new(),
            metrics,
        }
    }

    /// Adds a row: its category along each dimension, in the order of `ids`.
    pub fn push(&mut self, codes: impl IntoIterator<Item = String>) {
        let mut key = Vec::with_capacity(self.ids.len());
        for (d, code) in codes.into_iter().enumerate() {
            // Most rows repeat categories already seen: look up before cloning the code.
            let position = match self.positions[d].get(&code) {
                Some(&position) => position,
                None => {
                    let list = &mut self.categories[d];
                    self.positions[d].insert(code.clone(), list.len());
                    list.push(code);
                    list.len() - 1
                }
            };
            key.push(position);
        }
        debug_assert_eq!(key.len(), self.ids.len(), "one code per dimension");
        self.keys.push(key);
    }

    /// The size of each dimension, `measure` last.
    pub fn sizes(&self) -> Vec<usize> {
        self.categories.iter().map(Vec::len).chain([self.metrics.len()]).collect()
    }

    /// The number of cells of `value`.
    pub fn cells(&self) -> usize {
        self.sizes().iter().product()
    }

    /// The metric a cell of `value` holds.
    pub fn metric_of(&self, cell: usize) -> &str {
        self.metrics[cell % self.metrics.len()].id
    }

    /// For each row pushed, in order, the cell of its first metric (the others follow it).
    pub fn offsets(&self) -> Vec<usize> {
        let sizes = self.sizes();
        self.keys
            .iter()
            .map(|key| {
                key.iter().zip(&sizes).fold(0usize, |acc, (k, size)| acc * size + k)
                    * self.metrics.len()
            })
            .collect()
    }

    /// `id` (with `measure` last), `size` and `dimension`, each category labelled by `label`
    /// (dimension, category) where it knows a name.
    pub fn structure(&self, label: impl Fn(&str, &str) -> Option<String>) -> (Value, Value, Value) {
        let mut dimension = Map::new();
        for (id, list) in self.ids.iter().zip(&self.categories) {
            let index: Map<String, Value> =
                list.iter().enumerate().map(|(i, c)| (c.clone(), json!(i))).collect();
            let labels: Map<String, Value> = list
                .iter()
                .filter_map(|c| label(id, c).map(|name| (c.clone(), json!(name))))
                .collect();
            let mut category = json!({"index": index});
            if !labels.is_empty() {
                category["label"] = Value::Object(labels);
            }
            dimension.insert(id.clone(), json!({"label": id, "category": category}));
        }
        let index: Map<String, Value> =
            self.metrics.iter().enumerate().map(|(i, m)| (m.id.to_owned(), json!(i))).collect();
        let labels: Map<String, Value> =
            self.metrics.iter().map(|m| (m.id.to_owned(), json!(m.label))).collect();
        let units: Map<String, Value> = self
            .metrics
            .iter()
            .map(|m| (m.id.to_owned(), json!({"decimals": m.decimals})))
            .collect();
        dimension.insert(
            "measure".into(),
            json!({"label": "measure", "category": {"index": index, "label": labels, "unit": units}}),
        );
        let ids: Vec<&str> =
            self.ids.iter().map(String::as_str).chain(std::iter::once("measure")).collect();
        (json!(ids), json!(self.sizes()), Value::Object(dimension))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_land_row_major_with_the_metric_fastest() {
        let metrics = vec![
            Metric { id: "a", label: "A", decimals: 0 },
            Metric { id: "b", label: "B", decimals: 2 },
        ];
        let mut cube = Cube::new(vec!["x".into(), "y".into()], metrics);
        cube.push(["x1".to_owned(), "y1".to_owned()]);
        cube.push(["x1".to_owned(), "y2".to_owned()]);
        cube.push(["x2".to_owned(), "y2".to_owned()]);
        cube.push(["x2".to_owned(), "y3".to_owned()]);
        assert_eq!(cube.sizes(), vec![2, 3, 2]);
        assert_eq!(cube.cells(), 12);
        // (x, y) -> (x * 3 + y) * 2
        assert_eq!(cube.offsets(), vec![0, 2, 8, 10]);
        assert_eq!(cube.metric_of(9), "b");
        let (ids, size, dimension) =
            cube.structure(|d, c| (d == "x" && c == "x2").then(|| "Second".to_owned()));
        assert_eq!(ids, json!(["x", "y", "measure"]));
        assert_eq!(size, json!([2, 3, 2]));
        assert_eq!(dimension["y"]["category"]["index"]["y3"], json!(2));
        assert_eq!(dimension["x"]["category"]["label"], json!({"x2": "Second"}));
        assert!(dimension["y"]["category"].get("label").is_none());
        assert_eq!(dimension["measure"]["category"]["unit"]["b"]["decimals"], json!(2));
    }
}
