//! Publishing: releases that answer the same bytes forever (through more ingest, amendments,
//! withdrawals, a rebuild and a restart), vintages and their errors, the history of revised
//! cells, the access tiers, and the guarantees of the public tier's cell-key perturbation over
//! many random queries, checked against a ground truth the test keeps itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Env, Service, record};

/// A small deterministic generator (the tests must not depend on a random crate's stream).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

async fn create_release(service: &Service, token: &str, name: &str) -> Value {
    let answer = service
        .call(Method::POST, "/v1/releases")
        .token(token)
        .json(&json!({"name": name, "note": "made by the publishing test"}))
        .send_json()
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.body
}

/// The answers a release must repeat to the byte: public and exact counts (JSON and CSV, with
/// their headers), coverage, a survey listing.
async fn captured(service: &Service, release: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let queries = [
        format!("/v1/incidents/counts?by=month,departement&release={release}"),
        format!("/v1/incidents/counts?by=departement&unit=offence&rate=per100k&release={release}"),
        format!("/v1/incidents/counts?by=iccs_division&format=csv&release={release}"),
        format!("/v1/coverage?release={release}"),
        format!("/v1/surveys?release={release}"),
    ];
    for query in &queries {
        for public in [true, false] {
            let answer =
                if public { service.get_public(query).await } else { service.get(query).await };
            assert_eq!(answer.status, 200, "{query}: {}", answer.text);
            let headers: Vec<String> =
                ["observatory-as-of-sequence", "observatory-disclosure", "observatory-release"]
                    .iter()
                    .filter_map(|h| {
                        answer.headers.get(*h).map(|v| format!("{h}: {}", v.to_str().unwrap()))
                    })
                    .collect();
            out.push((
                format!("{} {query}", if public { "public" } else { "researcher" }),
                format!("{}\n{}", headers.join("\n"), answer.text),
            ));
        }
    }
    out
}

fn assert_same(before: &[(String, String)], after: &[(String, String)], when: &str) {
    for ((what, a), (_, b)) in before.iter().zip(after) {
        assert_eq!(a, b, "{what} changed {when}");
    }
}

