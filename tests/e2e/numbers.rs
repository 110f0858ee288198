//! Answers a statistician would reject if they were wrong (issue 15): rates over the
//! population of what a row counts, zeros that are not final, coverage that never cuts
//! silently, and a resubmission told apart from a conflict and from a stale revision.

use observatory_reference::Geography;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Env, Service, record};

async fn close(service: &Service, token: &str, body: Value) -> u64 {
    let answer = service.close_period(token, &body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["sequence"].as_u64().unwrap()
}

async fn check(service: &Service, token: &str, records: Vec<Value>) -> Value {
    service.post_ndjson(token, &records).await.body
}

fn only(rows: &[Value]) -> &Value {
    assert_eq!(rows.len(), 1, "{rows:?}");
    &rows[0]
}

#[tokio::test]
async fn a_rate_divides_by_the_population_of_what_the_row_counts() {
    let env = Env::new();
    let pn = env.add_agency("pn");
    let service = env.up().await;
    let mut records = Vec::new();
    for (i, (date, dep)) in [
        ("2024-01-10", "75"),
        ("2024-02-10", "75"),
        ("2024-03-10", "75"),
        ("2024-03-10", "92"),
        ("2024-04-10", "13"),
        ("2023-05-10", "75"),
    ]
    .iter()
    .enumerate()
    {
        records.push(record(&format!("R{i}"), 1, date, dep, "0701"));
    }
    let seq = service.post_ndjson(&pn, &records).await.sequence();
    let geography = Geography::france();
    let paris = geography.population("75", 2024).unwrap().0;
    let hauts_de_seine = geography.population("92", 2024).unwrap().0;
    let base = "unit=offence&rate=per100k&from=2024&to=2024";

    // Defect 1: a filter is a set.
    let once = service.counts(&format!("{base}&departement=75"), seq).await;
    let twice = service.counts(&format!("{base}&departement=75,75"), seq).await;
    assert_eq!(once, twice);
    assert_eq!(only(&once)["population"].as_u64(), Some(paris));
    assert_eq!(only(&once)["population_area"], "departement 75");
    assert_eq!(only(&once)["count"], 3);
    let region = service.counts(&format!("{base}&region=11"), seq).await;
    assert_eq!(region, service.counts(&format!("{base}&region=11,11"), seq).await);
    assert_eq!(
        only(&region)["population"].as_u64(),
        geography.region_population("11", 2024).map(|p| p.0)
    );
    assert_eq!(only(&region)["population_area"], "region 11");

    // Defect 2: by région within a département filter: the filtered départements' population.
    let rows = service.counts(&format!("by=region&departement=75&{base}"), seq).await;
    let row = only(&rows);
    assert_eq!((row["region"].as_str(), row["count"].as_i64()), (Some("11"), Some(3)));
    assert_eq!(row["population"].as_u64(), Some(paris), "{row}");
    assert_eq!(row["population_area"], "departement 75");
    let expected = 3.0 * 100_000.0 / paris as f64;
    assert!((row["rate_per_100k"].as_f64().unwrap() - expected).abs() < 1e-9, "{row}");
    let rows = service.counts(&format!("by=region&departement=75,92,13&{base}"), seq).await;
    let idf = rows.iter().find(|r| r["region"] == "11").unwrap();
    assert_eq!(idf["population"].as_u64(), Some(paris + hauts_de_seine), "{idf}");
    assert_eq!(idf["population_area"], "departements 75,92");
    let paca = rows.iter().find(|r| r["region"] == "93").unwrap();
    assert_eq!(paca["population"].as_u64(), geography.population("13", 2024).map(|p| p.0));
    // Without a département filter a région row is the whole région.
    let rows = service.counts(&format!("by=region&{base}"), seq).await;
    let idf = rows.iter().find(|r| r["region"] == "11").unwrap();
    assert_eq!(idf["population"].as_u64(), geography.region_population("11", 2024).map(|p| p.0));
    assert_eq!(idf["population_area"], "region 11");

    // Over two years without time grouping the rate is cumulative over the period, and says so.
    let answer = service
        .get(&format!(
            "/v1/incidents/counts?unit=offence&rate=per100k&from=2023&to=2024&min_sequence={seq}"
        ))
        .await;
    let row = only(answer.body["rows"].as_array().unwrap());
    assert_eq!(row["rate_period"], "2023-01/2024-12", "{row}");
    assert_eq!(row["population_area"], "FR");
    assert!(
        answer.body["rate"]["definition"].as_str().unwrap().contains("cumulative"),
        "{}",
        answer.body
    );
    let rows = service.counts("unit=offence&rate=per100k&by=year&from=2024-03", seq).await;
    let periods: Vec<&str> = rows.iter().map(|r| r["rate_period"].as_str().unwrap()).collect();
    assert_eq!(periods, ["2024-03/2024-12"], "{rows:?}");
    // Open-ended: the period is the months with data.
    let rows = service.counts("unit=offence&rate=per100k&departement=75", seq).await;
    assert_eq!(only(&rows)["rate_period"], "2023-05/2024-03");
}

#[tokio::test]
async fn a_month_nobody_sent_is_not_a_final_zero() {
    let env = Env::new();
    let gn = env.add_agency("gn");
    let service = env.up().await;
    let seq =
        service.post_ndjson(&gn, &[record("A", 1, "2024-01-10", "75", "0701")]).await.sequence();
    let closed = close(&service, &gn, json!({"month": "2024-01"})).await;
    let closed = closed.max(close(&service, &gn, json!({"month": "2024-02"})).await).max(seq);

    // Defect 6: nothing sent, nothing closed: not a final zero.
    let row = service.counts("unit=offence&month=2023-06", closed).await;
    assert_eq!(
        (only(&row)["count"].as_i64(), only(&row)["provisional"].as_bool()),
        (Some(0), Some(true)),
        "{row:?}"
    );
    // Closed with no incident: a real zero.
    let row = service.counts("unit=offence&month=2024-02", closed).await;
    assert_eq!(
        (only(&row)["count"].as_i64(), only(&row)["provisional"].as_bool()),
        (Some(0), Some(false)),
        "{row:?}"
    );
    let row = service.counts("unit=offence&from=2024-01&to=2024-02&iccs=0903", closed).await;
    assert_eq!(only(&row)["provisional"], false, "{row:?}");
    let row = service.counts("unit=offence&from=2024-01&to=2024-03&iccs=0903", closed).await;
    assert_eq!(only(&row)["provisional"], true, "2024-03 is not closed: {row:?}");

    // Codes and sources that cannot occur are errors that name them.
    for (query, named) in [
        ("iccs=0999", "iccs='0999'"),
        ("source=nosuch", "source='nosuch'"),
        ("iccs_division=0999", "0999"),
    ] {
        let answer = service.get(&format!("/v1/incidents/counts?unit=offence&{query}")).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert!(answer.body["error"].as_str().unwrap().contains(named), "{query}: {}", answer.body);
    }

    // Defect 5 and coverage's parameters: a wide range is answered whole, never cut.
    let answer = service.get("/v1/coverage?from=1900&to=2100&source=gn").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let rows = answer.body["coverage"].as_array().unwrap();
    assert_eq!(rows.len(), 201 * 12);
    assert_eq!(rows.last().unwrap()["month"], "2100-12");
    let january = rows.iter().find(|r| r["month"] == "2024-01").unwrap();
    assert_eq!(january["status"], "closed");
    let too_wide = service.get("/v1/coverage?from=0001&to=9999").await;
    assert_eq!(too_wide.status, 400, "{}", too_wide.body);
    assert!(too_wide.body["error"].as_str().unwrap().contains("at most"), "{}", too_wide.body);
    for (query, message) in [
        ("source=nosuch", "source='nosuch'"),
        ("source=Not%20an%20id", "source="),
        ("from=2024&from=2025", "given twice"),
        ("format=xml", "format='xml'"),
        ("colour=red", "unknown parameter 'colour'"),
    ] {
        let answer = service.get(&format!("/v1/coverage?{query}")).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert!(
            answer.body["error"].as_str().unwrap().contains(message),
            "{query}: {}",
            answer.body
        );
    }
    let (status, csv, as_of) =
        service.get_text("/v1/coverage?from=2024-01&to=2024-03&format=csv").await;
    assert_eq!(status, 200);
    assert_eq!(
        csv,
        "source,month,status,closed_departements\ngn,2024-01,closed,\ngn,2024-02,closed,\ngn,2024-03,missing,\n"
    );
    assert!(as_of.is_some());
}

#[tokio::test]
async fn a_resubmission_is_told_from_a_conflict_and_from_a_stale_revision() {
    let env = Env::new();
    let pn = env.add_agency("pn");
    let service = env.up().await;
    let first = record("A", 1, "2024-03-05", "75", "0903");
    assert_eq!(service.post_ndjson(&pn, std::slice::from_ref(&first)).await.body["accepted"], 1);

    let mut changed = first.clone();
    changed["loss_eur"] = json!(99.0);
    let withdrawal_at_same_revision =
        json!({"agency_incident_id": "A", "revision": 1, "withdrawn": true});
    let never_reported = json!({"agency_incident_id": "Z", "revision": 1, "withdrawn": true});
    let mut running = Some(service);
    for _ in 0..2 {
        // The second time, from an index rebuilt out of the stream's headers.
        let service = match running.take() {
            Some(service) => service,
            None => env.up().await,
        };
        let body = check(&service, &pn, vec![first.clone()]).await;
        assert_eq!(
            (body["accepted"].as_u64(), body["duplicates"].as_u64()),
            (Some(0), Some(1)),
            "{body}"
        );
        let body = check(
            &service,
            &pn,
            vec![changed.clone(), withdrawal_at_same_revision.clone(), never_reported.clone()],
        )
        .await;
        assert_eq!(
            (body["accepted"].as_u64(), body["duplicates"].as_u64()),
            (Some(0), Some(0)),
            "{body}"
        );
        let rejected = body["rejected"].as_array().unwrap();
        assert_eq!(rejected.len(), 3, "{body}");
        assert_eq!(
            (rejected[0]["line"].as_u64(), rejected[0]["field"].as_str()),
            (Some(1), Some("revision"))
        );
        assert!(rejected[0]["error"].as_str().unwrap().contains("different content"), "{body}");
        assert!(rejected[0]["error"].as_str().unwrap().contains("revision 2"), "{body}");
        assert!(rejected[1]["error"].as_str().unwrap().contains("different content"), "{body}");
        assert_eq!(rejected[2]["field"], "withdrawn");
        assert!(rejected[2]["error"].as_str().unwrap().contains("never been reported"), "{body}");
        service.stop();
    }
    let service = env.up().await;
    let mut third = first.clone();
    third["revision"] = json!(3);
    assert_eq!(check(&service, &pn, vec![third]).await["accepted"], 1);
    let mut second = first.clone();
    second["revision"] = json!(2);
    let body = check(&service, &pn, vec![second.clone()]).await;
    assert_eq!(body["rejected"][0]["field"], "revision", "{body}");
    assert!(
        body["rejected"][0]["error"].as_str().unwrap().contains("older than revision 3"),
        "{body}"
    );
    service.stop();
    let service = env.up().await;
    let body = check(&service, &pn, vec![second]).await;
    assert!(
        body["rejected"][0]["error"].as_str().unwrap().contains("older than revision 3"),
        "after a restart: {body}"
    );
    // The first revision re-sent unchanged is still a plain duplicate.
    assert_eq!(check(&service, &pn, vec![first]).await["duplicates"], 1);
}

#[tokio::test]
async fn wrong_paths_and_methods_answer_json() {
    let env = Env::new();
    let service = env.up().await;
    let answer = service.get("/v1/nothing-here").await;
    assert_eq!(answer.status, 404);
    assert!(answer.body["error"].as_str().unwrap().contains("/v1/nothing-here"), "{}", answer.body);
    let answer = service.call(Method::DELETE, "/v1/incidents/counts").send_json().await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.body["status"], 405);
}
