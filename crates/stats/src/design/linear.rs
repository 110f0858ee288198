//! Building a linearisation design as R's `svydesign()` does: nested cluster ids, per-stage
//! strata, sample and population sizes per stage, weights (given or derived from the fpc).

use crate::error::StatsError;
use crate::hash::fx_map;
use crate::table::{Column, Factor, MISSING, Table};

use super::LonelyPsu;

/// Which columns describe the design. Mirrors `svydesign(ids=, strata=, weights=, fpc=, nest=)`.
#[derive(Debug, Clone, Default)]
pub struct DesignSpec {
    /// Sampling weights; when absent they come from the fpc (product of N/n over stages) or are 1.
    pub weights: Option<String>,
    /// First-stage strata.
    pub strata: Option<String>,
    /// Cluster ids, one per stage (PSU, SSU, ...); none means every row is its own PSU.
    pub clusters: Vec<String>,
    /// Finite population corrections, one per stage: population sizes (> 1) or sampling
    /// fractions (<= 1), as R's `fpc`.
    pub fpc: Vec<String>,
    /// PSU ids are only unique within strata (R's `nest = TRUE`).
    pub nest: bool,
    pub lonely_psu: LonelyPsu,
}

/// A linearisation design over the rows of one table.
#[derive(Debug, Clone)]
pub struct LinearDesign {
    pub(crate) weights: Vec<f64>,
    pub(crate) stages: Vec<Stage>,
    pub(crate) has_strata: bool,
    pub(crate) has_fpc: bool,
    pub(crate) lonely: LonelyPsu,
}

/// One sampling stage. Stage k > 1 strata are the stage k-1 clusters (R's
/// `interaction(strata, ids[, k-1])`), so stratum ids at stage k are cluster ids at stage k-1.
#[derive(Debug, Clone)]
pub(crate) struct Stage {
    /// Per row: the (nested, globally unique) cluster id at this stage.
    pub(crate) cluster: Vec<u32>,
    /// Per cluster: its stratum at this stage.
    pub(crate) cluster_stratum: Vec<u32>,
    pub(crate) strata: Vec<StageStratum>,
}

#[derive(Debug, Clone)]
pub(crate) struct StageStratum {
    /// R-style label ("E", or "E.401" for a stage-2 stratum), for error messages.
    pub(crate) label: String,
    /// Units sampled in the stratum (R's `sampsize`), counted on the whole design.
    pub(crate) n_units: u32,
    /// Finite population correction (N - n) / N; 1 without fpc or for N = Inf.
    pub(crate) fpc: f64,
    /// n / N, the factor R applies to the variance of the next stage (0 for N = Inf).
    pub(crate) fraction: f64,
    /// Product of the sampling fractions of the ancestor units (1 at stage 1).
    pub(crate) multiplier: f64,
}

impl Stage {
    pub(crate) fn n_clusters(&self) -> usize {
        self.cluster_stratum.len()
    }
}

