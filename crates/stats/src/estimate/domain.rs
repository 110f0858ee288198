//! Domains from `--by` columns, as `svyby`: one domain per combination of values that occurs,
//! ordered like R's `interaction()` (first column varying fastest); rows with a missing `by`
//! value belong to no domain; combinations whose rows all have weight 0 are not reported.

use crate::design::Partition;
use crate::error::StatsError;
use crate::hash::fx_map;
use crate::table::{MISSING, Table};

use super::request::Domain;

pub(crate) struct Domains {
    pub(crate) part: Partition,
    /// Per domain: its (column, value) pairs; empty without `--by`.
    pub(crate) labels: Vec<Domain>,
    /// Per domain: number of rows (R's `nrow()` of the subset design).
    pub(crate) rows: Vec<u64>,
}

impl Domains {
    pub(crate) fn has_by(&self) -> bool {
        self.labels.first().is_some_and(|d| !d.0.is_empty())
    }

    /// Text naming domain `d` in error messages; `None` without `--by`.
    pub(crate) fn name(&self, d: u32) -> Option<String> {
        if self.has_by() { Some(self.labels[d as usize].to_string()) } else { None }
    }
}

pub(crate) fn build(table: &Table, by: &[String], weights: &[f64]) -> Result<Domains, StatsError> {
    let n = table.n_rows();
    if by.is_empty() {
        return Ok(Domains {
            part: Partition::whole(n),
            labels: vec![Domain::default()],
            rows: vec![n as u64],
        });
    }
    let mut factors = Vec::with_capacity(by.len());
    let mut level_labels: Vec<Vec<String>> = Vec::with_capacity(by.len());
    for name in by {
        let col = table.require(name, "by")?;
        let f = col.factor(true);
        level_labels.push(
            f.first_row
                .iter()
                .map(|&r| col.text(r as usize).map(|t| t.into_owned()).unwrap_or_default())
                .collect(),
        );
        factors.push(f);
    }
    // Mixed-radix key with the first column varying fastest: sorting keys is R's order.
    let mut strides = Vec::with_capacity(by.len());
    let mut stride: u128 = 1;
    for f in &factors {
        strides.push(stride);
        stride = stride
            .checked_mul(f.n_levels().max(1) as u128)
            .ok_or_else(|| StatsError::invalid("too many combinations of --by values to index"))?;
    }
    let mut map = fx_map::<u128, u32>(256);
    let mut keys: Vec<u128> = Vec::new();
    let mut dom = vec![MISSING; n];
    for (i, slot) in dom.iter_mut().enumerate() {
        let mut key: u128 = 0;
        let mut missing = false;
        for (f, &s) in factors.iter().zip(&strides) {
            let c = f.codes[i];
            if c == MISSING {
                missing = true;
                break;
            }
            key += u128::from(c) * s;
        }
        if missing {
            continue;
        }
        let next = keys.len() as u32;
        *slot = *map.entry(key).or_insert_with(|| {
            keys.push(key);
            next
        });
    }
    // Domains with no non-zero weight are dropped, as svyby does.
    let mut has_weight = vec![false; keys.len()];
    for (i, &d) in dom.iter().enumerate() {
        if d != MISSING && weights[i] != 0.0 {
            has_weight[d as usize] = true;
        }
    }
    let mut order: Vec<u32> = (0..keys.len() as u32).filter(|&d| has_weight[d as usize]).collect();
    order.sort_by_key(|&d| keys[d as usize]);
    let mut new_id = vec![MISSING; keys.len()];
    for (pos, &old) in order.iter().enumerate() {
        new_id[old as usize] = pos as u32;
    }
    let mut rows = vec![0u64; order.len()];
    for d in dom.iter_mut() {
        if *d != MISSING {
            *d = new_id[*d as usize];
            if *d != MISSING {
                rows[*d as usize] += 1;
            }
        }
    }
    let labels = order
        .iter()
        .map(|&old| {
            let key = keys[old as usize];
            Domain(
                by.iter()
                    .zip(&factors)
                    .zip(&strides)
                    .zip(&level_labels)
                    .map(|(((name, f), &s), labs)| {
                        let code = ((key / s) % f.n_levels().max(1) as u128) as usize;
                        (name.clone(), labs[code].clone())
                    })
                    .collect(),
            )
        })
        .collect();
    if order.is_empty() {
        return Err(StatsError::invalid(format!(
            "no row has non-missing values of all --by columns ({}) and a non-zero weight",
            by.join(", ")
        )));
    }
    Ok(Domains { part: Partition { n_domains: order.len(), dom }, labels, rows })
}
