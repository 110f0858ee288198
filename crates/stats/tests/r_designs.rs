//! More designs checked against R than the shared fixture covers: two-stage designs with and
//! without fpc (and weights derived from the fpc), fpc as fractions, certainty PSUs, every
//! lonely-PSU mode (at stage 1, at stage 2 and in JKn replicates), jackknife weights built from
//! designs (JK1/JKn, with fpc, certainty strata and mse), and replicate weights given as columns
//! (BRR, Fay, bootstrap, JK1, JKn, other; scale/rscales/mse), each with means, totals, ratios,
//! proportions, domains, design effects, per-domain degf and svyciprop logit/beta intervals
//! (also within domains, as svyby(..., svyciprop)).
//!
//! `tests/data/r_designs/` holds the data and the expected values, produced on Debian bookworm
//! with R 4.2.2 and survey 4.1-1 by `Rscript gen_data.R; Rscript gen_rep.R; Rscript
//! gen_expected.R` (the scripts are next to the data). Values compare at a relative 1e-9;
//! logit intervals of replicate designs at 1e-8 (R refits a glm per replicate to its own
//! convergence tolerance).

#![allow(clippy::excessive_precision)] // R values quoted digit for digit

use std::collections::BTreeMap;

use observatory_stats::{
    CiMethod, Estimate, EstimateRequest, JackknifeKind, LonelyPsu, RepType, StatisticSpec, Table,
    estimate,
};

const DATA: &str = include_str!("data/r_designs/survey_small.csv");
const EXPECTED: &str = include_str!("data/r_designs/expected.tsv");
const JKN_RSCALES: &str = include_str!("data/r_designs/jkn_rscales.txt");
const DOMAINS: [&str; 3] = ["north", "south", "west"];

fn expected() -> BTreeMap<String, f64> {
    EXPECTED
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once('\t').expect("key<TAB>value");
            let v = v.trim();
            (k.to_string(), if v == "NA" { f64::NAN } else { v.parse().expect("number") })
        })
        .collect()
}

fn table() -> Table {
    let mut t = Table::from_csv_str(DATA).expect("test data parses");
    let n = t.n_rows();
    // R: fpc = ~I(13/N1), the sampling fraction of 13 PSUs out of 40.
    t.add_numeric("frac1", vec![13.0 / 40.0; n]).unwrap();
    t
}