impl LinearDesign {
    /// Builds the design; errors name the column and row (or stratum) at fault.
    pub fn from_table(table: &Table, spec: &DesignSpec) -> Result<LinearDesign, StatsError> {
        let n = table.n_rows();
        if n == 0 {
            return Err(StatsError::invalid("the table has no rows"));
        }

        // Stage-1 strata.
        let (strata_codes, strata_labels) = match &spec.strata {
            Some(name) => {
                let col = table.require(name, "strata")?;
                let f = col.factor(true);
                check_no_missing(col, &f.codes, "strata")?;
                let labels = labels_of(col, &f);
                (f.codes, labels)
            }
            None => (vec![0u32; n], vec!["1".to_string()]),
        };
        let has_strata = spec.strata.is_some();

        // Cluster ids per stage, nested as R forces them to be.
        let n_stages = spec.clusters.len().max(1);
        let cluster_cols: Vec<&Column> =
            spec.clusters.iter().map(|c| table.require(c, "cluster")).collect::<Result<_, _>>()?;
        let mut stages: Vec<Stage> = Vec::with_capacity(n_stages);
        // Text of each cluster at the previous stage, to label the strata of the next one.
        let mut prev_cluster_labels: Vec<String> = Vec::new();
        for k in 0..n_stages {
            let ids: Vec<u32> = match cluster_cols.get(k) {
                None => (0..n as u32).collect(),
                Some(col) => {
                    let f = col.factor(false);
                    check_no_missing(col, &f.codes, "cluster")?;
                    f.codes
                }
            };
            let parent: &[u32] = if k == 0 { &strata_codes } else { &stages[k - 1].cluster };
            // Stage 1 ids are global unless nested within strata; later stages always nest in
            // the previous stage's cluster.
            let nest_in_parent = k > 0 || spec.nest;
            let mut map = fx_map::<u64, u32>(1024);
            let mut cluster = Vec::with_capacity(n);
            let mut cluster_stratum: Vec<u32> = Vec::new();
            let mut first_row: Vec<u32> = Vec::new();
            for i in 0..n {
                let hi = if nest_in_parent { u64::from(parent[i]) } else { 0 };
                let key = (hi << 32) | u64::from(ids[i]);
                let next = cluster_stratum.len() as u32;
                let c = *map.entry(key).or_insert_with(|| {
                    cluster_stratum.push(parent[i]);
                    first_row.push(i as u32);
                    next
                });
                if k == 0 && cluster_stratum[c as usize] != parent[i] {
                    let col = cluster_cols[0];
                    return Err(StatsError::ClusterNotNested {
                        column: col.name().to_string(),
                        cluster: col.text(i).map(|t| t.into_owned()).unwrap_or_default(),
                        stratum_a: strata_labels[cluster_stratum[c as usize] as usize].clone(),
                        stratum_b: strata_labels[parent[i] as usize].clone(),
                    });
                }
                cluster.push(c);
            }
            let stratum_labels: Vec<String> = if k == 0 {
                strata_labels.clone()
            } else {
                std::mem::take(&mut prev_cluster_labels)
            };
            let mut counts = vec![0u32; stratum_labels.len()];
            for &s in &cluster_stratum {
                counts[s as usize] += 1;
            }
            if k + 1 < n_stages {
                // Label of each cluster: "<stratum label>.<id>" (R's interaction() naming).
                prev_cluster_labels = first_row
                    .iter()
                    .zip(&cluster_stratum)
                    .map(|(&r, &s)| {
                        let id = cluster_cols
                            .get(k)
                            .and_then(|c| c.text(r as usize))
                            .map(|t| t.into_owned())
                            .unwrap_or_else(|| (r + 1).to_string());
                        format!("{}.{}", stratum_labels[s as usize], id)
                    })
                    .collect();
            }
            let strata = stratum_labels
                .into_iter()
                .zip(counts)
                .map(|(label, n_units)| StageStratum {
                    label,
                    n_units,
                    fpc: 1.0,
                    fraction: 0.0,
                    multiplier: 1.0,
                })
                .collect();
            stages.push(Stage { cluster, cluster_stratum, strata });
        }

        if stages[0].n_clusters() == 1 && !(spec.nest && has_strata) {
            let column = spec.clusters.first().cloned().unwrap_or_else(|| "(rows)".to_string());
            return Err(StatsError::SinglePsu { column });
        }

        let has_fpc = !spec.fpc.is_empty();
        let mut popsizes: Vec<Vec<f64>> = Vec::new();
        if has_fpc {
            popsizes = apply_fpc(table, spec, &strata_codes, &mut stages)?;
        }

        let weights = match &spec.weights {
            Some(name) => {
                let col = table.require(name, "weights")?;
                let w = col.require_numeric("weights")?;
                if let Some(row) = w.iter().position(|v| v.is_nan()) {
                    return Err(StatsError::MissingDesignValue {
                        column: name.clone(),
                        role: "weights".into(),
                        row: row + 1,
                    });
                }
                w.to_vec()
            }
            None if has_fpc => weights_from_fpc(&stages, &strata_codes, &popsizes)?,
            // R assumes equal probability (with a warning) when neither is given.
            None => vec![1.0; n],
        };

        // Multipliers: the variance of stage k+1 within a unit counts with that unit's n/N.
        for k in 1..stages.len() {
            let (done, rest) = stages.split_at_mut(k);
            let prev = &done[k - 1];
            for (s, st) in rest[0].strata.iter_mut().enumerate() {
                // Stratum s at stage k is cluster s at stage k-1.
                let parent_stratum = &prev.strata[prev.cluster_stratum[s] as usize];
                st.multiplier = parent_stratum.multiplier * parent_stratum.fraction;
            }
        }

        Ok(LinearDesign { weights, stages, has_strata, has_fpc, lonely: spec.lonely_psu })
    }

    pub fn n_rows(&self) -> usize {
        self.weights.len()
    }

    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Number of sampling stages (cluster levels).
    pub fn n_stages(&self) -> usize {
        self.stages.len()
    }

    /// PSUs at stage 1.
    pub fn n_psu(&self) -> usize {
        self.stages[0].n_clusters()
    }

    /// Strata at stage 1.
    pub fn n_strata(&self) -> usize {
        self.stages[0].strata.len()
    }

    pub fn has_fpc(&self) -> bool {
        self.has_fpc
    }

    pub fn lonely_psu(&self) -> LonelyPsu {
        self.lonely
    }

    /// R's `degf()`: PSUs with a non-zero weight minus strata with a non-zero weight.
    pub fn degf(&self) -> i64 {
        let st = &self.stages[0];
        let mut psu_seen = vec![false; st.n_clusters()];
        let mut stratum_seen = vec![false; st.strata.len()];
        for (i, &w) in self.weights.iter().enumerate() {
            if w != 0.0 {
                let c = st.cluster[i] as usize;
                psu_seen[c] = true;
                stratum_seen[st.cluster_stratum[c] as usize] = true;
            }
        }
        psu_seen.iter().filter(|&&b| b).count() as i64
            - stratum_seen.iter().filter(|&&b| b).count() as i64
    }
}

