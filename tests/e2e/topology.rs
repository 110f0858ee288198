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

/// The ingest's reads of incident subjects so far.
async fn subject_reads(service: &Service) -> f64 {
    let samples = crate::operations::metrics(&service.base).await;
    crate::operations::value(&samples, "observatory_ingest_subject_reads_total", &[])
        .expect("the ingest counts its reads")
}

/// `(accepted, duplicates, rejected fields)` of a 200 answer to `records`.
async fn send(service: &Service, token: &str, records: &[Value]) -> (u64, u64, Vec<String>) {
    let answer = service.post_ndjson(token, records).await;
    let (accepted, duplicates, _) = tally(&answer);
    let rejected = answer.body["rejected"].as_array().unwrap();
    let rejected = rejected.iter().map(|r| r["error"].as_str().unwrap().to_owned()).collect();
    (accepted, duplicates, rejected)
}

/// An ingest remembers what it stored lately, so an amendment of an incident it wrote is
/// published without reading the incident's subject back. Another replica's write in between
/// makes that memory stale: the leader refuses the publish, and the ingest reads the subject
/// and decides again. A duplicate or a refusal is never answered from memory.
#[tokio::test]
async fn an_amendment_of_what_an_ingest_wrote_needs_no_read_unless_another_moved_it() {
    let env = Env::new();
    let token = env.add_agency("pn");
    let up = env.up().await;
    let replica = env.observatory("ingest").start().await;
    let day = "2024-03-05";
    let a = |revision, departement| record("A", revision, day, departement, "0903");

    let first = [a(1, "75"), record("B", 1, day, "75", "0903")];
    assert_eq!(send(&up, &token, &first).await, (2, 0, vec![]));
    assert_eq!(subject_reads(&up).await, 0.0, "first reports are assumed new");
    assert_eq!(send(&up, &token, &[a(2, "13")]).await, (1, 0, vec![]));
    assert_eq!(subject_reads(&up).await, 0.0, "the ingest wrote revision 1 itself");

    // The other replica never wrote A: it reads A's subject before publishing revision 3.
    assert_eq!(send(&replica, &token, &[a(3, "69")]).await, (1, 0, vec![]));
    assert_eq!(subject_reads(&replica).await, 1.0);

    // `up` still takes revision 2 for A's last event: the leader refuses revision 4 sent
    // after it, and `up` reads the subject and publishes it after revision 3.
    let answer = up.post_ndjson(&token, &[a(4, "2A")]).await;
    assert_eq!(tally(&answer), (1, 0, 0), "{}", answer.body);
    let last = answer.sequence();
    assert_eq!(subject_reads(&up).await, 1.0);

    // B's revision 1 again: a duplicate, answered from a read, not from memory.
    let again = [record("B", 1, day, "75", "0903")];
    assert_eq!(send(&up, &token, &again).await, (0, 1, vec![]));
    assert_eq!(subject_reads(&up).await, 2.0);

    // A's revision 3 with other content: a conflict, refused from reads (the last event, then
    // all of them, to find revision 3), naming the current revision, 4.
    let (accepted, duplicates, rejected) = send(&up, &token, &[a(3, "33")]).await;
    assert_eq!((accepted, duplicates, rejected.len()), (0, 0, 1), "{rejected:?}");
    assert!(rejected[0].contains("(current revision 4)"), "{rejected:?}");
    assert_eq!(subject_reads(&up).await, 4.0);

    // A is counted once, where its last revision puts it.
    let by = up.counts("by=departement", last).await;
    let departements: Vec<(&str, u64)> = by
        .iter()
        .map(|row| (row["departement"].as_str().unwrap(), row["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(departements, [("2A", 1), ("75", 1)], "{by:?}");
}

#[tokio::test]
async fn two_ingest_replicas_record_each_survey_respondent_once() {
    use std::time::Duration;

    use crate::survey::{close, declare, responses, small_declaration};
    let env = Env::new();
    let token = env.add_agency("ssmsi");
    let up = env.up().await;
    let replica = env.observatory("ingest").start().await;

    // The same declaration to both at the same moment: one declares, the other repeats it.
    let declaration = small_declaration("2024");
    let (a, b) = tokio::join!(
        declare(&up, &token, "cvs", &declaration),
        declare(&replica, &token, "cvs", &declaration)
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 201], "{} / {}", a.body, b.body);
    assert_ne!(a.body["declared"], b.body["declared"], "{} / {}", a.body, b.body);

    // 20 uploads of 600 rows, each to both at once; every upload re-sends the last 100
    // respondents of the one before, and holds one row with a bad value.
    const UPLOADS: usize = 20;
    const NEW: usize = 500;
    let row = |i: usize| {
        let region = if i.is_multiple_of(2) { "11" } else { "84" };
        let victim = if i.is_multiple_of(3) { "yes" } else { "no" };
        json!({"hh": format!("H{i:05}"), "region": region, "w": 100 + i % 7, "victim": victim})
    };
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    for upload in 0..UPLOADS {
        let from = (upload * NEW).saturating_sub(100);
        let mut body: String =
            (from..(upload + 1) * NEW).map(|i| format!("{}\n", row(i))).collect();
        body.push_str(&format!(
            "{}\n",
            json!({"hh": format!("BAD{upload}"), "region": "99", "w": 1, "victim": "no"})
        ));
        let lines = ((upload + 1) * NEW - from + 1) as u64;
        let (a, b) = tokio::join!(
            responses(&up, &token, "cvs", "2024", "application/x-ndjson", body.clone()),
            responses(&replica, &token, "cvs", "2024", "application/x-ndjson", body)
        );
        for answer in [&a, &b] {
            let (acc, dup, rej) = tally(answer);
            assert_eq!(acc + dup + rej, lines, "{}", answer.body);
            assert_eq!(rej, 1, "{}", answer.body);
            accepted += acc;
            duplicates += dup;
        }
    }
    let respondents = (UPLOADS * NEW) as u64;
    // Each respondent accepted once over both replicas; everything else answered duplicate.
    let resent = 2 * 100 * (UPLOADS as u64 - 1);
    assert_eq!((accepted, duplicates), (respondents, respondents + resent));

    // Both close at once: one closure, the other a repeat of it, with the same count.
    let (a, b) = tokio::join!(
        close(&up, &token, "cvs", "2024", ""),
        close(&replica, &token, "cvs", "2024", "")
    );
    for answer in [&a, &b] {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["respondents"], respondents, "{}", answer.body);
    }
    assert_ne!(a.body["duplicate"], b.body["duplicate"], "{} / {}", a.body, b.body);
    // Each replica knows the wave is closed, whichever closed it.
    for service in [&up, &replica] {
        let late = responses(
            service,
            &token,
            "cvs",
            "2024",
            "application/x-ndjson",
            format!("{}\n", row(99_999)),
        )
        .await;
        assert_eq!(late.status, 409, "{}", late.body);
    }

    crate::harness::wait_until("the wave's closure projected", Duration::from_secs(120), || {
        let up = &up;
        async move {
            let listing = up.get("/v1/surveys").await;
            listing.status == 200 && listing.body["surveys"][0]["waves"][0]["status"] == "closed"
        }
    })
    .await;
    let listing = up.get("/v1/surveys").await;
    assert_eq!(
        listing.body["surveys"][0]["waves"][0]["respondents"], respondents,
        "{}",
        listing.body
    );
}

/// One agency's feed: `batches` NDJSON batches of `size` new incidents, each sent until it is
/// answered 200, honouring `Retry-After` on a 503. Returns the records acknowledged as accepted
/// over every answer (503s included) and the highest sequence seen.
async fn feed(
    client: reqwest::Client,
    base: String,
    token: String,
    agency: &'static str,
    batches: usize,
    size: usize,
    progress: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> (u64, u64, usize) {
    let (mut accepted, mut last, mut unavailable) = (0u64, 0u64, 0usize);
    for b in 0..batches {
        let body: String = (0..size)
            .map(|i| {
                let id = format!("{agency}-{b}-{i}");
                let day = format!("2024-{:02}-{:02}", 1 + i % 12, 1 + i % 28);
                format!("{}\n", record(&id, 1, &day, "75", "0903"))
            })
            .collect();
        loop {
            let response = client
                .post(format!("{base}/v1/incidents"))
                .bearer_auth(&token)
                .header("content-type", "application/x-ndjson")
                .body(body.clone())
                .send()
                .await
                .expect("the ingest answers, even during an election");
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let answer: Value = response.json().await.unwrap();
            let (acc, dup) = (
                answer["accepted"].as_u64().unwrap_or(0),
                answer["duplicates"].as_u64().unwrap_or(0),
            );
            let failed = answer["failed"].as_array().map_or(0, Vec::len) as u64;
            assert!(answer["rejected"].as_array().is_none_or(Vec::is_empty), "{answer}");
            accepted += acc;
            last = last.max(answer["last_sequence"].as_u64().unwrap_or(0));
            match status {
                200 => {
                    assert_eq!(acc + dup, size as u64, "{answer}");
                    break;
                }
                503 => {
                    assert_eq!(
                        acc + dup + failed,
                        size as u64,
                        "every record is answered for: {answer}"
                    );
                    unavailable += 1;
                    // The client's part of the protocol: wait as long as the answer asks.
                    let wait = retry_after.expect("a 503 says when to retry");
                    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                }
                other => panic!("unexpected {other}: {answer}"),
            }
        }
        progress.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    (accepted, last, unavailable)
}

/// The stream leader is killed twice with SIGKILL while two agencies post continuously; every
/// record acknowledged in any answer is counted once, and after the retries the answers asked
/// for the counts equal the records sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_stream_leader_twice_loses_and_doubles_no_record() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    let mut env = Env::with_cluster();
    let tokens = [env.add_agency("pn"), env.add_agency("gn")];
    let service = env.up().await;
    const BATCHES: usize = 30;
    const SIZE: usize = 400;
    let progress = Arc::new(AtomicUsize::new(0));
    let feeders: Vec<_> = ["pn", "gn"]
        .into_iter()
        .zip(tokens.clone())
        .map(|(agency, token)| {
            tokio::spawn(feed(
                service.client.clone(),
                service.base.clone(),
                token,
                agency,
                BATCHES,
                SIZE,
                progress.clone(),
            ))
        })
        .collect();

    // Two kills, at moments drawn from the clock: after 3–10 and then 5–15 more batches.
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
            as usize;
    let moments = [3 + seed % 8, 5 + (seed / 8) % 11];
    let mut at = 0;
    for (kill, after) in moments.into_iter().enumerate() {
        at += after;
        let target = at;
        crate::harness::wait_until("the feeds to progress", Duration::from_secs(240), || {
            let done = progress.load(Ordering::SeqCst);
            async move { done >= target }
        })
        .await;
        let cluster = env.cluster.as_mut().unwrap();
        let leader = tokio::task::block_in_place(|| {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(leader) = cluster.leader_of("OBSERVATORY") {
                    break leader;
                }
                assert!(std::time::Instant::now() < deadline, "no stream leader");
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        eprintln!(
            "kill {}: SIGKILL to the stream leader {} after {target} batches",
            kill + 1,
            cluster.name(leader)
        );
        tokio::task::block_in_place(|| cluster.kill(leader));
        crate::harness::wait_until("a new stream leader", Duration::from_secs(60), || {
            let elected = env.cluster.as_ref().unwrap().leader_of("OBSERVATORY").is_some();
            async move { elected }
        })
        .await;
        let cluster = env.cluster.as_mut().unwrap();
        tokio::task::block_in_place(|| cluster.restart(leader));
    }

    let (mut accepted, mut last, mut unavailable) = (0, 0, 0);
    for feeder in feeders {
        let (a, l, u) = feeder.await.unwrap();
        accepted += a;
        last = last.max(l);
        unavailable += u;
    }
    let sent = (2 * BATCHES * SIZE) as u64;
    eprintln!(
        "{sent} records sent, {unavailable} answers 503 with Retry-After, every batch resent until 200"
    );
    assert_eq!(accepted, sent, "each record acknowledged as accepted in exactly one answer");
    // The projector's ordered consumer is recreated after each kill, and a debug build beside
    // three servers and the suite's other tests can take longer than one counts request
    // waits: how soon it catches up is not what this test is about.
    let path = format!("/v1/incidents/counts?by=source&min_sequence={last}");
    crate::harness::wait_until(
        "the projection to reach the last record",
        Duration::from_secs(180),
        || {
            let service = &service;
            let path = path.clone();
            async move { service.get(&path).await.status == 200 }
        },
    )
    .await;
    let total = service.counts("by=source", last).await;
    let counts: Vec<(String, u64)> = total
        .iter()
        .map(|row| (row["source"].as_str().unwrap().to_owned(), row["count"].as_u64().unwrap()))
        .collect();
    let half = (BATCHES * SIZE) as u64;
    assert_eq!(counts, [("gn".to_owned(), half), ("pn".to_owned(), half)], "{total:?}");
}
