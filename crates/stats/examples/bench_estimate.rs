//! Timings on 1 000 000 synthetic respondents: a stratified two-stage design (50 strata x 40
//! PSUs, 100 households per PSU, 5 respondents per household, fpc at both stages) and the same
//! data with 80 JK1 replicate-weight columns (80 random groups of PSUs). Each run estimates
//! the mean and the total of one variable with SE, by a 20-category domain.
//!
//! `CARGO_TARGET_DIR=/work/target-stats cargo run --release -p observatory-stats --example bench_estimate`

use std::time::{Duration, Instant};

use observatory_stats::{CiMethod, EstimateRequest, RepType, StatisticSpec, Table, estimate};

const STRATA: usize = 50;
const PSU_PER_STRATUM: usize = 40;
const HOUSEHOLDS_PER_PSU: usize = 100;
const PERSONS_PER_HOUSEHOLD: usize = 5;
const DOMAINS: usize = 20;
const REPLICATES: usize = 80;
const RUNS: usize = 5;

/// SplitMix64: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
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

fn synthetic() -> Table {
    let mut rng = Rng(20_240_611);
    let n = STRATA * PSU_PER_STRATUM * HOUSEHOLDS_PER_PSU * PERSONS_PER_HOUSEHOLD;
    let (mut stratum, mut psu, mut household) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut fpc1, mut fpc2, mut w) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut y, mut region) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut psu_group = Vec::with_capacity(STRATA * PSU_PER_STRATUM);
    for h in 0..STRATA {
        let n_psu_pop = 400.0;
        for j in 0..PSU_PER_STRATUM {
            let p = h * PSU_PER_STRATUM + j;
            psu_group.push(rng.below(REPLICATES));
            let households_pop = 800.0 + 50.0 * (p % 9) as f64;
            let level = 30.0 + 10.0 * rng.uniform() + (h % 5) as f64;
            let home_region = rng.below(DOMAINS);
            for k in 0..HOUSEHOLDS_PER_PSU {
                for _ in 0..PERSONS_PER_HOUSEHOLD {
                    stratum.push(h as f64);
                    psu.push(p as f64);
                    household.push(k as f64);
                    fpc1.push(n_psu_pop);
                    fpc2.push(households_pop);
                    let base = (n_psu_pop / PSU_PER_STRATUM as f64)
                        * (households_pop / HOUSEHOLDS_PER_PSU as f64);
                    w.push(base * (0.8 + 0.4 * rng.uniform()));
                    // 2% item non-response.
                    y.push(if rng.uniform() < 0.02 {
                        f64::NAN
                    } else {
                        level + 20.0 * rng.uniform()
                    });
                    region.push(if rng.uniform() < 0.7 {
                        home_region
                    } else {
                        rng.below(DOMAINS)
                    } as f64);
                }
            }
        }
    }
    let mut t = Table::new();
    t.add_numeric("stratum", stratum).unwrap();
    t.add_numeric("psu", psu.clone()).unwrap();
    t.add_numeric("household", household).unwrap();
    t.add_numeric("fpc1", fpc1).unwrap();
    t.add_numeric("fpc2", fpc2).unwrap();
    // JK1 with 80 random groups of PSUs: replicate r drops group r and reweights the rest.
    for r in 0..REPLICATES {
        let factor = REPLICATES as f64 / (REPLICATES as f64 - 1.0);
        let col: Vec<f64> = (0..n)
            .map(|i| {
                if psu_group[psu[i] as usize] == r {
                    0.0
                } else {
                    w[i] * factor
                }
            })
            .collect();
        t.add_numeric(format!("rw{r}"), col).unwrap();
    }
    t.add_numeric("w", w).unwrap();
    t.add_numeric("y", y).unwrap();
    t.add_numeric("region", region).unwrap();
    t
}

fn time(label: &str, table: &Table, req: &EstimateRequest) {
    let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
    let mut n_estimates = 0;
    let mut first_se = 0.0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let report = estimate(table, req).expect("estimate");
        times.push(start.elapsed());
        n_estimates = report.estimates.len();
        first_se = report.estimates[0].se;
    }
    times.sort();
    println!(
        "{label}: {n_estimates} estimates, median {:.1} ms, min {:.1} ms, max {:.1} ms over {RUNS} runs (first SE {first_se:.4})",
        ms(times[RUNS / 2]),
        ms(times[0]),
        ms(times[RUNS - 1])
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let start = Instant::now();
    let table = synthetic();
    println!(
        "generated {} rows x {} columns in {:.0} ms ({} strata, {} PSUs, {} domains, {} replicate columns)",
        table.n_rows(),
        table.n_columns(),
        ms(start.elapsed()),
        STRATA,
        STRATA * PSU_PER_STRATUM,
        DOMAINS,
        REPLICATES
    );
    let stats = vec![
        StatisticSpec::Mean("y".into()),
        StatisticSpec::Total("y".into()),
    ];
    let linear = EstimateRequest {
        weights: Some("w".into()),
        strata: Some("stratum".into()),
        clusters: vec!["psu".into(), "household".into()],
        fpc: vec!["fpc1".into(), "fpc2".into()],
        statistics: stats.clone(),
        by: vec!["region".into()],
        ci: CiMethod::T,
        ..Default::default()
    };
    time(
        "linearisation, stratified two-stage with fpc, mean+total by region",
        &table,
        &linear,
    );
    let replicate = EstimateRequest {
        weights: Some("w".into()),
        repweights: Some("^rw".into()),
        reptype: Some(RepType::Jk1),
        statistics: stats,
        by: vec!["region".into()],
        ci: CiMethod::T,
        ..Default::default()
    };
    time(
        "80 JK1 replicate weights, mean+total by region",
        &table,
        &replicate,
    );
}
