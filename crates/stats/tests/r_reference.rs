//! Every value of `testdata/survey/reference.json` (R 4.2.2, survey 4.1-1) reproduced through
//! the public API at a relative difference <= 1e-9 (logit intervals 1e-8, whose R estimate comes
//! from an IRLS fit stopped at its own tolerance; absolute 1e-12 where R reports exactly 0).
//!
//! The directory is `testdata/survey` of the repository (sources in its README), or
//! `$OBSERVATORY_SURVEY_REFERENCE_DIR`. A missing directory fails the test: it never skips.

#![allow(clippy::excessive_precision)] // R values quoted digit for digit

use std::path::{Path, PathBuf};

use observatory_stats::ci::{korn_graubard, logit_interval, logit_se_from};
use observatory_stats::dist::{qnorm, qt};
use observatory_stats::{
    CiMethod, DesignSpec, Estimate, EstimateRequest, LinearDesign, StatisticSpec, Table, estimate,
};
use serde_json::Value;

const TOL: f64 = 1e-9;
const TOL_LOGIT: f64 = 1e-8;
const ABS_TOL_ZERO: f64 = 1e-12;

/// `$OBSERVATORY_SURVEY_REFERENCE_DIR`, else the copy committed in the repository.
fn reference_dir() -> PathBuf {
    match std::env::var_os("OBSERVATORY_SURVEY_REFERENCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/survey")),
    }
}

fn read(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "R reference data not found: could not read {} ({e}). The survey reference files live in \
             testdata/survey of the repository; set OBSERVATORY_SURVEY_REFERENCE_DIR to another directory \
             holding them.",
            path.display()
        )
    })
}

struct Checker {
    checked: usize,
    /// Largest relative difference over all values, and over those held to 1e-9.
    max_rel: f64,
    max_key: String,
    max_rel_strict: f64,
    max_key_strict: String,
    failures: Vec<String>,
}

impl Checker {
    fn check(&mut self, key: &str, got: f64, want: f64, tol: f64) {
        self.checked += 1;
        if want == 0.0 {
            if got.is_nan() || got.abs() > ABS_TOL_ZERO {
                self.failures.push(format!(
                    "{key}: got {got:e}, R has exactly 0 (abs tol {ABS_TOL_ZERO:e})"
                ));
            }
            return;
        }
        let rel = ((got - want) / want).abs();
        if rel.is_nan() || rel > tol {
            self.failures
                .push(format!("{key}: got {got:.17}, R {want:.17}, rel {rel:e} > {tol:e}"));
        }
        if rel > self.max_rel || rel.is_nan() {
            self.max_rel = rel;
            self.max_key = key.to_string();
        }
        if tol <= TOL && (rel > self.max_rel_strict || rel.is_nan()) {
            self.max_rel_strict = rel;
            self.max_key_strict = key.to_string();
        }
    }

    fn num(&mut self, key: &str, got: f64, v: &Value, tol: f64) {
        match v.as_f64() {
            Some(want) => self.check(key, got, want, tol),
            None => self.failures.push(format!("{key}: reference value {v} is not a number")),
        }
    }
}

fn design_request(name: &str, r_call: &str) -> EstimateRequest {
    let mut req = EstimateRequest { weights: Some("pw".into()), ..Default::default() };
    match name {
        "dstrat" | "dstrat_nofpc" => req.strata = Some("stype".into()),
        "dclus1" | "dclus1_nofpc" => req.clusters = vec!["dnum".into()],
        other => panic!(
            "reference.json has a design '{other}' this test does not know; its R call is {r_call}"
        ),
    }
    if !name.ends_with("_nofpc") {
        req.fpc = vec!["fpc".into()];
    }
    req
}

fn run(
    table: &Table,
    base: &EstimateRequest,
    stat: StatisticSpec,
    by: &[&str],
    ci: CiMethod,
) -> Vec<Estimate> {
    let req = EstimateRequest {
        statistics: vec![stat.clone()],
        by: by.iter().map(|s| s.to_string()).collect(),
        ci,
        ..base.clone()
    };
    estimate(table, &req).unwrap_or_else(|e| panic!("estimating {stat:?}: {e}")).estimates
}

fn one(v: Vec<Estimate>) -> Estimate {
    assert_eq!(v.len(), 1, "expected one estimate, got {v:?}");
    v.into_iter().next().unwrap()
}