#[tokio::test]
async fn a_release_answers_the_same_bytes_through_ingest_rebuild_and_restart() {
    let env = Env::new();
    let pn = env.add_agency("pn");
    let publisher = env.add_reader("ssmsi", "publisher");
    let service = env.up().await;

    let mut feed: Vec<Value> = Vec::new();
    for i in 0..40 {
        let dep = ["75", "92", "13", "69"][i % 4];
        let month = 1 + (i % 6);
        feed.push(record(&format!("A{i}"), 1, &format!("2024-{month:02}-10"), dep, "0903"));
    }
    let first = service.post_ndjson(&pn, &feed).await.sequence();
    service.counts("by=year", first).await;

    // Who may make a release.
    for (token, status) in [(None, 401), (Some(pn.as_str()), 401), (Some(env.researcher()), 403)] {
        let mut call = service.call(Method::POST, "/v1/releases").json(&json!({}));
        if let Some(token) = token {
            call = call.token(token);
        }
        let answer = call.send_json().await;
        assert_eq!(answer.status, status, "{token:?}: {}", answer.body);
        assert!(answer.body["error"].as_str().unwrap().contains("publisher"), "{}", answer.body);
    }
    let bad = service
        .call(Method::POST, "/v1/releases")
        .token(&publisher)
        .json(&json!({"name": "x", "colour": "blue"}))
        .send_json()
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    let r1 = create_release(&service, &publisher, "2024 H1, first").await;
    assert_eq!(r1["id"], "r1");
    assert_eq!(r1["projections"]["incidents"]["sequence"], first);
    assert_eq!(r1["disclosure"]["method"], "cell-key");
    let at_r1 = captured(&service, "r1").await;
    let public_r1 = service.get_public("/v1/incidents/counts?by=month&release=r1").await;
    assert_eq!(public_r1.body["as_of"]["release"]["id"], "r1");
    assert_eq!(public_r1.body["disclosure"]["tier"], "public");
    assert_eq!(public_r1.body["disclosure"]["D"], 5);

    // More ingest: amendments move incidents, withdrawals remove some, new ones arrive.
    let mut more: Vec<Value> = Vec::new();
    for i in 0..10 {
        more.push(record(&format!("A{i}"), 2, "2024-06-10", "75", "0903"));
    }
    for i in 10..15 {
        more.push(json!({"agency_incident_id": format!("A{i}"), "revision": 2, "withdrawn": true}));
    }
    for i in 0..10 {
        more.push(record(&format!("B{i}"), 1, "2024-07-10", "59", "0903"));
    }
    let answer = service.post_ndjson(&pn, &more).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let second = answer.sequence();
    service.counts("by=year", second).await;
    assert_same(&at_r1, &captured(&service, "r1").await, "after more ingest");
    let current = service.get("/v1/incidents/counts?by=month,departement").await;
    let at_release = service.get("/v1/incidents/counts?by=month,departement&release=r1").await;
    assert_ne!(current.body["rows"], at_release.body["rows"], "the feed changed the numbers");

    let r2 = create_release(&service, &publisher, "2024 H1, revised").await;
    assert_eq!(r2["id"], "r2");
    let listed = service.get_public("/v1/releases").await;
    let ids: Vec<&str> = listed.body["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r2", "r1"], "newest first");
    assert_eq!(service.get_public("/v1/releases/r1").await.body["name"], "2024 H1, first");
    assert_eq!(service.get_public("/v1/releases/r9").await.status, 404);

    // history=releases: the January cell in Paris lost incidents between r1 and r2.
    let history = service.get("/v1/incidents/counts?by=month,departement&history=releases").await;
    assert_eq!(history.status, 200, "{}", history.body);
    let rows = history.body["rows"].as_array().unwrap();
    let cell = |month: &str, dep: &str| {
        rows.iter()
            .find(|r| r["month"] == month && r["departement"] == dep)
            .unwrap_or_else(|| panic!("no {month} {dep} in {rows:?}"))
    };
    // Paris in January held A0, A12, A24 and A36 (i % 4 = 0, i % 6 = 0); A0 moved to June and
    // A12 was withdrawn.
    let january_paris = &cell("2024-01", "75")["vintages"];
    assert_eq!(january_paris.as_array().unwrap().len(), 2, "{january_paris}");
    assert_eq!(january_paris[0]["release"], "r1");
    assert_eq!(january_paris[0]["count"], 4);
    assert_eq!(january_paris[0]["valid_to"], r2["created_at"]);
    assert_eq!(january_paris[1]["release"], "r2");
    assert_eq!(january_paris[1]["count"], 2);
    assert_eq!(january_paris[1]["valid_to"], Value::Null);
    let july_lille = &cell("2024-07", "59")["vintages"];
    assert_eq!(july_lille.as_array().unwrap().len(), 1, "new in r2: {july_lille}");
    assert_eq!(july_lille[0]["release"], "r2");
    assert_eq!(july_lille[0]["count"], 10);
    // Each vintage says the value it stood with: consecutive vintages differ.
    for row in rows {
        let vintages = row["vintages"].as_array().unwrap();
        for pair in vintages.windows(2) {
            assert_ne!(pair[0]["count"], pair[1]["count"], "{row}");
            assert_eq!(pair[0]["valid_to"], pair[1]["valid_from"], "{row}");
        }
    }
    let public_history = service.get_public("/v1/incidents/counts?by=month&history=releases").await;
    assert_eq!(public_history.status, 200);
    assert_eq!(public_history.body["disclosure"]["tier"], "public");

    // as_of: the sequence of r1's manifest is kept (the release keeps it); an unknown one is a
    // 404 naming the oldest kept and the releases; as_of_time picks the release.
    let by_sequence = service.get(&format!("/v1/incidents/counts?by=month&as_of={first}")).await;
    assert_eq!(by_sequence.status, 200, "{}", by_sequence.body);
    assert_eq!(by_sequence.body["as_of"]["sequence"], first);
    let gone = service.get("/v1/incidents/counts?by=month&as_of=999999").await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    let message = gone.body["error"].as_str().unwrap();
    assert!(message.contains("oldest kept sequence") && message.contains("r1 ("), "{message}");
    let before = service.get("/v1/incidents/counts?by=month&as_of_time=2000-01-01T00:00:00Z").await;
    assert_eq!(before.status, 404, "{}", before.body);
    let r1_time = r1["created_at"].as_str().unwrap();
    let by_time = service
        .get(&format!(
            "/v1/incidents/counts?by=month,departement&as_of_time={}",
            r1_time.replace('+', "%2B")
        ))
        .await;
    assert_eq!(by_time.text, at_release.text, "as_of_time at r1 answers r1");
    for (query, says) in [
        ("release=r1&as_of=3", "give one of"),
        ("release=latest", "not a release id"),
        ("as_of=abc", "not a stream sequence"),
        ("as_of_time=yesterday", "RFC 3339"),
        ("release=r1&min_sequence=3", "min_sequence"),
        ("history=all", "history=releases"),
        ("history=releases&format=csv", "CSV"),
    ] {
        let answer = service.get(&format!("/v1/incidents/counts?{query}")).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert!(answer.body["error"].as_str().unwrap().contains(says), "{query}: {}", answer.body);
    }
    assert_eq!(service.get("/v1/incidents/counts?release=r7").await.status, 404);
    assert_eq!(service.get("/v1/coverage?release=r7").await.status, 404);
    assert_eq!(service.get("/v1/surveys?release=r7").await.status, 404);

    // A rebuild (a new version; CURRENT switches) and a restart change nothing of r1.
    let output = env.rebuild();
    assert!(output.contains("v2"), "{output}");
    service.stop();
    let service = env.up().await;
    let now = service.get(&format!("/v1/incidents/counts?by=year&min_sequence={second}")).await;
    assert_eq!(now.body["as_of"]["version"], 2, "{}", now.body);
    assert_same(&at_r1, &captured(&service, "r1").await, "after a rebuild and a restart");
}

