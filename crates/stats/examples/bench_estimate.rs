//! Timings on 1 000 000 synthetic respondents ([`observatory_stats::synthetic`]): a stratified
//! two-stage design (50 strata x 40 PSUs, 100 households per PSU, 5 respondents per household,
//! fpc at both stages) and the same data with 80 JK1 replicate-weight columns (80 random groups
//! of PSUs). Each run estimates the mean and the total of one variable with SE, by a
//! 20-category domain. `observatory bench` runs the same stage next to the others.
//!
//! `cargo run --release -p observatory-stats --example bench_estimate`

use std::time::{Duration, Instant};

use observatory_stats::synthetic::{self, SurveyShape};
use observatory_stats::{EstimateRequest, Table, estimate};

const RUNS: usize = 5;

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
    let shape = SurveyShape::MILLION;
    let start = Instant::now();
    let table = synthetic::survey(&shape);
    println!(
        "generated {} rows x {} columns in {:.0} ms ({} strata, {} PSUs, {} domains, {} replicate columns)",
        table.n_rows(),
        table.n_columns(),
        ms(start.elapsed()),
        shape.strata,
        shape.psus(),
        shape.domains,
        shape.replicates
    );
    time(
        "linearisation, stratified two-stage with fpc, mean+total by region",
        &table,
        &synthetic::linear_request(),
    );
    time("80 JK1 replicate weights, mean+total by region", &table, &synthetic::replicate_request());
}
