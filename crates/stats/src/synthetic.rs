//! A deterministic synthetic survey for timings (`observatory bench`, the `bench_estimate`
//! example): a stratified two-stage design (strata x PSUs, households per PSU, respondents
//! per household, fpc at both stages), the full-sample weight `w`, optionally JK1
//! replicate-weight columns `rw0..` built from random groups of PSUs, an outcome `y` with 2%
//! item non-response and a domain variable `region`.

use crate::estimate::{CiMethod, EstimateRequest, StatisticSpec};
use crate::{RepType, Table};

/// Shape of the synthetic design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SurveyShape {
    pub strata: usize,
    pub psu_per_stratum: usize,
    pub households_per_psu: usize,
    pub persons_per_household: usize,
    /// Categories of the `region` domain variable.
    pub domains: usize,
    /// JK1 replicate columns `rw0..rw{n-1}` (random groups of PSUs); 0 for none.
    pub replicates: usize,
}

impl SurveyShape {
    /// 1 000 000 respondents: 50 strata x 40 PSUs x 100 households x 5 persons, 20 domains,
    /// 80 JK1 replicates.
    pub const MILLION: SurveyShape = SurveyShape {
        strata: 50,
        psu_per_stratum: 40,
        households_per_psu: 100,
        persons_per_household: 5,
        domains: 20,
        replicates: 80,
    };

    pub fn respondents(&self) -> usize {
        self.strata * self.psu_per_stratum * self.households_per_psu * self.persons_per_household
    }

    pub fn psus(&self) -> usize {
        self.strata * self.psu_per_stratum
    }
}

/// SplitMix64: deterministic and dependency-free, so every run times the same data.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Builds the table. Columns: stratum, psu, household, fpc1, fpc2, rw0.., w, y, region.
pub fn survey(shape: &SurveyShape) -> Table {
    let mut rng = SplitMix(20_240_611);
    let n = shape.respondents();
    let groups = shape.replicates.max(1);
    let mut stratum = Vec::with_capacity(n);
    let mut psu = Vec::with_capacity(n);
    let mut household = Vec::with_capacity(n);
    let mut fpc1 = Vec::with_capacity(n);
    let mut fpc2 = Vec::with_capacity(n);
    let mut w = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    let mut region = Vec::with_capacity(n);
    let mut psu_group = Vec::with_capacity(shape.psus());
    for h in 0..shape.strata {
        let n_psu_pop = 400.0;
        for j in 0..shape.psu_per_stratum {
            let p = h * shape.psu_per_stratum + j;
            psu_group.push(rng.below(groups));
            let households_pop = 800.0 + 50.0 * (p % 9) as f64;
            let level = 30.0 + 10.0 * rng.uniform() + (h % 5) as f64;
            let home_region = rng.below(shape.domains);
            for k in 0..shape.households_per_psu {
                for _ in 0..shape.persons_per_household {
                    stratum.push(h as f64);
                    psu.push(p as f64);
                    household.push(k as f64);
                    fpc1.push(n_psu_pop);
                    fpc2.push(households_pop);
                    let base = (n_psu_pop / shape.psu_per_stratum as f64)
                        * (households_pop / shape.households_per_psu as f64);
                    w.push(base * (0.8 + 0.4 * rng.uniform()));
                    y.push(if rng.uniform() < 0.02 {
                        f64::NAN
                    } else {
                        level + 20.0 * rng.uniform()
                    });
                    region.push(if rng.uniform() < 0.7 {
                        home_region
                    } else {
                        rng.below(shape.domains)
                    } as f64);
                }
            }
        }
    }
    let mut t = Table::new();
    t.add_numeric("stratum", stratum).expect("fresh column");
    t.add_numeric("psu", psu.clone()).expect("fresh column");
    t.add_numeric("household", household).expect("fresh column");
    t.add_numeric("fpc1", fpc1).expect("fresh column");
    t.add_numeric("fpc2", fpc2).expect("fresh column");
    // JK1 with random groups of PSUs: replicate r drops group r and reweights the rest.
    let factor = shape.replicates as f64 / (shape.replicates as f64 - 1.0);
    for r in 0..shape.replicates {
        let col: Vec<f64> = (0..n)
            .map(|i| if psu_group[psu[i] as usize] == r { 0.0 } else { w[i] * factor })
            .collect();
        t.add_numeric(format!("rw{r}"), col).expect("fresh column");
    }
    t.add_numeric("w", w).expect("fresh column");
    t.add_numeric("y", y).expect("fresh column");
    t.add_numeric("region", region).expect("fresh column");
    t
}

/// Mean and total of `y` by `region` under the linearised stratified two-stage design.
pub fn linear_request() -> EstimateRequest {
    EstimateRequest {
        weights: Some("w".into()),
        strata: Some("stratum".into()),
        clusters: vec!["psu".into(), "household".into()],
        fpc: vec!["fpc1".into(), "fpc2".into()],
        statistics: vec![StatisticSpec::Mean("y".into()), StatisticSpec::Total("y".into())],
        by: vec!["region".into()],
        ci: CiMethod::T,
        ..Default::default()
    }
}

/// The same statistics with the JK1 replicate weights `rw*`.
pub fn replicate_request() -> EstimateRequest {
    EstimateRequest {
        weights: Some("w".into()),
        repweights: Some("^rw".into()),
        reptype: Some(RepType::Jk1),
        statistics: vec![StatisticSpec::Mean("y".into()), StatisticSpec::Total("y".into())],
        by: vec!["region".into()],
        ci: CiMethod::T,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_design_estimates_both_ways() {
        let shape = SurveyShape {
            strata: 3,
            psu_per_stratum: 4,
            households_per_psu: 3,
            persons_per_household: 2,
            domains: 2,
            replicates: 4,
        };
        let table = survey(&shape);
        assert_eq!(table.n_rows(), shape.respondents());
        assert_eq!(table.n_columns(), 8 + shape.replicates);
        let linear = crate::estimate(&table, &linear_request()).unwrap();
        let replicate = crate::estimate(&table, &replicate_request()).unwrap();
        assert_eq!(linear.estimates.len(), replicate.estimates.len());
        assert!(linear.estimates.iter().all(|e| e.se.is_finite()));
    }
}
