//! Several ingest processes on one stream: they agree without sharing memory, because the
//! stream leader refuses a second copy of a revision (issue 13).

use serde_json::{Value, json};

use crate::harness::{Answer, Env, Service, record};

/// Sends the same NDJSON batch to both services at the same moment.
async fn to_both(a: &Service, b: &Service, token: &str, batch: &[Value]) -> (Answer, Answer) {
    tokio::join!(a.post_ndjson(token, batch), b.post_ndjson(token, batch))
}

/// `accepted + duplicates + rejected` of one answer.
fn tally(answer: &Answer) -> (u64, u64, u64) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = &answer.body;
    (
        body["accepted"].as_u64().unwrap(),
        body["duplicates"].as_u64().unwrap(),
        body["rejected"].as_array().unwrap().len() as u64,
    )
}

#[tokio::test]
async fn two_ingest_replicas_store_a_feed_sent_to_both_once() {
    let env = Env::new();
    let token = env.add_agency("pn");
    let up = env.up().await;
    let replica = env.observatory("ingest").start().await;

    const INCIDENTS: usize = 100_000;
    const BATCH: usize = 10_000;
    let departements = ["75", "13", "69", "2A", "971"];
    let first: Vec<Value> = (0..INCIDENTS)
        .map(|i| {
            let day = format!("2024-{:02}-{:02}", 1 + i % 12, 1 + i % 28);
            record(&format!("R{i}"), 1, &day, departements[i % 5], "0903")
        })
        .collect();
    let (mut accepted, mut duplicates, mut last) = (0, 0, 0);
    for batch in first.chunks(BATCH) {
        let (a, b) = to_both(&up, &replica, &token, batch).await;
        for answer in [&a, &b] {
            let (acc, dup, rej) = tally(answer);
            assert_eq!(acc + dup + rej, batch.len() as u64, "{}", answer.body);
            assert_eq!(rej, 0, "{}", answer.body);
            accepted += acc;
            duplicates += dup;
            last = last.max(answer.body["last_sequence"].as_u64().unwrap_or(0));
        }
    }
    assert_eq!((accepted, duplicates), (INCIDENTS as u64, INCIDENTS as u64));

    // Revisions, withdrawals, a conflict and a withdrawal of nothing, to both at once, each
    // incident twice in the batch (a later revision after an earlier one).
    let mut second: Vec<Value> = Vec::new();
    for i in 0..2_000 {
        second.push(record(&format!("R{i}"), 2, "2024-06-15", "33", "0903"));
        second.push(record(&format!("R{i}"), 3, "2024-06-16", "33", "0903"));
    }
    for i in 2_000..3_000 {
        second
            .push(json!({"agency_incident_id": format!("R{i}"), "revision": 2, "withdrawn": true}));
    }
    second.push(record("R5000", 1, "2025-01-01", "75", "0903")); // other content: conflict
    second.push(json!({"agency_incident_id": "NEVER", "revision": 1, "withdrawn": true}));
    let (a, b) = to_both(&up, &replica, &token, &second).await;
    let (mut accepted, mut duplicates, mut rejected) = (0, 0, 0);
    for answer in [&a, &b] {
        let (acc, dup, rej) = tally(answer);
        assert_eq!(acc + dup + rej, second.len() as u64, "{}", answer.body);
        accepted += acc;
        duplicates += dup;
        rejected += rej;
        last = last.max(answer.body["last_sequence"].as_u64().unwrap_or(0));
        let fields: Vec<&str> = answer.body["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["revision", "withdrawn"], "{}", answer.body);
    }
    assert_eq!((accepted, duplicates, rejected), (5_000, 5_000, 4));

    let total = up.counts("", last).await;
    assert_eq!(total[0]["count"], (INCIDENTS - 1_000) as u64, "{total:?}");
    let moved = up.counts("by=departement&departement=33", last).await;
    assert_eq!(moved[0]["count"], 2_000, "{moved:?}");
}