fn check_no_missing(col: &Column, codes: &[u32], role: &str) -> Result<(), StatsError> {
    match codes.iter().position(|&c| c == MISSING) {
        Some(row) => Err(StatsError::MissingDesignValue {
            column: col.name().to_string(),
            role: role.to_string(),
            row: row + 1,
        }),
        None => Ok(()),
    }
}

fn labels_of(col: &Column, f: &Factor) -> Vec<String> {
    f.first_row
        .iter()
        .map(|&r| col.text(r as usize).map(|t| t.into_owned()).unwrap_or_default())
        .collect()
}

/// Reads the fpc columns, decides population sizes vs fractions (over all stages at once, as R's
/// `as.fpc`), and sets fpc factors and sampling fractions per stratum. Returns the population
/// size of each stratum per stage.
fn apply_fpc(
    table: &Table,
    spec: &DesignSpec,
    strata_codes: &[u32],
    stages: &mut [Stage],
) -> Result<Vec<Vec<f64>>, StatsError> {
    if spec.fpc.len() != stages.len() {
        return Err(StatsError::FpcStageCount { count: spec.fpc.len(), stages: stages.len() });
    }
    let mut cols: Vec<(&str, &[f64])> = Vec::new();
    for name in &spec.fpc {
        let col = table.require(name, "fpc")?;
        let v = col.require_numeric("fpc")?;
        if let Some(row) = v.iter().position(|x| x.is_nan()) {
            return Err(StatsError::MissingDesignValue {
                column: name.clone(),
                role: "fpc".into(),
                row: row + 1,
            });
        }
        cols.push((name, v));
    }
    // R: popsize when any value > 1; then every value must be >= 1. All values == 1 is also
    // rejected (xor(any(fpc > 1), all(fpc >= 1))).
    let is_popsize = cols.iter().any(|(_, v)| v.iter().any(|&x| x > 1.0));
    let all_ge_one = cols.iter().all(|(_, v)| v.iter().all(|&x| x >= 1.0));
    if is_popsize != all_ge_one {
        let (column, row, value) = cols
            .iter()
            .find_map(|(name, v)| {
                let bad = if is_popsize {
                    v.iter().position(|&x| x < 1.0)
                } else {
                    v.iter().position(|&x| x >= 1.0)
                };
                bad.map(|r| (name.to_string(), r + 1, v[r]))
            })
            .unwrap_or_default();
        return Err(StatsError::FpcMixed { column, row, value });
    }

    let mut popsizes = Vec::with_capacity(stages.len());
    for k in 0..stages.len() {
        let (name, values) = cols[k];
        let n_strata = stages[k].strata.len();
        let mut value = vec![f64::NAN; n_strata];
        for (i, &x) in values.iter().enumerate() {
            let s = if k == 0 { strata_codes[i] } else { stages[k - 1].cluster[i] } as usize;
            if value[s].is_nan() {
                value[s] = x;
            } else if value[s] != x {
                return Err(StatsError::FpcVaries {
                    column: name.to_string(),
                    stratum: stages[k].strata[s].label.clone(),
                    stage: k + 1,
                    a: value[s],
                    b: x,
                });
            }
        }
        let mut pops = Vec::with_capacity(n_strata);
        for (s, st) in stages[k].strata.iter_mut().enumerate() {
            let n_units = f64::from(st.n_units);
            // A fraction of 0 gives an infinite population: sampling with replacement.
            let pop = if is_popsize { value[s] } else { n_units / value[s] };
            if pop < n_units {
                return Err(StatsError::FpcTooSmall {
                    column: name.to_string(),
                    stratum: st.label.clone(),
                    stage: k + 1,
                    popsize: pop,
                    sampsize: st.n_units as usize,
                });
            }
            if pop.is_infinite() {
                st.fpc = 1.0;
                st.fraction = 0.0;
            } else {
                st.fpc = (pop - n_units) / pop;
                st.fraction = n_units / pop;
            }
            pops.push(pop);
        }
        popsizes.push(pops);
    }
    Ok(popsizes)
}

/// R's `weights.survey_fpc(final=FALSE)`: per row, the product over stages of N/n.
fn weights_from_fpc(
    stages: &[Stage],
    strata_codes: &[u32],
    popsizes: &[Vec<f64>],
) -> Result<Vec<f64>, StatsError> {
    if popsizes.iter().flatten().any(|&p| p > 1e12) {
        return Err(StatsError::WeightsFromFpc);
    }
    let n = strata_codes.len();
    let mut w = vec![1.0; n];
    for (k, stage) in stages.iter().enumerate() {
        for (i, wi) in w.iter_mut().enumerate() {
            let s = if k == 0 { strata_codes[i] } else { stages[k - 1].cluster[i] } as usize;
            *wi *= popsizes[k][s] / f64::from(stage.strata[s].n_units);
        }
    }
    Ok(w)
}