fn linear(strata: Option<&str>, clusters: &[&str], fpc: &[&str], weights: bool) -> EstimateRequest {
    EstimateRequest {
        weights: weights.then(|| "w".to_string()),
        strata: strata.map(str::to_string),
        clusters: clusters.iter().map(|s| s.to_string()).collect(),
        fpc: fpc.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn columns(pattern: &str, rep_type: RepType) -> EstimateRequest {
    EstimateRequest {
        weights: Some("w".into()),
        repweights: Some(pattern.into()),
        reptype: Some(rep_type),
        ..Default::default()
    }
}

/// The designs of gen_expected.R's `common()` calls.
fn common_designs() -> Vec<(&'static str, EstimateRequest, bool)> {
    let jkn_rscales: Vec<f64> = JKN_RSCALES.lines().map(|l| l.trim().parse().unwrap()).collect();
    let jk = |strata: Option<&str>, fpc: &[&str], kind: JackknifeKind, mse: bool| EstimateRequest {
        replicates: Some(kind),
        mse,
        ..linear(strata, &["psu"], fpc, true)
    };
    vec![
        ("two_stage_fpc", linear(Some("h2"), &["psu", "ssu"], &["fpc1m", "fpc2c"], true), false),
        ("two_stage_nofpc", linear(Some("h2"), &["psu", "ssu"], &[], true), false),
        (
            "two_stage_fpc_noweights",
            linear(Some("h2"), &["psu", "ssu"], &["fpc1m", "fpc2c"], false),
            false,
        ),
        ("cluster_fraction", linear(None, &["psu"], &["frac1"], true), false),
        ("certainty_psu", linear(Some("h"), &["psu"], &["fpc1c"], true), false),
        ("as_jk1", jk(None, &[], JackknifeKind::Jk1, false), true),
        ("as_jk1_fpc", jk(None, &["N1"], JackknifeKind::Jk1, false), true),
        ("as_jkn", jk(Some("h2"), &[], JackknifeKind::Jkn, false), true),
        ("as_jkn_fpc_certainty", jk(Some("h"), &["fpc1c"], JackknifeKind::Jkn, false), true),
        ("as_jkn_mse", jk(Some("h2"), &[], JackknifeKind::Jkn, true), true),
        ("cols_brr", columns("^brr", RepType::Brr), true),
        ("cols_fay", columns("^fay", RepType::Fay { rho: 0.3 }), true),
        ("cols_boot", columns("^boot", RepType::Bootstrap), true),
        (
            "cols_boot_mse",
            EstimateRequest { mse: true, ..columns("^boot", RepType::Bootstrap) },
            true,
        ),
        ("cols_jk1", columns("^jkone", RepType::Jk1), true),
        (
            "cols_jk1_scale",
            EstimateRequest { scale: Some(0.8), ..columns("^jkone", RepType::Jk1) },
            true,
        ),
        (
            "cols_jkn",
            EstimateRequest { rscales: Some(jkn_rscales), ..columns("^jkn", RepType::Jkn) },
            true,
        ),
        (
            "cols_other",
            EstimateRequest {
                scale: Some(0.05),
                rscales: Some(vec![0.9]),
                ..columns("^boot", RepType::Other)
            },
            true,
        ),
    ]
}

struct Check<'a> {
    want: &'a BTreeMap<String, f64>,
    seen: usize,
    max_rel: f64,
    max_key: String,
    /// Largest relative difference outside the logit intervals of replicate designs.
    max_rel_strict: f64,
    max_key_strict: String,
    failures: Vec<String>,
}

impl Check<'_> {
    fn value(&mut self, key: &str, got: f64, tol: f64) {
        let Some(&want) = self.want.get(key) else {
            self.failures.push(format!("{key}: not in expected.tsv"));
            return;
        };
        self.seen += 1;
        if want.is_nan() {
            if !got.is_nan() {
                self.failures.push(format!("{key}: got {got}, R gives NA"));
            }
            return;
        }
        let rel = if want == 0.0 { got.abs() } else { ((got - want) / want).abs() };
        if rel.is_nan() || rel > tol {
            self.failures.push(format!("{key}: got {got:.17}, R {want:.17} (rel {rel:e})"));
        }
        if rel > self.max_rel {
            self.max_rel = rel;
            self.max_key = key.to_string();
        }
        if tol <= 1e-9 && rel > self.max_rel_strict {
            self.max_rel_strict = rel;
            self.max_key_strict = key.to_string();
        }
    }

    fn opt(&mut self, key: &str, got: Option<f64>, tol: f64) {
        self.value(key, got.unwrap_or(f64::NAN), tol);
    }
}

fn run(
    t: &Table,
    base: &EstimateRequest,
    stat: StatisticSpec,
    by: bool,
    ci: CiMethod,
) -> Vec<Estimate> {
    let req = EstimateRequest {
        statistics: vec![stat.clone()],
        by: if by { vec!["dom".into()] } else { Vec::new() },
        ci,
        ..base.clone()
    };
    estimate(t, &req).unwrap_or_else(|e| panic!("{stat:?} (by {by}): {e}")).estimates
}

fn by_domain<'e>(v: &'e [Estimate], dom: &str, level: Option<&str>) -> &'e Estimate {
    v.iter()
        .find(|e| {
            e.domain.as_ref().and_then(|d| d.get("dom")) == Some(dom) && e.level.as_deref() == level
        })
        .unwrap_or_else(|| panic!("no estimate for dom={dom} level={level:?}"))
}

