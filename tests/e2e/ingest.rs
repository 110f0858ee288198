//! The feed endpoint's answers: accepted, rejected with line and field, duplicates (also
//! after a restart, beyond the NATS duplicate window), and a table of bad requests.

use serde_json::json;

use crate::harness::{Env, record};

#[tokio::test]
async fn accepted_rejected_and_duplicates_are_reported_per_record() {
    let env = Env::new();
    let token = env.add_agency("pn");
    let service = env.up().await;

    let mut bad_departement = record("B", 1, "2024-03-05", "75", "0903");
    bad_departement["departement"] = json!("20");
    let records = vec![
        record("A", 1, "2024-03-05", "75", "0903"),
        bad_departement,
        record("C", 1, "2024-04-01", "92", "0701"),
    ];
    let body = format!("{}\n{}\nnot json\n{}\n", records[0], records[1], records[2]);
    let answer = service.post(Some(&token), "application/x-ndjson", body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["accepted"], 2);
    assert_eq!(answer.body["duplicates"], 0);
    let rejected = answer.body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0]["line"], 2);
    assert_eq!(rejected[0]["field"], "departement");
    assert!(rejected[0]["error"].as_str().unwrap().contains("'20'"));
    assert_eq!(rejected[1]["line"], 3);
    assert!(rejected[1]["field"].is_null());
    let first_sequence = answer.sequence();

    // The same records again (and one twice in the batch): duplicates, nothing published.
    let again = service
        .post_ndjson(&token, &[records[0].clone(), records[2].clone(), records[2].clone()])
        .await;
    assert_eq!(
        (again.body["accepted"].as_u64(), again.body["duplicates"].as_u64()),
        (Some(0), Some(3)),
        "{}",
        again.body
    );
    assert!(again.body["last_sequence"].is_null());

    // JSON array and CSV carry the same records.
    let array = service
        .post(
            Some(&token),
            "application/json",
            json!([record("D", 1, "2024-05-01", "13", "0903")]).to_string(),
        )
        .await;
    assert_eq!(array.body["accepted"], 1, "{}", array.body);
    let csv = "agency_incident_id,revision,occurred_on,reported_on,iccs,cyber,departement,victim_type,channel,loss_eur\n\
               E,1,2024-06-01,2024-06-02,0903,true,,business,sms,\n\
               F,1,2024-06-01,2024-06-02,0903,maybe,2A,business,sms,3.5\n";
    let csv = service.post(Some(&token), "text/csv", csv).await;
    assert_eq!(csv.body["accepted"], 1, "{}", csv.body);
    assert_eq!(csv.body["rejected"][0]["line"], 3);
    assert_eq!(csv.body["rejected"][0]["field"], "cyber");
    assert!(csv.body["rejected"][0]["error"].as_str().unwrap().contains("maybe"));
    let last = csv.sequence();
    assert!(last > first_sequence);

    // A restart rebuilds the idempotency index from the stream: still duplicates.
    service.stop();
    let service = env.up().await;
    let after_restart = service.post_ndjson(&token, &records).await;
    assert_eq!(after_restart.body["accepted"], 0, "{}", after_restart.body);
    assert_eq!(after_restart.body["duplicates"], 2);
    let total = service.counts("", last).await;
    assert_eq!(total[0]["count"], 4, "A, C, D, E counted once each: {total:?}");
}

/// A rejected request: what it shows, token, content type, body, status, part of the error.
type Case<'a> = (&'a str, Option<&'a str>, &'a str, String, u16, &'a str);

