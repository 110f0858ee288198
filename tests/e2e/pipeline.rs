//! Feeds through the bus and the projector to the count queries: amendments move counts,
//! withdrawals remove them, filters and roll-ups answer as documented.

use serde_json::{Value, json};

use crate::harness::{Env, record};

fn count_of(rows: &[Value], key: &str, value: &str) -> i64 {
    rows.iter()
        .filter(|r| {
            // A number or boolean cell matches its JSON text (`year` 2024 matches "2024").
            r[key].as_str() == Some(value)
                || serde_json::from_str::<Value>(value).is_ok_and(|v| r[key] == v)
        })
        .map(|r| r["count"].as_i64().unwrap())
        .sum()
}

#[tokio::test]
async fn amendments_move_counts_and_withdrawals_remove_them() {
    let env = Env::new();
    let pn = env.add_agency("pn");
    let gn = env.add_agency("gn");
    let service = env.up().await;

    let first = service
        .post_ndjson(
            &pn,
            &[
                record("A", 1, "2024-03-05", "75", "0903"),
                record("B", 1, "2024-03-06", "75", "0701"),
                record("C", 1, "2024-03-07", "92", "09031"),
            ],
        )
        .await;
    assert_eq!(first.body["accepted"], 3, "{}", first.body);
    // The same incident id from another agency is another incident.
    let other = service.post_ndjson(&gn, &[record("A", 1, "2024-03-05", "75", "0903")]).await;
    let seq = other.sequence();
    let rows = service.counts("by=departement", seq).await;
    assert_eq!(count_of(&rows, "departement", "75"), 3);
    assert_eq!(count_of(&rows, "departement", "92"), 1);

    // A moves to April and to 13; B is withdrawn; a stale revision of C changes nothing.
    let changes = service
        .post_ndjson(
            &pn,
            &[
                record("A", 2, "2024-04-01", "13", "0903"),
                json!({"agency_incident_id": "B", "revision": 2, "withdrawn": true, "reason": "not an offence"}),
                record("C", 3, "2024-03-07", "92", "09031"),
                record("C", 2, "2024-12-01", "2A", "0701"),
            ],
        )
        .await;
    // The stale revision is not published: the answer says so (issue 15), and the counts
    // below show it changed nothing.
    assert_eq!(changes.body["accepted"], 3, "{}", changes.body);
    assert_eq!(changes.body["rejected"][0]["line"], 4, "{}", changes.body);
    assert!(
        changes.body["rejected"][0]["error"].as_str().unwrap().contains("older than revision 3"),
        "{}",
        changes.body
    );
    let seq = changes.sequence();
    let rows = service.counts("by=month,departement&source=pn", seq).await;
    let cells: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["month"].as_str().unwrap().into(),
                r["departement"].as_str().unwrap().into(),
                r["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(cells, vec![("2024-03".into(), "92".into(), 1), ("2024-04".into(), "13".into(), 1)]);

    // B comes back with a later revision.
    let back = service.post_ndjson(&pn, &[record("B", 3, "2024-03-06", "75", "0701")]).await;
    let seq = back.sequence();
    let rows = service.counts("by=source", seq).await;
    assert_eq!(count_of(&rows, "source", "pn"), 3);
    assert_eq!(count_of(&rows, "source", "gn"), 1);

    // ICCS filters match the subtree; loss sums follow the counts.
    let rows = service.counts("iccs=0903", seq).await;
    assert_eq!(rows[0]["count"], 3, "A (pn), A (gn), C under 0903: {rows:?}");
    assert_eq!(rows[0]["loss_eur"], 30.75);
    // An amendment that changes only the loss moves no count but moves the loss.
    let mut costlier = record("C", 4, "2024-03-07", "92", "09031");
    costlier["loss_eur"] = json!(100.0);
    let seq = service.post_ndjson(&pn, &[costlier]).await.sequence();
    let rows = service.counts("iccs=0903", seq).await;
    assert_eq!(
        (rows[0]["count"].as_i64(), rows[0]["loss_eur"].as_f64()),
        (Some(3), Some(120.5)),
        "{rows:?}"
    );
    let rows = service.counts("by=year&from=2024-04&to=2024-12", seq).await;
    assert_eq!(
        rows,
        vec![
            json!({"year": 2024, "unit": "offence", "count": 1, "loss_eur": 10.25, "provisional": true})
        ]
    );
}

#[tokio::test]
async fn query_formats_filters_and_errors() {
    let env = Env::new();
    let pn = env.add_agency("pn");
    let service = env.observatory("up").flag("--query-wait-ms", "3000").start().await;
    let mut records = Vec::new();
    for (i, (month, dep)) in
        [("2024-01", "75"), ("2024-02", "92"), ("2024-02", "75"), ("2025-01", "971")]
            .iter()
            .enumerate()
    {
        records.push(record(&format!("R{i}"), 1, &format!("{month}-10"), dep, "0701"));
    }
    let seq = service.post_ndjson(&pn, &records).await.sequence();

    let rows = service
        .counts("by=month,departement&from=2024-01&to=2024-12&cyber=true&departement=75,92", seq)
        .await;
    assert_eq!(rows.len(), 3);
    let (status, csv, as_of) = service
        .get_text(&format!("/v1/incidents/counts?by=departement&format=csv&min_sequence={seq}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        csv,
        "departement,unit,count,loss_eur,provisional\n75,offence,2,20.5,true\n92,offence,1,10.25,true\n971,offence,1,10.25,true\n"
    );
    assert!(as_of.unwrap().parse::<u64>().unwrap() >= seq);

    for (query, message) in [
        ("by=colour", "unknown dimension 'colour'"),
        ("from=2024-13", "not a month"),
        ("from=2024-06&to=2024-01", "is after"),
        ("format=xml", "format='xml'"),
        ("victim_type=robot", "victim_type='robot'"),
    ] {
        let answer = service.get(&format!("/v1/incidents/counts?{query}")).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert!(
            answer.body["error"].as_str().unwrap().contains(message),
            "{query}: {}",
            answer.body
        );
    }
    // Waiting for a sequence that never comes is bounded.
    let far = service.get(&format!("/v1/incidents/counts?min_sequence={}", seq + 1000)).await;
    assert_eq!(far.status, 503, "{}", far.body);
    assert!(far.body["error"].as_str().unwrap().contains("retry later"));
}
