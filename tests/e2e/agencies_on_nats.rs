//! Agencies publishing straight to NATS (issue 13): each agency's NKey user may publish on its
//! own feed only, the relay answers as HTTP does, and the server refuses everything else.

use std::time::Duration;

use observatory_bus::async_nats::{self, Event, HeaderMap};
use observatory_bus::{Bus, BusConfig, LocalNatsServer};
use serde_json::{Value, json};

use crate::harness::{Env, record};

/// `agency add ID --nats`: (token, NKey seed).
fn add_nats_agency(env: &Env, id: &str) -> (String, String) {
    let stdout = env.observatory("agency").args(&["add", id, "--nats"]).run();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "token and seed, one per line: {stdout:?}");
    assert!(lines[1].starts_with("SU"), "an NKey user seed: {stdout:?}");
    (lines[0].to_owned(), lines[1].to_owned())
}

#[tokio::test]
async fn an_agency_publishes_its_own_feed_through_the_relay_and_nothing_else() {
    let mut env = Env::new();
    let (_, seed_a) = add_nats_agency(&env, "a");
    let (_, _seed_b) = add_nats_agency(&env, "b");
    env.observatory("nats-config").run();
    let data = env.data_dir();
    let accounts = std::fs::read_to_string(data.join("observatory-accounts.conf")).unwrap();
    assert!(!accounts.contains(&seed_a), "only public keys are written");

    // A nats-server that requires the accounts nats-config wrote.
    let config = data.join("nats-server.conf");
    let store = data.join("nats-store");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:-1\njetstream {{ store_dir: {:?} }}\ninclude \"observatory-accounts.conf\"\n",
            store.to_str().unwrap()
        ),
    )
    .unwrap();
    let server = LocalNatsServer::start_with_config(&config).unwrap();
    let seed_file = data.join("nats-service.nk");
    env.external_nats =
        Some((server.url(), vec!["--nats-nkey-file".into(), seed_file.to_str().unwrap().into()]));
    let service = env.up().await;

    // Agency a, connected with its own key and inbox prefix; server errors collected.
    let (errors_tx, mut errors) = tokio::sync::mpsc::unbounded_channel::<String>();
    let a = async_nats::ConnectOptions::with_nkey(seed_a)
        .custom_inbox_prefix("_INBOX_a")
        .event_callback(move |event| {
            let errors_tx = errors_tx.clone();
            async move {
                if let Event::ServerError(error) = event {
                    let _ = errors_tx.send(error.to_string());
                }
            }
        })
        .connect(server.url())
        .await
        .expect("agency a connects with its NKey");

    // Its own feed: two records and a bad one, answered as HTTP answers.
    let mut bad = record("A3", 1, "2024-03-05", "75", "0903");
    bad["departement"] = json!("20");
    let body = format!(
        "{}\n{}\n{}\n",
        record("A1", 1, "2024-03-05", "75", "0903"),
        bad,
        record("A2", 1, "2024-04-01", "92", "0701")
    );
    let reply = tokio::time::timeout(
        Duration::from_secs(30),
        a.request("feeds.a.incidents", body.clone().into()),
    )
    .await
    .expect("the relay answers")
    .expect("a request on a's own feed is allowed");
    let answer: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        reply.headers.as_ref().and_then(|h| h.get("Status")).map(|v| v.as_str()),
        Some("200")
    );
    assert_eq!(
        (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
        (Some(2), Some(0)),
        "{answer}"
    );
    assert_eq!(answer["rejected"][0]["line"], 2, "{answer}");
    assert_eq!(answer["rejected"][0]["field"], "departement", "{answer}");
    let last = answer["last_sequence"].as_u64().unwrap();
    // The same again: duplicates, as over HTTP; CSV named by its header.
    let again: Value =
        serde_json::from_slice(&a.request("feeds.a.incidents", body.into()).await.unwrap().payload)
            .unwrap();
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(2)),
        "{again}"
    );
    let mut csv = HeaderMap::new();
    csv.insert("Content-Type", "text/plain");
    let refused: Value = serde_json::from_slice(
        &a.request_with_headers("feeds.a.incidents", csv, "x".into()).await.unwrap().payload,
    )
    .unwrap();
    assert_eq!(refused["status"], 415, "{refused}");

    // Everything else is refused by the server, and nothing reaches the stream.
    let forbidden = [
        ("feeds.b.incidents", "another agency's feed"),
        ("obs.incident.0123456789abcdef0123456789abcdef.a", "the event stream itself"),
        ("$JS.API.STREAM.INFO.OBSERVATORY", "the JetStream API"),
    ];
    for (subject, what) in forbidden {
        a.publish(subject, record("X", 1, "2024-03-05", "75", "0903").to_string().into())
            .await
            .unwrap();
        a.flush().await.unwrap();
        let error = tokio::time::timeout(Duration::from_secs(10), errors.recv())
            .await
            .unwrap_or_else(|_| panic!("no permissions violation for {what}"))
            .unwrap();
        assert!(
            error.contains("Permissions Violation") && error.contains(subject),
            "{what}: {error}"
        );
    }
    // Nor may it read other inboxes or the feeds.
    let sneaky = a.subscribe("feeds.>").await.unwrap();
    a.flush().await.unwrap();
    let error =
        tokio::time::timeout(Duration::from_secs(10), errors.recv()).await.unwrap().unwrap();
    assert!(error.contains("Permissions Violation for Subscription"), "{error}");
    drop(sneaky);

    let services = Bus::connect(BusConfig {
        nkey_seed: Some(std::fs::read_to_string(&seed_file).unwrap().trim().to_owned()),
        ..BusConfig::new(server.url())
    })
    .await
    .unwrap();
    assert_eq!(
        services.last_sequence().await.unwrap(),
        last,
        "only a's two records are on the stream"
    );
    let total = service.counts("", last).await;
    assert_eq!(total[0]["count"], 2, "{total:?}");
}