#[tokio::test]
async fn bad_requests_get_a_clear_4xx() {
    let env = Env::new();
    let token = env.add_agency("pn");
    let service = env
        .observatory("up")
        .flag("--max-body-bytes", "2048")
        .flag("--max-records-per-request", "3")
        .start()
        .await;
    let ok = record("A", 1, "2024-03-05", "75", "0903").to_string();

    let cases: Vec<Case> = vec![
        ("no token", None, "application/x-ndjson", ok.clone(), 401, "missing Authorization"),
        (
            "wrong token",
            Some("obs_not-a-token"),
            "application/x-ndjson",
            ok.clone(),
            401,
            "unknown token",
        ),
        (
            "wrong content type",
            Some(&token),
            "text/plain",
            ok.clone(),
            415,
            "unsupported Content-Type",
        ),
        (
            "oversized body",
            Some(&token),
            "application/x-ndjson",
            format!("{ok}\n").repeat(40),
            413,
            "size limit",
        ),
        // Small in bytes, but each empty record would hold an error for every missing field.
        (
            "too many records",
            Some(&token),
            "application/x-ndjson",
            "{}\n".repeat(4),
            413,
            "more than 3 records",
        ),
        (
            "too many records, CSV",
            Some(&token),
            "text/csv",
            format!("a\n{}", "1\n".repeat(4)),
            413,
            "more than 3 records",
        ),
        (
            "malformed JSON array",
            Some(&token),
            "application/json",
            "[{\"a\":".into(),
            400,
            "not valid JSON",
        ),
        ("JSON object, not array", Some(&token), "application/json", ok.clone(), 400, "JSON array"),
        ("CSV without header", Some(&token), "text/csv", String::new(), 400, "header"),
    ];
    for (name, token, content_type, body, status, message) in cases {
        let answer = service.post(token, content_type, body).await;
        assert_eq!(answer.status, status, "{name}: {}", answer.body);
        let error = answer.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no error field: {}", answer.body));
        assert!(error.contains(message), "{name}: {error}");
    }
    let not_utf8 =
        service.post(Some(&token), "application/x-ndjson", b"{\"a\":\"\xff\"}\n".to_vec()).await;
    assert_eq!(not_utf8.status, 400);
    assert!(not_utf8.body["error"].as_str().unwrap().contains("UTF-8"));
    // No bad request published anything.
    let total = service.counts("", 0).await;
    assert_eq!(total[0]["count"], 0);
}

/// A batch over 64 KiB is read on a blocking thread, not on the runtime's workers: what it is
/// answered (accepted, each refusal's line and field, the limits, a duplicate sent again) is
/// what a small one gets.
#[tokio::test]
async fn a_large_batch_is_answered_as_a_small_one() {
    let env = Env::new();
    let token = env.add_agency("pn");
    let service = env.observatory("up").flag("--max-records-per-request", "1000").start().await;
    let mut records: Vec<_> =
        (0..1000).map(|i| record(&format!("L{i}"), 1, "2024-03-05", "75", "0903")).collect();
    records[2]["departement"] = serde_json::json!("7");
    records[998]["iccs"] = serde_json::json!("not-a-code");
    let body: String = records.iter().map(|r| format!("{r}\n")).collect();
    assert!(body.len() > 64 * 1024, "the batch must be over the threshold: {} B", body.len());

    let answer = service.post(Some(&token), "application/x-ndjson", body.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["accepted"], 998, "{}", answer.body);
    let last = answer.sequence();
    let refused: Vec<(u64, &str)> = answer.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(refused, vec![(3, "departement"), (999, "iccs")], "{}", answer.body);

    let again = service.post(Some(&token), "application/x-ndjson", body.clone()).await;
    assert_eq!(
        (again.body["accepted"].as_u64(), again.body["duplicates"].as_u64()),
        (Some(0), Some(998))
    );

    let over = format!("{body}{}\n", record("L1000", 1, "2024-03-05", "75", "0903"));
    let answer = service.post(Some(&token), "application/x-ndjson", over).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(answer.body["error"].as_str().unwrap().contains("more than 1000 records"));

    let unclosed = format!("[{}", body.trim_end().replace('\n', ","));
    let answer = service.post(Some(&token), "application/json", unclosed).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.body["error"].as_str().unwrap().contains("not valid JSON"), "{}", answer.body);

    let total = service.counts("", last).await;
    assert_eq!(total[0]["count"], 998, "{total:?}");
}
