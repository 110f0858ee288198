//! One classification, one geography, comparable rates: crosswalk mapping at ingest, units
//! never mixed, rates per 100 000 from the reference populations, coverage, and a crosswalk
//! change re-mapped by a rebuild.

use observatory_reference::Geography;
use serde_json::{Value, json};

use crate::harness::{Env, record};

fn coded(id: &str, code: &str, occurred_on: &str, departement: &str) -> Value {
    let mut r = record(id, 1, occurred_on, departement, "0701");
    let r_map = r.as_object_mut().unwrap();
    r_map.remove("iccs");
    r_map.remove("cyber");
    r_map.insert("offence_code".into(), json!(code));
    r
}

#[tokio::test]
async fn agency_codes_are_mapped_and_unknown_codes_rejected() {
    let env = Env::new();
    let pn = env.add_agency_with("pn", &["--crosswalk", "natinf"]);
    let gn = env.add_agency("gn");
    let service = env.up().await;

    let answer = service
        .post_ndjson(
            &pn,
            &[
                coded("A", "323-1", "2024-03-05", "75"),
                coded("B", "323-9", "2024-03-05", "75"),
                coded("C", "313-1", "2024-03-05", "75"),
            ],
        )
        .await;
    assert_eq!(answer.body["accepted"], 2, "{}", answer.body);
    let rejected = &answer.body["rejected"][0];
    assert_eq!(
        (rejected["line"].as_u64(), rejected["field"].as_str()),
        (Some(2), Some("offence_code"))
    );
    let message = rejected["error"].as_str().unwrap();
    assert!(message.contains("'323-9'") && message.contains("crosswalk natinf"), "{message}");

    let mut unknown_iccs = record("D", 1, "2024-03-05", "75", "0903");
    unknown_iccs["iccs"] = json!("0999");
    let answer = service.post_ndjson(&gn, &[unknown_iccs]).await;
    assert_eq!(answer.body["accepted"], 0);
    assert!(
        answer.body["rejected"][0]["error"].as_str().unwrap().contains("not a code of ICCS 1.0"),
        "{}",
        answer.body
    );

    let seq =
        service.post_ndjson(&gn, &[record("E", 1, "2024-03-05", "92", "0903")]).await.sequence();
    let rows = service.counts("by=source,iccs,cyber", seq).await;
    let cells: Vec<(String, String, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().into(),
                r["iccs"].as_str().unwrap().into(),
                r["cyber"].as_bool().unwrap(),
            )
        })
        .collect();
    // 323-1 → 09031 (cyber by default), 313-1 → 0701 (not cyber by default).
    assert_eq!(
        cells,
        vec![
            ("gn".into(), "0903".into(), true),
            ("pn".into(), "0701".into(), false),
            ("pn".into(), "09031".into(), true)
        ]
    );
    let rows = service.counts("by=iccs_section,iccs_division", seq).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (
            rows[1]["iccs_section"].as_str(),
            rows[1]["iccs_division"].as_str(),
            rows[1]["count"].as_i64()
        ),
        (Some("09"), Some("0903"), Some(2))
    );

    // Browse what the mapping used.
    let crosswalk = service.get("/v1/reference/crosswalks/natinf?version=1").await;
    assert_eq!(crosswalk.status, 200);
    assert!(crosswalk.body["rows"].as_array().unwrap().iter().any(|r| r["source_code"] == "323-1"));
    assert_eq!(service.get("/v1/reference/crosswalks/nope").await.status, 404);
    let iccs = service.get("/v1/reference/iccs").await;
    assert!(iccs.body["codes"].as_array().unwrap().iter().any(|c| c["code"] == "0903"));
    let geography = service.get("/v1/reference/geography").await;
    assert_eq!(geography.body["departements"].as_array().unwrap().len(), 101);
    assert_eq!(geography.body["regions"].as_array().unwrap().len(), 18);
}

#[tokio::test]
async fn units_are_never_mixed_and_rates_use_the_legal_population() {
    let env = Env::new();
    let platform = env.add_agency_with("pharos", &["--crosswalk", "platform"]);
    let gn = env.add_agency("gn");
    let service = env.up().await;
    service
        .post_ndjson(
            &platform,
            &[coded("P1", "phishing", "2024-02-01", "75"), coded("P2", "csam", "2024-02-01", "13")],
        )
        .await;
    let mut offences = Vec::new();
    for (i, dep) in ["75", "75", "75", "13", "59", "59"].iter().enumerate() {
        offences.push(record(&format!("G{i}"), 1, "2024-06-01", dep, "0701"));
    }
    let seq = service.post_ndjson(&gn, &offences).await.sequence();

    let mixed =
        service.get(&format!("/v1/incidents/counts?by=departement&min_sequence={seq}")).await;
    assert_eq!(mixed.status, 400, "{}", mixed.body);
    let message = mixed.body["error"].as_str().unwrap();
    assert!(
        message.contains("mix units (offence, report)") && message.contains("unit="),
        "{message}"
    );
    let by_unit = service.counts("by=unit", seq).await;
    assert_eq!(
        by_unit.iter().map(|r| r["count"].as_i64().unwrap()).collect::<Vec<_>>(),
        vec![6, 2]
    );

    let rows =
        service.counts("by=departement&unit=offence&rate=per100k&from=2024&to=2024", seq).await;
    let geography = Geography::france();
    for row in &rows {
        let dep = row["departement"].as_str().unwrap();
        let (population, year) = geography.population(dep, 2024).unwrap();
        assert_eq!(row["population"].as_u64(), Some(population), "{row}");
        assert_eq!(row["population_year"].as_i64(), Some(i64::from(year)));
        let expected = row["count"].as_f64().unwrap() * 100_000.0 / population as f64;
        assert!((row["rate_per_100k"].as_f64().unwrap() - expected).abs() < 1e-9, "{row}");
    }
    let national = service.counts("unit=offence&rate=per100k&from=2024&to=2024", seq).await;
    let (population, _) = geography.national_population(2024).unwrap();
    assert_eq!(national[0]["population"].as_u64(), Some(population));
    let by_region =
        service.counts("by=region&unit=offence&rate=per100k&from=2024&to=2024", seq).await;
    let paris_region = by_region.iter().find(|r| r["region"] == "11").unwrap();
    assert_eq!(
        paris_region["population"].as_u64(),
        geography.region_population("11", 2024).map(|(p, _)| p)
    );
}