fn common(c: &mut Check, t: &Table, key: &str, base: &EstimateRequest, replicate: bool) {
    let k = |s: &str| format!("{key}/{s}");
    let tol_logit = if replicate { 1e-8 } else { 1e-9 };

    let m = &run(t, base, StatisticSpec::Mean("y".into()), false, CiMethod::T)[0];
    c.value(&k("degf"), m.df as f64, 0.0);
    for (name, e) in [
        ("mean_y", m),
        ("total_y", &run(t, base, StatisticSpec::Total("y".into()), false, CiMethod::T)[0]),
    ] {
        c.value(&k(&format!("{name}/est")), e.estimate, 1e-9);
        c.value(&k(&format!("{name}/se")), e.se, 1e-9);
        c.opt(&k(&format!("{name}/deff")), e.deff, 1e-9);
        c.opt(&k(&format!("{name}/deff_replace")), e.deff_replace, 1e-9);
    }
    let ratio = StatisticSpec::Ratio { numerator: "y".into(), denominator: "x".into() };
    let r = &run(t, base, ratio.clone(), false, CiMethod::T)[0];
    c.value(&k("ratio_y_x/est"), r.estimate, 1e-9);
    c.value(&k("ratio_y_x/se"), r.se, 1e-9);
    if !replicate {
        c.opt(&k("ratio_y_x/deff"), r.deff, 1e-9);
        c.opt(&k("ratio_y_x/deff_replace"), r.deff_replace, 1e-9);
    }
    for (stat, name) in [
        (StatisticSpec::Prop("cat".into()), "prop_cat"),
        (StatisticSpec::Total("cat".into()), "total_cat"),
    ] {
        let v = run(t, base, stat, false, CiMethod::T);
        for (i, lev) in ["a", "b", "c"].iter().enumerate() {
            let e = v.iter().find(|e| e.level.as_deref() == Some(lev)).unwrap();
            c.value(&k(&format!("{name}/est#{}", i + 1)), e.estimate, 1e-9);
            c.value(&k(&format!("{name}/se#{}", i + 1)), e.se, 1e-9);
        }
    }

    let bm = run(t, base, StatisticSpec::Mean("y".into()), true, CiMethod::T);
    let bt = run(t, base, StatisticSpec::Total("y".into()), true, CiMethod::T);
    let br = run(t, base, ratio, true, CiMethod::T);
    let bp = run(t, base, StatisticSpec::Prop("cat".into()), true, CiMethod::T);
    for (i, dom) in DOMAINS.iter().enumerate() {
        let j = i + 1;
        let e = by_domain(&bm, dom, None);
        c.value(&k(&format!("by_mean_y/est#{j}")), e.estimate, 1e-9);
        c.value(&k(&format!("by_mean_y/se#{j}")), e.se, 1e-9);
        c.opt(&k(&format!("by_mean_y/deff#{j}")), e.deff, 1e-9);
        c.value(&k(&format!("by_degf#{j}")), e.df as f64, 0.0);
        let e = by_domain(&bt, dom, None);
        c.value(&k(&format!("by_total_y/est#{j}")), e.estimate, 1e-9);
        c.value(&k(&format!("by_total_y/se#{j}")), e.se, 1e-9);
        let e = by_domain(&br, dom, None);
        c.value(&k(&format!("by_ratio_y_x/est#{j}")), e.estimate, 1e-9);
        c.value(&k(&format!("by_ratio_y_x/se#{j}")), e.se, 1e-9);
        for (l, lev) in ["a", "b", "c"].iter().enumerate() {
            // coef(svyby) is column-major: level by level, domains within.
            let e = by_domain(&bp, dom, Some(lev));
            c.value(&k(&format!("by_prop_cat/est#{}", l * 3 + j)), e.estimate, 1e-9);
            c.value(&k(&format!("by_prop_cat/se#{}", l * 3 + j)), e.se, 1e-9);
        }
    }

    // svyciprop(~bin) and svyby(~bin, ~dom, svyciprop): bin is a 0/1 numeric variable.
    for (method, ci, tol) in [("logit", CiMethod::Logit, tol_logit), ("beta", CiMethod::Beta, 1e-9)]
    {
        let e = &run(t, base, StatisticSpec::Mean("bin".into()), false, ci)[0];
        assert_eq!(e.ci_method, ci, "{key}: 0/1 variable gets the proportion interval");
        c.value(&k(&format!("{method}/est")), e.estimate, 1e-9);
        c.opt(&k(&format!("{method}/ci#1")), e.ci_lower, tol);
        c.opt(&k(&format!("{method}/ci#2")), e.ci_upper, tol);
        let v = run(t, base, StatisticSpec::Mean("bin".into()), true, ci);
        for (i, dom) in DOMAINS.iter().enumerate() {
            let e = by_domain(&v, dom, None);
            c.opt(&k(&format!("by_{method}/lower#{}", i + 1)), e.ci_lower, tol);
            c.opt(&k(&format!("by_{method}/upper#{}", i + 1)), e.ci_upper, tol);
        }
    }
}

