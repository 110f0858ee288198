//! Pure helpers: latency percentiles and the comparison of two answers to the same query.

use serde::Serialize;

/// Nearest-rank percentile of samples (any order); `None` when there are none.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latency figures of repeated runs, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub runs: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(samples_ms: &[f64]) -> Option<Latency> {
        Some(Latency {
            runs: samples_ms.len(),
            p50_ms: percentile(samples_ms, 50.0)?,
            p99_ms: percentile(samples_ms, 99.0)?,
            min_ms: percentile(samples_ms, 0.0)?,
            max_ms: percentile(samples_ms, 100.0)?,
        })
    }
}

/// One row of a count answer, reduced to what both engines must agree on: the grouping
/// values as text (null stays null), the count and the loss in integer cents.
pub type CountRow = (Vec<Option<String>>, i64, i64);

/// `Ok` when both answers hold the same rows in any order; otherwise the first difference.
pub fn compare_rows(ours: &[CountRow], theirs: &[CountRow]) -> Result<(), String> {
    let mut a = ours.to_vec();
    let mut b = theirs.to_vec();
    a.sort();
    b.sort();
    if a == b {
        return Ok(());
    }
    if a.len() != b.len() {
        return Err(format!("{} rows here, {} in DuckDB", a.len(), b.len()));
    }
    let (x, y) = a.iter().zip(&b).find(|(x, y)| x != y).expect("a difference exists");
    Err(format!("first difference: {x:?} here, {y:?} in DuckDB"))
}

/// Ratio of two rates or times, `None` when the denominator is missing or zero.
pub fn ratio(numerator: f64, denominator: Option<f64>) -> Option<f64> {
    denominator.filter(|d| *d > 0.0).map(|d| numerator / d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn answers_compare_as_sets() {
        let row = |k: &str, n: i64| (vec![Some(k.to_owned()), None], n, n * 100);
        assert!(compare_rows(&[row("a", 1), row("b", 2)], &[row("b", 2), row("a", 1)]).is_ok());
        let diff =
            compare_rows(&[row("a", 1), row("b", 2)], &[row("a", 1), row("b", 3)]).unwrap_err();
        assert!(diff.contains("first difference"), "{diff}");
        assert!(
            compare_rows(&[row("a", 1)], &[]).unwrap_err().contains("1 rows here, 0 in DuckDB")
        );
    }
}
