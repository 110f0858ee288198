//! Domain x cluster "cells", built once per (design, domain partition).
//!
//! Domain estimation keeps the whole design (R's subset keeps every PSU, absent ones count as
//! zero totals), so a domain's variance only needs the cluster totals of its own rows. A cell is
//! one (domain, cluster) pair that has rows; cells are numbered in (domain, stratum) order so
//! every statistic can sweep a stratum's cluster totals contiguously with plain arrays.

use crate::table::MISSING;

/// Assignment of rows to domains (`MISSING` = in no domain).
#[derive(Debug, Clone)]
pub(crate) struct Partition {
    pub(crate) n_domains: usize,
    pub(crate) dom: Vec<u32>,
}

impl Partition {
    /// Every row in one domain.
    pub(crate) fn whole(n: usize) -> Partition {
        Partition { n_domains: 1, dom: vec![0; n] }
    }
}

/// Contiguous run of cells sharing a domain and a stratum.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CellGroup {
    pub(crate) domain: u32,
    pub(crate) stratum: u32,
    pub(crate) start: u32,
    pub(crate) end: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct StageCells {
    /// Per row: its cell, or `MISSING` for rows outside every domain.
    pub(crate) cell_of_row: Vec<u32>,
    /// Per cell: its cluster.
    pub(crate) cell_cluster: Vec<u32>,
    pub(crate) groups: Vec<CellGroup>,
}

impl StageCells {
    pub(crate) fn n_cells(&self) -> usize {
        self.cell_cluster.len()
    }
}

/// Builds the cells of one stage. `cluster[i]` is row i's cluster, `cluster_stratum[c]` its stratum.
pub(crate) fn build_cells(
    cluster: &[u32],
    cluster_stratum: &[u32],
    n_strata: usize,
    part: &Partition,
) -> StageCells {
    let n = cluster.len();
    let n_clusters = cluster_stratum.len();
    // Per cluster, a short linked list of its cells (one per domain present in the cluster):
    // clusters rarely span many domains, so the walk is short and needs no hashing.
    let mut head = vec![MISSING; n_clusters];
    let mut next: Vec<u32> = Vec::new();
    let mut cell_dom: Vec<u32> = Vec::new();
    let mut cell_clu: Vec<u32> = Vec::new();
    let mut cell_of_row = vec![MISSING; n];
    let (mut last_c, mut last_d, mut last_cell) = (MISSING, MISSING, MISSING);
    for i in 0..n {
        let d = part.dom[i];
        if d == MISSING {
            continue;
        }
        let c = cluster[i];
        if c == last_c && d == last_d {
            cell_of_row[i] = last_cell;
            continue;
        }
        let mut j = head[c as usize];
        while j != MISSING && cell_dom[j as usize] != d {
            j = next[j as usize];
        }
        if j == MISSING {
            j = cell_dom.len() as u32;
            cell_dom.push(d);
            cell_clu.push(c);
            next.push(head[c as usize]);
            head[c as usize] = j;
        }
        cell_of_row[i] = j;
        (last_c, last_d, last_cell) = (c, d, j);
    }

    // Counting sort of the cells by (domain, stratum): first by stratum, then stably by domain.
    let n_cells = cell_dom.len();
    let by_stratum =
        counting_sort(n_cells, n_strata, |j| cluster_stratum[cell_clu[j] as usize] as usize, None);
    let order = counting_sort(n_cells, part.n_domains, |j| cell_dom[j] as usize, Some(&by_stratum));
    let mut new_id = vec![0u32; n_cells];
    for (pos, &old) in order.iter().enumerate() {
        new_id[old as usize] = pos as u32;
    }
    for c in cell_of_row.iter_mut() {
        if *c != MISSING {
            *c = new_id[*c as usize];
        }
    }
    let cell_cluster: Vec<u32> = order.iter().map(|&old| cell_clu[old as usize]).collect();
    let mut groups: Vec<CellGroup> = Vec::new();
    for (pos, &old) in order.iter().enumerate() {
        let d = cell_dom[old as usize];
        let s = cluster_stratum[cell_clu[old as usize] as usize];
        match groups.last_mut() {
            Some(g) if g.domain == d && g.stratum == s => g.end = pos as u32 + 1,
            _ => groups.push(CellGroup {
                domain: d,
                stratum: s,
                start: pos as u32,
                end: pos as u32 + 1,
            }),
        }
    }
    StageCells { cell_of_row, cell_cluster, groups }
}

/// Stable counting sort of items 0..n (or of `input`, a permutation of them) by `key`.
fn counting_sort(
    n: usize,
    n_keys: usize,
    key: impl Fn(usize) -> usize,
    input: Option<&[u32]>,
) -> Vec<u32> {
    let mut start = vec![0usize; n_keys + 1];
    for j in 0..n {
        start[key(j) + 1] += 1;
    }
    for k in 0..n_keys {
        start[k + 1] += start[k];
    }
    let mut out = vec![0u32; n];
    let mut place = |j: usize| {
        let k = key(j);
        out[start[k]] = j as u32;
        start[k] += 1;
    };
    match input {
        None => (0..n).for_each(&mut place),
        Some(perm) => perm.iter().for_each(|&j| place(j as usize)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_group_by_domain_then_stratum() {
        // Clusters 0,1 in stratum 0; cluster 2 in stratum 1. Two domains.
        let cluster = [0, 0, 1, 2, 2, 1, 0];
        let cluster_stratum = [0, 0, 1];
        let part = Partition { n_domains: 2, dom: vec![1, 0, 0, 1, MISSING, 1, 1] };
        let cells = build_cells(&cluster, &cluster_stratum, 2, &part);
        assert_eq!(cells.n_cells(), 5);
        let keys: Vec<(u32, u32)> = cells.groups.iter().map(|g| (g.domain, g.stratum)).collect();
        assert_eq!(keys, vec![(0, 0), (1, 0), (1, 1)]);
        // Rows 0 and 6 share (domain 1, cluster 0).
        assert_eq!(cells.cell_of_row[0], cells.cell_of_row[6]);
        assert_eq!(cells.cell_of_row[4], MISSING);
        for (i, &c) in cells.cell_of_row.iter().enumerate() {
            if c != MISSING {
                assert_eq!(cells.cell_cluster[c as usize], cluster[i]);
            }
        }
    }
}