#[test]
fn designs_agree_with_r() {
    let want = expected();
    let t = table();
    let mut c = Check {
        want: &want,
        seen: 0,
        max_rel: 0.0,
        max_key: String::new(),
        max_rel_strict: 0.0,
        max_key_strict: String::new(),
        failures: Vec::new(),
    };

    for (key, base, replicate) in common_designs() {
        common(&mut c, &t, key, &base, replicate);
    }

    for mode in [LonelyPsu::Adjust, LonelyPsu::Average, LonelyPsu::Remove, LonelyPsu::Certainty] {
        let one_stage =
            EstimateRequest { lonely_psu: mode, ..linear(Some("h"), &["psu"], &[], true) };
        let key = format!("lonely_{mode}");
        let m = &run(&t, &one_stage, StatisticSpec::Mean("y".into()), false, CiMethod::T)[0];
        c.value(&format!("{key}/degf"), m.df as f64, 0.0);
        c.value(&format!("{key}/mean_y/est"), m.estimate, 1e-9);
        c.value(&format!("{key}/mean_y/se"), m.se, 1e-9);
        let tot = &run(&t, &one_stage, StatisticSpec::Total("y".into()), false, CiMethod::T)[0];
        c.value(&format!("{key}/total_y/est"), tot.estimate, 1e-9);
        c.value(&format!("{key}/total_y/se"), tot.se, 1e-9);
        let by = run(&t, &one_stage, StatisticSpec::Mean("y".into()), true, CiMethod::T);
        for (i, dom) in DOMAINS.iter().enumerate() {
            let e = by_domain(&by, dom, None);
            c.value(&format!("{key}/by_mean_y/est#{}", i + 1), e.estimate, 1e-9);
            c.value(&format!("{key}/by_mean_y/se#{}", i + 1), e.se, 1e-9);
        }

        // Two stages with fpc: PSUs with one sampled SSU are lonely at stage 2.
        let two_stage = EstimateRequest {
            lonely_psu: mode,
            ..linear(Some("h"), &["psu", "ssu"], &["fpc1", "fpc2"], true)
        };
        let m = &run(&t, &two_stage, StatisticSpec::Mean("y".into()), false, CiMethod::T)[0];
        c.value(&format!("lonely2_{mode}/mean_y/est"), m.estimate, 1e-9);
        c.value(&format!("lonely2_{mode}/mean_y/se"), m.se, 1e-9);

        let jkn = EstimateRequest { replicates: Some(JackknifeKind::Jkn), ..one_stage.clone() };
        let key = format!("jkn_lonely_{mode}");
        let m = &run(&t, &jkn, StatisticSpec::Mean("y".into()), false, CiMethod::T)[0];
        c.value(&format!("{key}/degf"), m.df as f64, 0.0);
        c.value(&format!("{key}/mean_y/est"), m.estimate, 1e-9);
        c.value(&format!("{key}/mean_y/se"), m.se, 1e-9);
        let tot = &run(&t, &jkn, StatisticSpec::Total("y".into()), false, CiMethod::T)[0];
        c.value(&format!("{key}/total_y/est"), tot.estimate, 1e-9);
        c.value(&format!("{key}/total_y/se"), tot.se, 1e-9);
    }

    // With the default lonely.psu = "fail", the lonely stratum D is an error naming it.
    for base in [
        linear(Some("h"), &["psu"], &[], true),
        EstimateRequest {
            replicates: Some(JackknifeKind::Jkn),
            ..linear(Some("h"), &["psu"], &[], true)
        },
    ] {
        let req = EstimateRequest { statistics: vec![StatisticSpec::Mean("y".into())], ..base };
        let err = estimate(&t, &req).unwrap_err().to_string();
        assert!(err.contains("stratum 'D'") && err.contains("one PSU"), "{err}");
    }

    println!(
        "R designs: {} values checked; largest relative difference {:.3e} ({}); outside replicate logit intervals {:.3e} ({})",
        c.seen, c.max_rel, c.max_key, c.max_rel_strict, c.max_key_strict
    );
    assert_eq!(c.seen, want.len(), "every expected value is checked");
    assert!(
        c.failures.is_empty(),
        "{} of {} values differ from R:\n{}",
        c.failures.len(),
        c.seen,
        c.failures.join("\n")
    );
}