#[tokio::test]
async fn closed_months_are_final_and_coverage_tells_closed_open_missing() {
    let env = Env::new();
    let gn = env.add_agency("gn");
    let pn = env.add_agency("pn");
    let service = env.up().await;
    let seq = service
        .post_ndjson(
            &gn,
            &[
                record("A", 1, "2024-01-10", "75", "0701"),
                record("B", 1, "2024-02-10", "75", "0701"),
            ],
        )
        .await
        .sequence();
    let close = |token: &str, body: Value| {
        let (service, token) = (&service, token.to_owned());
        async move {
            let answer = service.close_period(&token, &body).await;
            (answer.status, answer.body)
        }
    };
    let (status, closed) = close(&gn, json!({"month": "2024-01"})).await;
    assert_eq!(status, 200, "{closed}");
    // A month with no incident at all can be closed too: zero is then a real zero.
    let (_, closed_pn) = close(&pn, json!({"month": "2024-02", "departements": ["75"]})).await;
    let (status, invalid) = close(&pn, json!({"month": "2024-13"})).await;
    assert_eq!(status, 422, "{invalid}");
    assert_eq!(invalid["rejected"][0]["field"], "month");
    let last =
        closed_pn["sequence"].as_u64().unwrap().max(closed["sequence"].as_u64().unwrap()).max(seq);

    let rows = service.counts("by=month", last).await;
    let provisional: Vec<(String, bool)> = rows
        .iter()
        .map(|r| (r["month"].as_str().unwrap().into(), r["provisional"].as_bool().unwrap()))
        .collect();
    assert_eq!(provisional, vec![("2024-01".into(), false), ("2024-02".into(), true)]);

    let coverage = service.get("/v1/coverage?from=2024-01&to=2024-03").await;
    assert_eq!(coverage.status, 200, "{}", coverage.body);
    let statuses: Vec<(String, String, String)> = coverage.body["coverage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().into(),
                r["month"].as_str().unwrap().into(),
                r["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("gn", "2024-01", "closed"),
        ("gn", "2024-02", "open"),
        ("gn", "2024-03", "missing"),
        ("pn", "2024-01", "missing"),
        ("pn", "2024-02", "partial"),
        ("pn", "2024-03", "missing"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(statuses, expected);
}

#[tokio::test]
async fn a_new_crosswalk_version_is_applied_to_all_history_by_a_rebuild() {
    let env = Env::new();
    let pn = env.add_agency_with("pn", &["--crosswalk", "natinf"]);
    let service = env.observatory("up").flag("--crosswalk-versions", "natinf=1").start().await;
    let seq = service
        .post_ndjson(
            &pn,
            &[
                coded("A", "323-2", "2024-03-05", "75"),
                coded("B", "323-2", "2024-04-05", "92"),
                coded("C", "323-1", "2024-04-05", "92"),
            ],
        )
        .await
        .sequence();
    let before = service.get(&format!("/v1/incidents/counts?by=iccs&min_sequence={seq}")).await;
    assert_eq!(before.body["as_of"]["reference"]["crosswalk.natinf"], "1");
    let codes = |answer: &Value| -> Vec<(String, i64)> {
        answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["iccs"].as_str().unwrap().into(), r["count"].as_i64().unwrap()))
            .collect()
    };
    assert_eq!(codes(&before.body), vec![("09031".into(), 1), ("09032".into(), 2)]);

    env.observatory("rebuild").flag("--crosswalk-versions", "natinf=2").run();
    let after = service
        .get_on_version(&format!("/v1/incidents/counts?by=iccs&min_sequence={seq}"), 2)
        .await;
    assert_eq!(
        after.body["as_of"]["reference"]["crosswalk.natinf"], "2",
        "{}",
        after.body["as_of"]
    );
    assert_eq!(
        codes(&after.body),
        vec![("09031".into(), 1), ("090321".into(), 2)],
        "{}",
        after.body
    );
    // Totals are unchanged by a re-mapping: only the classification moved.
    let total: i64 = codes(&after.body).iter().map(|(_, c)| c).sum();
    assert_eq!(total, 3);
}
