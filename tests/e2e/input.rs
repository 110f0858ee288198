//! What agencies send that is not quite right: every line of a body ends up accepted or
//! rejected with its line, field and reason (repeated keys, stray quotes, a byte-order mark,
//! lenient dates, absurd amounts, invisible characters in ids), and the requests around the
//! records (the Authorization scheme, the period closure's Content-Type and month) are checked.

use chrono::{Datelike, Months, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Env, record};

const CSV_HEADER: &str = "agency_incident_id,revision,occurred_on,reported_on,iccs,cyber,departement,victim_type,channel,loss_eur";

fn rejected(body: &Value) -> Vec<(u64, Option<String>, String)> {
    body["rejected"]
        .as_array()
        .unwrap_or_else(|| panic!("no rejected list: {body}"))
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["field"].as_str().map(str::to_owned),
                r["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_line_is_accepted_or_rejected_with_its_field_and_reason() {
    let env = Env::new();
    let token = env.add_agency("pn");
    let service = env.observatory("ingest").start().await;

    // NDJSON after a byte-order mark, with a key sent twice on line 2.
    let twice = r#"{"agency_incident_id":"N2","departement":"976","occurred_on":"2024-03-05","reported_on":"2024-03-05","iccs":"0903","cyber":true,"departement":"75","victim_type":"individual","channel":"email"}"#;
    let body = format!(
        "\u{feff}{}\n{twice}\n{}\n",
        record("N1", 1, "2024-03-05", "75", "0903"),
        record("N3", 1, "2024-03-05", "75", "0903")
    );
    let answer = service.post(Some(&token), "application/x-ndjson", body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["accepted"], 2, "{}", answer.body);
    let r = rejected(&answer.body);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!((r[0].0, r[0].1.as_deref()), (2, Some("departement")));
    assert!(r[0].2.contains("appears twice"), "{r:?}");

    // The same in a JSON array: the other elements are still read.
    let body = format!(
        "\u{feff}[{}, {}, {}]",
        record("J1", 1, "2024-03-05", "75", "0903"),
        twice.replace("N2", "J2"),
        record("J3", 1, "2024-03-05", "75", "0903")
    );
    let answer = service.post(Some(&token), "application/json", body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["accepted"], 2, "{}", answer.body);
    let r = rejected(&answer.body);
    assert_eq!((r.len(), r[0].0, r[0].1.as_deref()), (1, 2, Some("departement")), "{r:?}");

    // CSV: an unclosed quote on line 2 rejects line 2 only; line 3 is read.
    let body = format!(
        "{CSV_HEADER}\nC2,1,2024-06-01,2024-06-02,0903,true,75,business,\"sms,3.5\nC3,1,2024-06-01,2024-06-02,0903,true,75,business,sms,3.5\n"
    );
    let answer = service.post(Some(&token), "text/csv", body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["accepted"], 1, "{}", answer.body);
    let r = rejected(&answer.body);
    assert_eq!((r.len(), r[0].0, r[0].1.as_deref()), (1, 2, None), "{r:?}");
    assert!(r[0].2.contains("unclosed quote"), "{r:?}");

    // A CSV column named twice: the whole body is refused, naming it and both positions.
    let body = "agency_incident_id,departement,iccs,departement\nD1,976,0903,75\n";
    let answer = service.post(Some(&token), "text/csv", body).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let error = answer.body["error"].as_str().unwrap();
    assert!(error.contains("'departement'") && error.contains("columns 2 and 4"), "{error}");

    // Lenient dates, a loss over the bound, ids with spaces or invisible characters.
    let mut date = record("V1", 1, "2024-03-05", "75", "0903");
    date["occurred_on"] = json!("+2024-3-05");
    let mut loss = record("V2", 1, "2024-03-05", "75", "0903");
    loss["loss_eur"] = json!(5e12);
    let spaced = record("V3 ", 1, "2024-03-05", "75", "0903");
    let bidi = record("V\u{202E}4", 1, "2024-03-05", "75", "0903");
    let answer = service
        .post_ndjson(
            &token,
            &[date, loss, spaced, bidi, record("V5", 1, "2024-03-05", "75", "0903")],
        )
        .await;
    assert_eq!(answer.body["accepted"], 1, "{}", answer.body);
    let r = rejected(&answer.body);
    let found: Vec<(u64, &str)> =
        r.iter().map(|(line, field, _)| (*line, field.as_deref().unwrap_or(""))).collect();
    assert_eq!(
        found,
        vec![
            (1, "occurred_on"),
            (2, "loss_eur"),
            (3, "agency_incident_id"),
            (4, "agency_incident_id")
        ],
        "{r:?}"
    );
    assert!(r[0].2.contains("YYYY-MM-DD"), "{r:?}");
    assert!(r[1].2.contains("1000000000"), "{r:?}");
    assert!(r[2].2.contains("leading or trailing spaces"), "{r:?}");
    assert!(r[3].2.contains("U+202E"), "{r:?}");
}

#[tokio::test]
async fn the_authorization_scheme_and_the_period_closure_request_are_checked() {
    let env = Env::new();
    let token = env.add_agency("pn");
    let service = env.observatory("ingest").start().await;
    let body = format!("{}\n", record("A", 1, "2024-03-05", "75", "0903"));
    let post = |authorization: String| {
        let call = service
            .call(Method::POST, "/v1/incidents")
            .content_type("application/x-ndjson")
            .header("authorization", &authorization)
            .body(body.clone());
        async move {
            let answer = call.send_json().await;
            (answer.status, answer.body)
        }
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let (status, answer) = post(format!("{scheme} {token}")).await;
        assert_eq!(status, 200, "{scheme}: {answer}");
    }
    for bad in [
        format!("Bearer  {token}"),
        format!("Bearer\t{token}"),
        format!("Bearer {token} x"),
        format!("Bearer{token}"),
        format!("Basic {token}"),
        format!("Bearers {token}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
    ] {
        let (status, answer) = post(bad.clone()).await;
        assert_eq!(status, 401, "{bad:?}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("Bearer <token>"), "{bad:?}: {answer}");
    }

    let close = |content_type: Option<&str>, body: String| {
        let mut call = service.call(Method::POST, "/v1/periods/close").token(&token).body(body);
        if let Some(content_type) = content_type {
            call = call.content_type(content_type);
        }
        async move {
            let answer = call.send_json().await;
            (answer.status, answer.body)
        }
    };
    let month = |m: &str| json!({"month": m}).to_string();
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let (status, answer) = close(content_type, month("2024-01")).await;
        assert_eq!(status, 415, "{content_type:?}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("application/json"), "{error}");
        assert!(error.contains(content_type.unwrap_or("no Content-Type")), "{error}");
    }

    let today = Utc::now().date_naive();
    let current = today.format("%Y-%m").to_string();
    let next = (today.with_day(1).unwrap() + Months::new(1)).format("%Y-%m").to_string();
    let (status, answer) = close(Some("application/json"), month(&next)).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["rejected"][0]["field"], "month", "{answer}");
    assert!(answer["rejected"][0]["error"].as_str().unwrap().contains(&current), "{answer}");
    let (status, answer) = close(Some("application/json; charset=utf-8"), month(&current)).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) =
        close(Some("application/json"), r#"{"month":"2024-01","month":"2024-02"}"#.into()).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["rejected"][0]["field"], "month", "{answer}");
}