fn level<'a>(v: &'a [Estimate], level: &str) -> &'a Estimate {
    v.iter()
        .find(|e| e.level.as_deref() == Some(level))
        .unwrap_or_else(|| panic!("no level '{level}' in {v:?}"))
}

#[test]
fn agrees_with_r_survey_package() {
    let dir = reference_dir();
    let _readme = read(&dir, "README.md");
    let reference: Value =
        serde_json::from_str(&read(&dir, "reference.json")).expect("reference.json is JSON");
    let tables = [
        (
            "apistrat",
            Table::from_csv_str(&read(&dir, "apistrat.csv")).expect("apistrat.csv parses"),
        ),
        (
            "apiclus1",
            Table::from_csv_str(&read(&dir, "apiclus1.csv")).expect("apiclus1.csv parses"),
        ),
    ];
    let designs = reference["designs"].as_object().expect("designs object");
    assert!(designs.len() >= 4, "expected the four designs, found {}", designs.len());

    let mut c = Checker {
        checked: 0,
        max_rel: 0.0,
        max_key: String::new(),
        max_rel_strict: 0.0,
        max_key_strict: String::new(),
        failures: Vec::new(),
    };
    // `cds` has leading zeros in apiclus1: the text must survive while the column reads as numbers.
    let cds = tables[1].1.column("cds").expect("cds column");
    assert_eq!(cds.text(0).as_deref(), Some("01612910137588"));
    for (name, d) in designs {
        let r_call = d["r_call"].as_str().unwrap_or_default();
        let data = if r_call.contains("apistrat") { "apistrat" } else { "apiclus1" };
        let table = &tables.iter().find(|(n, _)| *n == data).unwrap().1;
        let base = design_request(name, r_call);
        let k = |key: &str| format!("{name}.{key}");

        // Design summaries.
        let spec = DesignSpec {
            weights: base.weights.clone(),
            strata: base.strata.clone(),
            clusters: base.clusters.clone(),
            fpc: base.fpc.clone(),
            ..Default::default()
        };
        let design = LinearDesign::from_table(table, &spec).expect("design builds");
        let info = &d["info"];
        c.num(&k("info.n_obs"), table.n_rows() as f64, &info["n_obs"], 0.0);
        c.num(&k("info.degf"), design.degf() as f64, &info["degf"], 0.0);
        c.num(&k("info.sum_weights"), design.weights().iter().sum(), &info["sum_weights"], TOL);
        c.num(&k("info.n_psu_stage1"), design.n_psu() as f64, &info["n_psu_stage1"], 0.0);
        c.num(&k("info.n_strata_stage1"), design.n_strata() as f64, &info["n_strata_stage1"], 0.0);
        assert_eq!(Some(design.has_fpc()), info["has_fpc"].as_bool(), "{name}: has_fpc");
        c.num(&k("degf"), design.degf() as f64, &d["degf"], 0.0);

        // svymean(~api00) with deff, and both confidence intervals.
        let m = one(run(table, &base, StatisticSpec::Mean("api00".into()), &[], CiMethod::Wald));
        c.num(&k("svymean_api00.estimate"), m.estimate, &d["svymean_api00"]["estimate"], TOL);
        c.num(&k("svymean_api00.se"), m.se, &d["svymean_api00"]["se"], TOL);
        let r = &d["svymean_api00_deff"];
        c.num(&k("svymean_api00_deff.estimate"), m.estimate, &r["estimate"], TOL);
        c.num(&k("svymean_api00_deff.se"), m.se, &r["se"], TOL);
        c.num(&k("svymean_api00_deff.deff"), m.deff.unwrap_or(f64::NAN), &r["deff"], TOL);
        c.num(
            &k("svymean_api00_deff.deff_replace"),
            m.deff_replace.unwrap_or(f64::NAN),
            &r["deff_replace"],
            TOL,
        );
        let r = &d["confint_svymean_api00"];
        assert_eq!(r["df"].as_str(), Some("Inf"), "{name}: Wald interval uses the normal quantile");
        c.num(&k("confint_svymean_api00.level"), 0.95, &r["level"], 0.0);
        c.num(&k("confint_svymean_api00.crit"), qnorm(0.975), &r["crit"], TOL);
        c.num(&k("confint_svymean_api00.lower"), m.ci_lower.unwrap(), &r["lower"], TOL);
        c.num(&k("confint_svymean_api00.upper"), m.ci_upper.unwrap(), &r["upper"], TOL);
        let mt = one(run(table, &base, StatisticSpec::Mean("api00".into()), &[], CiMethod::T));
        let r = &d["confint_svymean_api00_t_degf"];
        c.num(&k("confint_svymean_api00_t_degf.level"), 0.95, &r["level"], 0.0);
        c.num(&k("confint_svymean_api00_t_degf.df"), mt.df as f64, &r["df"], 0.0);
        c.num(&k("confint_svymean_api00_t_degf.crit"), qt(0.975, mt.df as f64), &r["crit"], TOL);
        c.num(&k("confint_svymean_api00_t_degf.lower"), mt.ci_lower.unwrap(), &r["lower"], TOL);
        c.num(&k("confint_svymean_api00_t_degf.upper"), mt.ci_upper.unwrap(), &r["upper"], TOL);

        // svytotal(~enroll, na.rm = TRUE).
        let t = one(run(table, &base, StatisticSpec::Total("enroll".into()), &[], CiMethod::T));
        let r = &d["svytotal_enroll"];
        c.num(&k("svytotal_enroll.estimate"), t.estimate, &r["estimate"], TOL);
        c.num(&k("svytotal_enroll.se"), t.se, &r["se"], TOL);
        c.num(
            &k("svytotal_enroll.n_missing"),
            (table.n_rows() as u64 - t.n) as f64,
            &r["n_missing"],
            0.0,
        );

        // svymean(~factor(stype)).
        let props = run(table, &base, StatisticSpec::Prop("stype".into()), &[], CiMethod::T);
        for (lev, r) in d["svymean_factor_stype"].as_object().expect("factor levels") {
            let e = level(&props, lev);
            c.num(
                &k(&format!("svymean_factor_stype.{lev}.estimate")),
                e.estimate,
                &r["estimate"],
                TOL,
            );
            c.num(&k(&format!("svymean_factor_stype.{lev}.se")), e.se, &r["se"], TOL);
        }

        // svyratio(~api.stu, ~enroll).
        let ratio = StatisticSpec::parse_ratio("api.stu/enroll", table).expect("ratio columns");
        let e = one(run(table, &base, ratio, &[], CiMethod::T));
        let r = &d["svyratio_api.stu_enroll"];
        c.num(&k("svyratio_api.stu_enroll.estimate"), e.estimate, &r["estimate"], TOL);
        c.num(&k("svyratio_api.stu_enroll.se"), e.se, &r["se"], TOL);

        // svyby(~api00, ~stype, svymean): domain estimation on the full design.
        let by = run(table, &base, StatisticSpec::Mean("api00".into()), &["stype"], CiMethod::T);
        for (dom, r) in d["svyby_api00_stype_svymean"].as_object().expect("domains") {
            let e = by
                .iter()
                .find(|e| e.domain.as_ref().and_then(|x| x.get("stype")) == Some(dom.as_str()))
                .unwrap_or_else(|| panic!("{name}: no domain stype={dom}"));
            c.num(
                &k(&format!("svyby_api00_stype_svymean.{dom}.estimate")),
                e.estimate,
                &r["estimate"],
                TOL,
            );
            c.num(&k(&format!("svyby_api00_stype_svymean.{dom}.se")), e.se, &r["se"], TOL);
        }

        // svytotal(~I(sch.wide == "Yes")): FALSE is level "No", TRUE is level "Yes".
        let totals = run(table, &base, StatisticSpec::Total("sch.wide".into()), &[], CiMethod::T);
        for (lev, r) in d["svytotal_schwide_yes"].as_object().expect("indicator totals") {
            let e = level(&totals, if lev == "TRUE" { "Yes" } else { "No" });
            c.num(
                &k(&format!("svytotal_schwide_yes.{lev}.estimate")),
                e.estimate,
                &r["estimate"],
                TOL,
            );
            c.num(&k(&format!("svytotal_schwide_yes.{lev}.se")), e.se, &r["se"], TOL);
        }

        // svyciprop(~I(sch.wide == "Yes"), method = "logit").
        let lg = run(table, &base, StatisticSpec::Prop("sch.wide".into()), &[], CiMethod::Logit);
        let e = level(&lg, "Yes");
        assert_eq!(e.ci_method, CiMethod::Logit);
        let r = &d["svyciprop_schwide_yes_logit"];
        assert_eq!(r["method"].as_str(), Some("logit"));
        c.num(&k("svyciprop_logit.level"), 0.95, &r["level"], 0.0);
        c.num(&k("svyciprop_logit.df"), e.df as f64, &r["df"], 0.0);
        c.num(&k("svyciprop_logit.estimate"), e.estimate, &r["estimate"], TOL_LOGIT);
        c.num(&k("svyciprop_logit.se"), e.se, &r["se"], TOL);
        c.num(&k("svyciprop_logit.lower"), e.ci_lower.unwrap(), &r["lower"], TOL_LOGIT);
        c.num(&k("svyciprop_logit.upper"), e.ci_upper.unwrap(), &r["upper"], TOL_LOGIT);
        // R's interval is expit(coef ∓ crit · se) of its glm fit: recover coef and se from our
        // bounds (which reproduce that fit) ...
        let logit = |p: f64| (p / (1.0 - p)).ln();
        let crit = qt(0.975, e.df as f64);
        let (lo, hi) = (logit(e.ci_lower.unwrap()), logit(e.ci_upper.unwrap()));
        c.num(
            &k("svyciprop_logit.aux_logit_coef(fit)"),
            (lo + hi) / 2.0,
            &r["aux_logit_coef"],
            TOL,
        );
        c.num(
            &k("svyciprop_logit.aux_logit_se(fit)"),
            (hi - lo) / (2.0 * crit),
            &r["aux_logit_se"],
            TOL,
        );
        // ... and check the closed form logit(p) ∓ crit · se(p) / (p(1-p)) of the brief too.
        let li = logit_interval(e.estimate, logit_se_from(e.estimate, e.se), 0.95, e.df as f64);
        c.num(&k("svyciprop_logit.aux_logit_coef"), li.coef, &r["aux_logit_coef"], TOL_LOGIT);
        c.num(&k("svyciprop_logit.aux_logit_se"), li.se_coef, &r["aux_logit_se"], TOL_LOGIT);
        c.num(&k("svyciprop_logit.aux_crit"), li.crit, &r["aux_crit"], TOL);
        c.num(
            &k("svyciprop_logit.aux_svymean_estimate"),
            e.estimate,
            &r["aux_svymean_estimate"],
            TOL,
        );
        c.num(&k("svyciprop_logit.lower(closed form)"), li.lower, &r["lower"], TOL_LOGIT);
        c.num(&k("svyciprop_logit.upper(closed form)"), li.upper, &r["upper"], TOL_LOGIT);

        // svyciprop(..., method = "beta") (Korn-Graubard).
        let bt = run(table, &base, StatisticSpec::Prop("sch.wide".into()), &[], CiMethod::Beta);
        let e = level(&bt, "Yes");
        assert_eq!(e.ci_method, CiMethod::Beta);
        let r = &d["svyciprop_schwide_yes_beta"];
        assert_eq!(r["method"].as_str(), Some("beta"));
        c.num(&k("svyciprop_beta.level"), 0.95, &r["level"], 0.0);
        c.num(&k("svyciprop_beta.df"), e.df as f64, &r["df"], 0.0);
        c.num(&k("svyciprop_beta.estimate"), e.estimate, &r["estimate"], TOL);
        c.num(&k("svyciprop_beta.se"), e.se, &r["se"], TOL);
        c.num(&k("svyciprop_beta.lower"), e.ci_lower.unwrap(), &r["lower"], TOL);
        c.num(&k("svyciprop_beta.upper"), e.ci_upper.unwrap(), &r["upper"], TOL);
        let kg = korn_graubard(e.estimate, e.var, table.n_rows() as f64, e.df as f64, 0.95);
        c.num(&k("svyciprop_beta.aux_n_eff_raw"), kg.n_eff_raw, &r["aux_n_eff_raw"], TOL);
        c.num(&k("svyciprop_beta.aux_df_adjust"), kg.df_adjust, &r["aux_df_adjust"], TOL);
        c.num(&k("svyciprop_beta.aux_n_eff"), kg.n_eff, &r["aux_n_eff"], TOL);
    }

    println!(
        "R reference: {} values checked over {} designs; largest relative difference {:.3e} ({}); \
         largest among values held to 1e-9: {:.3e} ({})",
        c.checked,
        designs.len(),
        c.max_rel,
        c.max_key,
        c.max_rel_strict,
        c.max_key_strict
    );
    assert!(
        c.failures.is_empty(),
        "{} of {} values differ from R:\n{}",
        c.failures.len(),
        c.checked,
        c.failures.join("\n")
    );
}