/// One incident of the ground truth.
struct Incident {
    id: String,
    month: String,
    departement: &'static str,
    iccs: &'static str,
    victim_type: &'static str,
}

impl Incident {
    fn value(&self, dimension: &str) -> String {
        match dimension {
            "year" => self.month[..4].to_owned(),
            "month" => self.month.clone(),
            "departement" => self.departement.to_owned(),
            "iccs_division" => self.iccs[..4].to_owned(),
            "iccs_section" => self.iccs[..2].to_owned(),
            "victim_type" => self.victim_type.to_owned(),
            other => panic!("{other}"),
        }
    }
}

#[tokio::test]
async fn ten_thousand_random_public_queries_keep_every_guarantee() {
    let env = Env::new();
    let pn = env.add_agency("pn");
    let service = env.up().await;
    let mut rng = Lcg(20_141_204);
    const DEPS: [&str; 8] = ["75", "92", "93", "94", "13", "69", "59", "2A"];
    const ICCS: [&str; 4] = ["0903", "09031", "0701", "0208"];
    const VICTIMS: [&str; 2] = ["individual", "business"];
    let months: Vec<String> = (1..=12).map(|m| format!("2024-{m:02}")).collect();
    // Many small cells: 900 incidents over 12 × 8 × 4 × 2 = 768 fine cells.
    let mut truth: Vec<Incident> = Vec::new();
    let mut records: Vec<Value> = Vec::new();
    for i in 0..900 {
        let incident = Incident {
            id: format!("S{i}"),
            month: months[rng.below(12) as usize].clone(),
            departement: rng.pick(&DEPS),
            iccs: rng.pick(&ICCS),
            victim_type: rng.pick(&VICTIMS),
        };
        let mut r = record(
            &incident.id,
            1,
            &format!("{}-15", incident.month),
            incident.departement,
            incident.iccs,
        );
        r["victim_type"] = json!(incident.victim_type);
        records.push(r);
        truth.push(incident);
    }
    let sequence = service.post_ndjson(&pn, &records).await.sequence();
    service.counts("by=year", sequence).await;

    let dimensions =
        ["year", "month", "departement", "iccs_division", "iccs_section", "victim_type"];
    // Record set (sorted incident ids) → the value the public got for it.
    let mut published: HashMap<Vec<usize>, (i64, String)> = HashMap::new();
    let (mut rows_seen, mut shared_cells, mut researcher_checks) = (0usize, 0usize, 0usize);
    for q in 0..10_000 {
        let mut by: Vec<&str> = dimensions.iter().copied().filter(|_| rng.below(4) == 0).collect();
        if by.len() > 3 {
            by.truncate(3);
        }
        let mut filters: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        if rng.below(2) == 0 {
            let n = 1 + rng.below(3) as usize;
            filters.insert("departement", (0..n).map(|_| rng.pick(&DEPS).to_owned()).collect());
        }
        if rng.below(3) == 0 {
            filters
                .insert("iccs", vec![rng.pick(&["09", "0903", "09031", "07", "0208"]).to_owned()]);
        }
        if rng.below(3) == 0 {
            filters.insert("victim_type", vec![rng.pick(&VICTIMS).to_owned()]);
        }
        let (from, to) = {
            let a = rng.below(12) as usize;
            let b = a + rng.below((12 - a) as u64) as usize;
            (months[a].clone(), months[b].clone())
        };
        let ranged = rng.below(2) == 0;
        let mut query = format!("unit=offence&by={}", by.join(","));
        for (key, values) in &filters {
            query.push_str(&format!("&{key}={}", values.join(",")));
        }
        if ranged {
            query.push_str(&format!("&from={from}&to={to}"));
        }
        // The incidents the query selects, and those a row of it counts.
        let selected = |incident: &Incident| -> bool {
            filters.iter().all(|(key, values)| match *key {
                "iccs" => values.iter().any(|v| incident.iccs.starts_with(v.as_str())),
                _ => values.iter().any(|v| *v == incident.value(key)),
            }) && (!ranged || (incident.month >= from && incident.month <= to))
        };
        let matches = |incident: &Incident, row: &Value| -> bool {
            selected(incident)
                && by.iter().all(|d| {
                    let cell = match &row[*d] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    cell == incident.value(d)
                })
        };
        let answer = service.get_public(&format!("/v1/incidents/counts?{query}")).await;
        assert_eq!(answer.status, 200, "{query}: {}", answer.body);
        let rows = answer.body["rows"].as_array().unwrap();
        let mut listed = 0;
        for row in rows {
            let count = row["count"].as_i64().unwrap();
            let records: Vec<usize> =
                truth.iter().enumerate().filter(|(_, t)| matches(t, row)).map(|(i, _)| i).collect();
            let exact = records.len() as i64;
            assert!(count == 0 || count > 2, "{query}: published {count} in 1..=2: {row}");
            assert!((count - exact).abs() <= 5, "{query}: published {count}, exact {exact}: {row}");
            if exact == 0 {
                assert_eq!(count, 0, "{query}: zeros stay zero: {row}");
            }
            if !by.is_empty() {
                assert!(count > 0, "{query}: a grouped answer lists no zero: {row}");
            }
            listed += exact;
            rows_seen += 1;
            match published.get(&records) {
                Some((value, first)) => {
                    shared_cells += 1;
                    assert_eq!(
                        *value, count,
                        "the same records published {value} by {first} and {count} by {query}"
                    );
                }
                None => {
                    published.insert(records, (count, query.clone()));
                }
            }
        }
        // Rows published as zero are left out, so the listed rows cover at most the truth.
        let total = truth.iter().filter(|t| selected(t)).count() as i64;
        assert!(listed <= total, "{query}");
        if q % 10 == 0 {
            let exact = service.get(&format!("/v1/incidents/counts?{query}")).await;
            assert_eq!(exact.body["disclosure"]["exact"], true);
            let mut expected: BTreeSet<(String, i64)> = BTreeSet::new();
            let mut got: BTreeSet<(String, i64)> = BTreeSet::new();
            for row in exact.body["rows"].as_array().unwrap() {
                let exact = truth.iter().filter(|t| matches(t, row)).count() as i64;
                expected.insert((row.to_string(), exact));
                got.insert((row.to_string(), row["count"].as_i64().unwrap()));
            }
            assert_eq!(got, expected, "{query}: the researcher reads the ground truth");
            if by.is_empty() {
                assert_eq!(exact.body["rows"][0]["count"].as_i64().unwrap(), total, "{query}");
            } else {
                let sum: i64 = exact.body["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["count"].as_i64().unwrap())
                    .sum();
                assert_eq!(sum, total, "{query}: every incident in exactly one row");
            }
            researcher_checks += 1;
        }
    }
    // The comparison across query shapes is only worth something if shapes met often.
    assert!(shared_cells > 5_000, "only {shared_cells} cells reached twice in {rows_seen} rows");
    eprintln!(
        "{rows_seen} public rows, {} distinct record sets, {shared_cells} reached again by another query, \
         {researcher_checks} researcher answers checked",
        published.len()
    );

    // The shapes the issue names reach one cell the same way.
    let a = service
        .get_public(
            "/v1/incidents/counts?by=departement&departement=75&from=2024&to=2024&unit=offence",
        )
        .await;
    let b = service
        .get_public(
            "/v1/incidents/counts?by=year,departement&year=2024&departement=75&unit=offence",
        )
        .await;
    assert_eq!(a.body["rows"][0]["count"], b.body["rows"][0]["count"], "{} vs {}", a.body, b.body);

    // An agency token is not a reader token, and a wrong token is never served as public.
    for token in [pn.as_str(), "obr_nope"] {
        let answer =
            service.call(Method::GET, "/v1/incidents/counts?by=year").token(token).send().await;
        assert_eq!(answer.status, 401, "{}", answer.text);
    }
    let malformed = service
        .call(Method::GET, "/v1/incidents/counts?by=year")
        .header("authorization", "Basic abc")
        .send()
        .await;
    assert_eq!(malformed.status, 401);
    let csv = service.get_public("/v1/incidents/counts?by=year&unit=offence&format=csv").await;
    let header = csv.headers.get("observatory-disclosure").unwrap().to_str().unwrap();
    assert!(header.starts_with("public; cell-key ptable=1 D=5 V=3 js=2"), "{header}");
}
