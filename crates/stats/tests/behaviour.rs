//! Behaviour the R fixtures do not pin down, on designs small enough to compute by hand.

#![allow(clippy::excessive_precision)] // R values quoted digit for digit

use observatory_stats::{
    CiMethod, Estimate, EstimateRequest, JackknifeKind, LonelyPsu, RepType, StatisticSpec,
    StatsError, Table, estimate,
};

fn rel(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

fn one(t: &Table, req: EstimateRequest) -> Estimate {
    let mut v = estimate(t, &req).unwrap_or_else(|e| panic!("{e}")).estimates;
    assert_eq!(v.len(), 1);
    v.remove(0)
}

fn err(t: &Table, req: EstimateRequest) -> String {
    match estimate(t, &req) {
        Ok(r) => panic!("expected an error, got {r:?}"),
        Err(e) => e.to_string(),
    }
}

/// Strata A (PSUs 1, 2), B (PSUs 3, 4) and C (PSU 5 alone), one row per PSU.
fn tiny() -> Table {
    let mut t = Table::new();
    t.add_text("h", &[Some("A"), Some("A"), Some("B"), Some("B"), Some("C")]).unwrap();
    t.add_numeric("psu", vec![1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    t.add_numeric("w", vec![2.0, 2.0, 3.0, 1.0, 4.0]).unwrap();
    t.add_numeric("y", vec![1.0, 3.0, 4.0, 8.0, 5.0]).unwrap();
    t.add_numeric("pop", vec![10.0, 10.0, 6.0, 6.0, 1.0]).unwrap();
    t
}

fn total_y(lonely: LonelyPsu) -> EstimateRequest {
    EstimateRequest {
        weights: Some("w".into()),
        strata: Some("h".into()),
        clusters: vec!["psu".into()],
        lonely_psu: lonely,
        statistics: vec![StatisticSpec::Total("y".into())],
        ..Default::default()
    }
}

#[test]
fn stratified_total_by_hand() {
    let t = tiny();
    // PSU totals w*y: A: 2, 6; B: 12, 8; C: 20. Between-PSU variance with n/(n-1) = 2:
    // A: 2 * ((2-4)^2 + (6-4)^2) = 16; B: 2 * ((12-10)^2 + (8-10)^2) = 16.
    let a_b = 32.0;
    let e = one(&t, total_y(LonelyPsu::Remove));
    assert_eq!(e.estimate, 48.0);
    assert!(rel(e.var, a_b) < 1e-14);
    assert_eq!(e.df, 5 - 3);
    // certainty: same as remove; adjust: C's total uncentred, 20^2; average: mean of A, B for C.
    assert!(rel(one(&t, total_y(LonelyPsu::Certainty)).var, a_b) < 1e-14);
    assert!(rel(one(&t, total_y(LonelyPsu::Adjust)).var, a_b + 400.0) < 1e-14);
    assert!(rel(one(&t, total_y(LonelyPsu::Average)).var, a_b * 3.0 / 2.0) < 1e-14);
    // fail names the stratum and says what to do.
    let msg = err(&t, total_y(LonelyPsu::Fail));
    assert!(msg.contains("stratum 'C'") && msg.contains("--lonely-psu"), "{msg}");
}

#[test]
fn fpc_and_certainty_by_hand() {
    let t = tiny();
    // With population sizes A 10, B 6, C 1: factors (N-n)/N = 0.8, 2/3; C is a certainty PSU.
    let req = EstimateRequest { fpc: vec!["pop".into()], ..total_y(LonelyPsu::Fail) };
    let e = one(&t, req);
    assert!(rel(e.var, 16.0 * 0.8 + 16.0 * 2.0 / 3.0) < 1e-14, "{}", e.var);
    // Sampling fractions give the same design.
    let mut t2 = tiny();
    t2.add_numeric("frac", vec![0.2, 0.2, 2.0 / 6.0, 2.0 / 6.0, 1.0]).unwrap();
    let e2 = one(&t2, EstimateRequest { fpc: vec!["frac".into()], ..total_y(LonelyPsu::Fail) });
    assert!(rel(e2.var, e.var) < 1e-14);
}

#[test]
fn mean_linearisation_by_hand() {
    let t = tiny();
    let req = EstimateRequest {
        statistics: vec![StatisticSpec::Mean("y".into())],
        ..total_y(LonelyPsu::Remove)
    };
    let e = one(&t, req);
    let w = [2.0, 2.0, 3.0, 1.0, 4.0];
    let y = [1.0, 3.0, 4.0, 8.0, 5.0];
    let wsum: f64 = w.iter().sum();
    let mean = w.iter().zip(&y).map(|(a, b)| a * b).sum::<f64>() / wsum;
    let z: Vec<f64> = w.iter().zip(&y).map(|(a, b)| a * (b - mean) / wsum).collect();
    let v = 2.0 * ((z[0] - z[1]) / 2.0).powi(2) * 2.0 + 2.0 * ((z[2] - z[3]) / 2.0).powi(2) * 2.0;
    assert!(rel(e.estimate, mean) < 1e-15);
    assert!(rel(e.var, v) < 1e-13, "{} vs {v}", e.var);
    assert!(rel(e.cv.unwrap(), v.sqrt() / mean) < 1e-13);
}

#[test]
fn two_stage_with_fpc_adds_the_second_stage() {
    // One stratum, 2 PSUs out of 4; in each PSU 2 SSUs out of 5, one row per SSU.
    let mut t = Table::new();
    t.add_numeric("psu", vec![1.0, 1.0, 2.0, 2.0]).unwrap();
    t.add_numeric("ssu", vec![1.0, 2.0, 1.0, 2.0]).unwrap();
    t.add_numeric("N", vec![4.0; 4]).unwrap();
    t.add_numeric("M", vec![5.0; 4]).unwrap();
    t.add_numeric("y", vec![1.0, 2.0, 6.0, 10.0]).unwrap();
    let req = EstimateRequest {
        clusters: vec!["psu".into(), "ssu".into()],
        fpc: vec!["N".into(), "M".into()],
        statistics: vec![StatisticSpec::Total("y".into())],
        ..Default::default()
    };
    let e = one(&t, req.clone());
    // Weights from the fpc: (4/2) * (5/2) = 5. Row totals z = 5, 10, 30, 50.
    assert_eq!(e.estimate, 95.0);
    // Stage 1: PSU totals 15, 80: (1 - 2/4) * 2 * (32.5^2 * 2) = 2112.5.
    // Stage 2, times n/N = 1/2: each PSU (1 - 2/5) * 2 * 2 * (d/2)^2 with d = 5 and 20.
    let stage2 = 0.5 * (0.6 * 2.0 * 2.0 * (2.5f64).powi(2) + 0.6 * 2.0 * 2.0 * 10.0f64.powi(2));
    assert!(rel(e.var, 2112.5 + stage2) < 1e-14, "{}", e.var);
    // Without fpc only the first stage counts (with-replacement PSUs).
    let mut t2 = t.clone();
    t2.add_numeric("w", vec![5.0; 4]).unwrap();
    let e2 = one(&t2, EstimateRequest { fpc: vec![], weights: Some("w".into()), ..req });
    assert!(rel(e2.var, 2.0 * 2.0 * 32.5f64.powi(2)) < 1e-14);
}

/// Replicate weights for 4 rows: w_r = w * f_r with hand-picked factors.
fn replicate_table() -> (Table, Vec<[f64; 4]>) {
    let w = [1.0, 2.0, 1.5, 0.5];
    let f: Vec<[f64; 4]> = vec![
        [0.0, 2.0, 1.0, 1.0],
        [2.0, 0.0, 1.0, 1.0],
        [1.0, 1.0, 0.0, 2.0],
        [1.0, 1.0, 2.0, 0.0],
    ];
    let mut t = Table::new();
    t.add_numeric("w", w.to_vec()).unwrap();
    t.add_numeric("y", vec![3.0, 5.0, 2.0, 7.0]).unwrap();
    for (r, fr) in f.iter().enumerate() {
        t.add_numeric(format!("rw{}", r + 1), (0..4).map(|i| w[i] * fr[i]).collect()).unwrap();
    }
    (t, f)
}

#[test]
fn replicate_variance_for_each_type_by_hand() {
    let (t, f) = replicate_table();
    let w = [1.0, 2.0, 1.5, 0.5];
    let y = [3.0, 5.0, 2.0, 7.0];
    let mean = |wt: &dyn Fn(usize) -> f64| {
        (0..4).map(|i| wt(i) * y[i]).sum::<f64>() / (0..4).map(wt).sum::<f64>()
    };
    let full = mean(&|i| w[i]);
    let reps: Vec<f64> = f.iter().map(|fr| mean(&|i| w[i] * fr[i])).collect();
    let rbar = reps.iter().sum::<f64>() / 4.0;
    let ss: f64 = reps.iter().map(|r| (r - rbar).powi(2)).sum();
    let ss_mse: f64 = reps.iter().map(|r| (r - full).powi(2)).sum();
    let base = |rep_type: RepType| EstimateRequest {
        weights: Some("w".into()),
        repweights: Some("^rw".into()),
        reptype: Some(rep_type),
        statistics: vec![StatisticSpec::Mean("y".into())],
        ..Default::default()
    };
    for (rep_type, scale) in [
        (RepType::Brr, 1.0 / 4.0),
        (RepType::Fay { rho: 0.5 }, 1.0 / (4.0 * 0.25)),
        (RepType::Jk1, 3.0 / 4.0),
        (RepType::Bootstrap, 1.0 / 3.0),
        (RepType::Other, 1.0),
    ] {
        let e = one(&t, base(rep_type));
        assert!(rel(e.estimate, full) < 1e-15);
        assert!(rel(e.var, scale * ss) < 1e-13, "{rep_type}: {} vs {}", e.var, scale * ss);
        let e = one(&t, EstimateRequest { mse: true, ..base(rep_type) });
        assert!(rel(e.var, scale * ss_mse) < 1e-13, "{rep_type} mse");
    }
    // JKn: rscales weight each replicate; scale defaults to 1.
    let rs = vec![0.5, 0.5, 0.25, 0.25];
    let e = one(&t, EstimateRequest { rscales: Some(rs.clone()), ..base(RepType::Jkn) });
    let want: f64 = reps.iter().zip(&rs).map(|(r, s)| s * (r - rbar).powi(2)).sum();
    assert!(rel(e.var, want) < 1e-13);
    // User scale and a single rscale value for every replicate.
    let e = one(
        &t,
        EstimateRequest { scale: Some(0.3), rscales: Some(vec![0.5]), ..base(RepType::Other) },
    );
    assert!(rel(e.var, 0.3 * 0.5 * ss) < 1e-13);
    // JKn without rscales, and a scale for BRR (fixed by the type), are refused with a reason.
    assert!(err(&t, base(RepType::Jkn)).contains("--rscales"));
    assert!(err(&t, EstimateRequest { scale: Some(2.0), ..base(RepType::Brr) }).contains("fixed"));
}

#[test]
fn jk1_from_design_equals_linearisation_for_a_mean_on_an_srs() {
    // For a simple random sample with equal weights the delete-one jackknife variance of a
    // mean, (n-1)/n sum (m_(i) - m_.)^2, is exactly s^2/n, the linearisation variance.
    let n = 200;
    let y: Vec<f64> = (0..n).map(|i| ((i * 7919) % 101) as f64 + 0.25 * (i % 3) as f64).collect();
    let mut t = Table::new();
    t.add_numeric("y", y).unwrap();
    t.add_numeric("w", vec![50.0; n]).unwrap();
    t.add_numeric("w_uneq", (0..n).map(|i| 40.0 + (i % 5) as f64 * 5.0).collect()).unwrap();
    let base = EstimateRequest {
        weights: Some("w".into()),
        statistics: vec![StatisticSpec::Mean("y".into())],
        ..Default::default()
    };
    let lin = one(&t, base.clone());
    let jk = one(&t, EstimateRequest { replicates: Some(JackknifeKind::Jk1), ..base.clone() });
    assert!(rel(jk.var, lin.var) < 1e-10, "{} vs {}", jk.var, lin.var);
    assert_eq!(jk.df, lin.df);
    assert_eq!(jk.df, n as i64 - 1);
    // With unequal weights the two agree closely but not exactly.
    let base = EstimateRequest { weights: Some("w_uneq".into()), ..base };
    let lin = one(&t, base.clone());
    let jk = one(&t, EstimateRequest { replicates: Some(JackknifeKind::Jk1), ..base });
    assert!(rel(jk.var, lin.var) < 0.02 && jk.var != lin.var, "{} vs {}", jk.var, lin.var);
}

#[test]
fn missing_values_drop_the_row_but_keep_the_design() {
    let mut t = tiny();
    t.add_numeric_opt("y_na", vec![Some(1.0), None, Some(4.0), Some(8.0), Some(5.0)]).unwrap();
    let req = EstimateRequest {
        statistics: vec![StatisticSpec::Total("y_na".into())],
        ..total_y(LonelyPsu::Remove)
    };
    let e = one(&t, req);
    // PSU 2 counts as a zero total in stratum A (n_A stays 2): 2 * ((2-1)^2 + (0-1)^2) = 4.
    assert_eq!(e.estimate, 2.0 + 12.0 + 8.0 + 20.0);
    assert!(rel(e.var, 4.0 + 16.0) < 1e-14);
    assert_eq!(e.n, 4);
}

#[test]
fn domains_keep_the_design_and_get_their_own_df() {
    let mut t = tiny();
    t.add_text("g", &[Some("x"), Some("y"), Some("x"), Some("x"), None]).unwrap();
    let req = EstimateRequest { by: vec!["g".into()], ..total_y(LonelyPsu::Fail) };
    let est = estimate(&t, &req).unwrap().estimates;
    assert_eq!(est.len(), 2, "the row with a missing domain value belongs to no domain");
    let x = &est[0];
    assert_eq!(x.domain.as_ref().unwrap().get("g"), Some("x"));
    // Domain x: A has PSU totals 2 and 0 (PSU 2 is outside), B 12 and 8; C has no x row, so
    // its lonely PSU does not matter. df: PSUs 1, 3, 4 minus strata A, B.
    assert_eq!(x.estimate, 22.0);
    assert!(rel(x.var, 2.0 * 2.0 + 16.0) < 1e-14);
    assert_eq!(x.df, 1);
    let json = serde_json::to_value(x).unwrap();
    assert_eq!(json["domain"], serde_json::json!({"g": "x"}));
    assert!(json.get("level").is_none(), "absent level is omitted");
}

#[test]
fn empty_domain_unknown_column_and_bad_weights_are_clear_errors() {
    let mut t = tiny();
    t.add_numeric_opt("y_none_in_b", vec![Some(1.0), Some(2.0), None, None, Some(3.0)]).unwrap();
    t.add_text("wtext", &[Some("1"), Some("2"), Some("heavy"), Some("1"), Some("1")]).unwrap();
    let req = EstimateRequest {
        by: vec!["h".into()],
        statistics: vec![StatisticSpec::Mean("y_none_in_b".into())],
        ..total_y(LonelyPsu::Remove)
    };
    let msg = err(&t, req);
    assert!(msg.contains("h=B") && msg.contains("y_none_in_b"), "{msg}");
    let msg = err(
        &t,
        EstimateRequest {
            statistics: vec![StatisticSpec::Mean("income".into())],
            ..total_y(LonelyPsu::Remove)
        },
    );
    assert!(msg.contains("'income'") && msg.contains("mean") && msg.contains("psu"), "{msg}");
    let msg =
        err(&t, EstimateRequest { weights: Some("wtext".into()), ..total_y(LonelyPsu::Remove) });
    assert!(msg.contains("'wtext'") && msg.contains("row 3") && msg.contains("heavy"), "{msg}");
    let msg =
        err(&t, EstimateRequest { strata: Some("nope".into()), ..total_y(LonelyPsu::Remove) });
    assert!(msg.contains("'nope'") && msg.contains("strata"), "{msg}");
}

#[test]
fn design_checks() {
    let mut t = tiny();
    // PSU 1 appears in two strata.
    t.add_numeric("psu_bad", vec![1.0, 2.0, 1.0, 4.0, 5.0]).unwrap();
    let msg =
        err(&t, EstimateRequest { clusters: vec!["psu_bad".into()], ..total_y(LonelyPsu::Remove) });
    assert!(msg.contains("nested") && msg.contains("'A'") && msg.contains("'B'"), "{msg}");
    // ... which is fine when ids are only unique within strata.
    let e = one(
        &t,
        EstimateRequest {
            clusters: vec!["psu_bad".into()],
            nest: true,
            ..total_y(LonelyPsu::Remove)
        },
    );
    assert!(rel(e.var, 32.0) < 1e-14);
    t.add_numeric("fpc_mixed", vec![0.5, 0.5, 6.0, 6.0, 1.0]).unwrap();
    let msg =
        err(&t, EstimateRequest { fpc: vec!["fpc_mixed".into()], ..total_y(LonelyPsu::Remove) });
    assert!(msg.contains("fpc_mixed") && msg.contains("fractions"), "{msg}");
    t.add_numeric("fpc_small", vec![1.5, 1.5, 6.0, 6.0, 1.0]).unwrap();
    let msg =
        err(&t, EstimateRequest { fpc: vec!["fpc_small".into()], ..total_y(LonelyPsu::Remove) });
    assert!(msg.contains("more than 100%") && msg.contains("'A'"), "{msg}");
    t.add_numeric_opt("psu_na", vec![Some(1.0), None, Some(3.0), Some(4.0), Some(5.0)]).unwrap();
    let msg =
        err(&t, EstimateRequest { clusters: vec!["psu_na".into()], ..total_y(LonelyPsu::Remove) });
    assert!(msg.contains("psu_na") && msg.contains("row 2"), "{msg}");
    let msg = err(
        &t,
        EstimateRequest {
            clusters: vec!["psu".into(), "psu".into()],
            fpc: vec!["pop".into()],
            ..total_y(LonelyPsu::Remove)
        },
    );
    assert!(msg.contains("one fpc per stage"), "{msg}");
}

#[test]
fn reliability_flags_and_ci_fallbacks() {
    let t = tiny();
    let req = EstimateRequest { ci: CiMethod::Logit, ..total_y(LonelyPsu::Remove) };
    let e = one(&t, req.clone());
    assert_eq!(e.ci_method, CiMethod::T, "logit is for proportions; a total falls back to t");
    assert!(e.flags.contains(&"low_n".to_string()), "5 rows <= 10");
    assert!(!e.flags.contains(&"high_cv".to_string()));
    let strict = EstimateRequest {
        reliability: observatory_stats::Reliability { min_n: 3, max_cv: 0.05 },
        ..req
    };
    let e = one(&t, strict);
    assert!(!e.flags.contains(&"low_n".to_string()));
    assert!(e.flags.contains(&"high_cv".to_string()), "cv {:?}", e.cv);
}

#[test]
fn proportions_by_level_with_beta_intervals() {
    let mut t = tiny();
    t.add_text("victim", &[Some("yes"), Some("no"), Some("no"), Some("yes"), Some("no")]).unwrap();
    let req = EstimateRequest {
        statistics: vec![StatisticSpec::Prop("victim".into())],
        ci: CiMethod::Beta,
        ..total_y(LonelyPsu::Remove)
    };
    let est = estimate(&t, &req).unwrap().estimates;
    let levels: Vec<&str> = est.iter().map(|e| e.level.as_deref().unwrap()).collect();
    assert_eq!(levels, ["no", "yes"], "levels in sorted order, as factor()");
    assert!(rel(est[0].estimate + est[1].estimate, 1.0) < 1e-15);
    assert!(rel(est[0].se, est[1].se) < 1e-12, "complementary proportions share their SE");
    for e in &est {
        assert_eq!(e.ci_method, CiMethod::Beta);
        let (l, u) = (e.ci_lower.unwrap(), e.ci_upper.unwrap());
        assert!(l < e.estimate && e.estimate < u && l > 0.0 && u < 1.0, "{l} {u}");
    }
}

#[test]
fn errors_are_typed() {
    let t = tiny();
    match estimate(&t, &EstimateRequest { level: 1.5, ..total_y(LonelyPsu::Remove) }) {
        Err(StatsError::InvalidRequest(m)) => assert!(m.contains("--level")),
        other => panic!("{other:?}"),
    }
    match estimate(&t, &total_y(LonelyPsu::Fail)) {
        Err(StatsError::LonelyPsu { stratum, stage, .. }) => {
            assert_eq!((stratum.as_str(), stage), ("C", 1))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_replicate_weight_names_column_and_row() {
    let (mut t, _) = replicate_table();
    t.add_numeric("rw5", vec![1.0, f64::NAN, 1.0, 1.0]).unwrap();
    let req = EstimateRequest {
        weights: Some("w".into()),
        repweights: Some("^rw".into()),
        reptype: Some(RepType::Bootstrap),
        statistics: vec![StatisticSpec::Mean("y".into())],
        ..Default::default()
    };
    let msg = err(&t, req.clone());
    assert!(msg.contains("'rw5'") && msg.contains("row 2"), "{msg}");
    let msg = err(&t, EstimateRequest { repweights: Some("^nothing".into()), ..req.clone() });
    assert!(msg.contains("^nothing"), "{msg}");
    let msg = err(&t, EstimateRequest { repweights: Some("([".into()), ..req });
    assert!(msg.contains("invalid replicate-weight pattern"), "{msg}");
}

#[test]
fn ratio_argument_and_json_round_trip() {
    let mut t = tiny();
    t.add_numeric("a/b", vec![1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    // The split is the one where both sides are columns, even with '/' in a name.
    let spec = StatisticSpec::parse_ratio("a/b/w", &t).unwrap();
    assert_eq!(spec, StatisticSpec::Ratio { numerator: "a/b".into(), denominator: "w".into() });
    let msg = StatisticSpec::parse_ratio("y/income", &t).unwrap_err().to_string();
    assert!(msg.contains("'income'"), "{msg}");
    let req = EstimateRequest {
        statistics: vec![spec],
        by: vec!["h".into()],
        ..total_y(LonelyPsu::Remove)
    };
    let report = estimate(&t, &req).unwrap();
    let json = serde_json::to_string(&report).unwrap();
    let back: observatory_stats::EstimateReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let first = &v["estimates"][0];
    for key in [
        "statistic",
        "variable",
        "domain",
        "estimate",
        "se",
        "var",
        "cv",
        "deff",
        "deff_replace",
        "df",
        "n",
        "ci_lower",
        "ci_upper",
        "ci_method",
        "flags",
    ] {
        assert!(first.get(key).is_some(), "missing {key} in {first}");
    }
    assert_eq!(first["statistic"], "ratio");
    assert_eq!(first["variable"], "a/b/w");
    assert_eq!(first["ci_method"], "t");
}

#[test]
fn jackknife_of_a_fully_sampled_population_has_no_variance() {
    // R: as.svrepdesign(svydesign(id = ~psu, weights = ~w, fpc = ~N, ...), "JK1") with N equal to
    // the number of PSUs has no replicates: SE 0 and degf -1 (qr rank 0, minus 1).
    let mut t = tiny();
    t.add_numeric("N5", vec![5.0; 5]).unwrap();
    let req = EstimateRequest {
        weights: Some("w".into()),
        clusters: vec!["psu".into()],
        fpc: vec!["N5".into()],
        replicates: Some(JackknifeKind::Jk1),
        statistics: vec![StatisticSpec::Mean("y".into())],
        ..Default::default()
    };
    let e = one(&t, req);
    assert_eq!((e.se, e.df), (0.0, -1));
    assert!(e.ci_lower.is_none() && e.flags.contains(&"no_df".to_string()));
}

/// Ten respondents in five PSUs of two strata; `all` is 1 for everyone, `some` for four.
fn small_prop() -> Table {
    let mut t = Table::new();
    t.add_text(
        "h",
        &[
            Some("A"),
            Some("A"),
            Some("A"),
            Some("A"),
            Some("A"),
            Some("B"),
            Some("B"),
            Some("B"),
            Some("B"),
            Some("B"),
        ],
    )
    .unwrap();
    t.add_numeric("psu", vec![1.0, 1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0]).unwrap();
    t.add_numeric("w", vec![1.0, 2.0, 1.5, 1.0, 2.0, 3.0, 1.0, 1.0, 2.0, 1.0]).unwrap();
    t.add_text("all", &[Some("yes"); 10]).unwrap();
    t.add_numeric("all01", vec![1.0; 10]).unwrap();
    t.add_text(
        "some",
        &[
            Some("yes"),
            Some("no"),
            Some("no"),
            Some("no"),
            Some("yes"),
            Some("no"),
            Some("no"),
            Some("yes"),
            Some("no"),
            Some("yes"),
        ],
    )
    .unwrap();
    t.add_numeric("size", vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 40.0]).unwrap();
    t
}

fn prop_request(stat: StatisticSpec, ci: CiMethod) -> EstimateRequest {
    EstimateRequest {
        weights: Some("w".into()),
        strata: Some("h".into()),
        clusters: vec!["psu".into()],
        statistics: vec![stat],
        ci,
        ..Default::default()
    }
}

#[test]
fn a_proportion_of_one_has_no_interval_that_excludes_it() {
    let t = small_prop();
    for ci in [CiMethod::Auto, CiMethod::Logit, CiMethod::Beta] {
        let e = one(&t, prop_request(StatisticSpec::Prop("all".into()), ci));
        assert_eq!(e.estimate, 1.0);
        assert_eq!((e.ci_lower, e.ci_upper), (None, None), "{ci}: {e:?}");
        assert!(e.flags.contains(&"ci_undefined".to_string()), "{ci}: {:?}", e.flags);
    }
    // The mean of a 0/1 column that is always 1: logit has no interval either.
    let e = one(&t, prop_request(StatisticSpec::Mean("all01".into()), CiMethod::Logit));
    assert_eq!((e.ci_lower, e.ci_upper), (None, None), "{e:?}");
    assert!(e.flags.contains(&"ci_undefined".to_string()));
}

#[test]
fn proportions_default_to_logit_and_stay_in_the_unit_interval() {
    let t = small_prop();
    let estimates = estimate(&t, &prop_request(StatisticSpec::Prop("some".into()), CiMethod::Auto))
        .unwrap()
        .estimates;
    assert_eq!(estimates.len(), 2);
    for e in &estimates {
        assert_eq!(e.ci_method, CiMethod::Logit, "{e:?}");
        let (l, u) = (e.ci_lower.unwrap(), e.ci_upper.unwrap());
        assert!(0.0 <= l && l <= e.estimate && e.estimate <= u && u <= 1.0, "{e:?}");
        assert!(!e.flags.contains(&"ci_outside_range".to_string()));
    }
    // Means and totals keep t by default.
    let e = one(&t, prop_request(StatisticSpec::Mean("size".into()), CiMethod::Auto));
    assert_eq!(e.ci_method, CiMethod::T);
}

#[test]
fn intervals_leaving_the_range_of_the_statistic_are_flagged() {
    let t = small_prop();
    // A Wald interval of a proportion on 5 PSUs reaches below 0.
    let wald = estimate(&t, &prop_request(StatisticSpec::Prop("some".into()), CiMethod::T))
        .unwrap()
        .estimates;
    assert!(
        wald.iter().any(|e| e.ci_lower.unwrap() < 0.0 || e.ci_upper.unwrap() > 1.0),
        "the fixture should give a t interval outside [0, 1]: {wald:?}"
    );
    for e in &wald {
        let outside = e.ci_lower.unwrap() < 0.0 || e.ci_upper.unwrap() > 1.0;
        assert_eq!(e.flags.contains(&"ci_outside_range".to_string()), outside, "{e:?}");
    }
    // A skewed variable declared in [1, 100]: its mean's t interval goes below 1.
    let mut request = prop_request(StatisticSpec::Mean("size".into()), CiMethod::T);
    let e = one(&t, request.clone());
    assert!(e.ci_lower.unwrap() < 1.0, "{e:?}");
    assert!(!e.flags.contains(&"ci_outside_range".to_string()), "no declared range, no flag");
    request.ranges.insert("size".into(), (Some(1.0), Some(100.0)));
    let e = one(&t, request.clone());
    assert!(e.flags.contains(&"ci_outside_range".to_string()), "{e:?}");
    // Its total cannot be negative once the variable is declared non-negative.
    request.statistics = vec![StatisticSpec::Total("size".into())];
    let e = one(&t, request);
    assert_eq!(
        e.flags.contains(&"ci_outside_range".to_string()),
        e.ci_lower.unwrap() < 0.0,
        "{e:?}"
    );
}
