//! The ordered consumer against a real nats-server: when the server stops answering its pull
//! requests while the stream still owes messages, it recreates itself from the last message it
//! delivered instead of waiting on the client's timer, and still delivers each message once
//! and in order.

use std::time::Duration;

use futures::TryStreamExt;
use observatory_bus::async_nats::datetime;
use observatory_bus::{Bus, BusConfig, OrderedFrom};

const N: u64 = 60;

async fn next(messages: &mut observatory_bus::OrderedConsumer, k: u64) -> (u64, String) {
    let delivered = tokio::time::timeout(Duration::from_secs(20), messages.next())
        .await
        .unwrap_or_else(|_| panic!("message {k} not delivered within 20 s"))
        .expect("stream open")
        .expect("message");
    let payload = String::from_utf8(delivered.message.payload.to_vec()).unwrap();
    (delivered.stream_sequence, payload)
}

async fn publish(bus: &Bus, payload: String) {
    let ack = bus.jetstream().publish("obs.test.ordered", payload.into()).await;
    ack.unwrap().await.unwrap();
}

/// A nats-server, and a bus on it that resumes after 200 ms of silence, with messages 1 to N
/// published (message k carries k).
async fn started() -> (observatory_test_support::TestNats, Bus) {
    let nats = observatory_test_support::TestNats::start();
    let config =
        BusConfig { resume_after: Duration::from_millis(200), ..BusConfig::new(nats.url()) };
    let bus = Bus::connect(config).await.unwrap();
    for k in 1..=N {
        publish(&bus, k.to_string()).await;
    }
    (nats, bus)
}

/// Pauses the stream's only consumer for an hour. A paused consumer keeps its pull requests
/// and its heartbeats but delivers nothing: the client's own recovery never starts, as when a
/// pull request goes unanswered.
async fn pause_the_consumer(bus: &Bus) -> async_nats::jetstream::stream::Stream {
    let stream = bus.stream().await.unwrap();
    let names: Vec<String> = stream.consumer_names().try_collect().await.unwrap();
    assert_eq!(names.len(), 1, "one consumer: {names:?}");
    let hour = Duration::from_secs(3600);
    let until = datetime::add_std_duration(datetime::now(), hour).unwrap();
    stream.pause_consumer(&names[0], until).await.unwrap();
    stream
}

#[tokio::test]
async fn a_consumer_the_server_stops_answering_is_recreated_from_its_last_message() {
    let (_nats, bus) = started().await;

    // One message per pull request, so that the client holds little the server has sent.
    let OrderedFrom { mut messages, pending_at_start } =
        bus.ordered_from("obs.test.>", false, 0, 1).await.unwrap();
    assert_eq!(pending_at_start, N);
    let mut seen = Vec::new();
    for k in 1..=10 {
        seen.push(next(&mut messages, k).await);
    }

    pause_the_consumer(&bus).await;

    for k in 11..=N {
        seen.push(next(&mut messages, k).await);
    }
    let expected: Vec<(u64, String)> = (1..=N).map(|k| (k, k.to_string())).collect();
    assert_eq!(seen, expected, "every message once, in order");
    let resumed = messages.resumed();
    assert!(resumed >= 1, "the consumer was recreated");

    // Caught up, silence is a quiet stream, not a lost request: nothing is recreated, and
    // the next message published is still delivered.
    let quiet = tokio::time::timeout(Duration::from_millis(800), messages.next()).await;
    assert!(quiet.is_err(), "nothing to deliver once caught up");
    assert_eq!(messages.resumed(), resumed, "no consumer recreated while caught up");
    publish(&bus, "61".to_owned()).await;
    assert_eq!(next(&mut messages, N + 1).await, (N + 1, "61".to_owned()));
}

#[tokio::test]
async fn a_consumer_recreated_on_a_purged_stream_waits_for_new_messages_without_recreating_again() {
    let (_nats, bus) = started().await;
    let OrderedFrom { mut messages, .. } =
        bus.ordered_from("obs.test.>", false, 0, 1).await.unwrap();
    for k in 1..=10 {
        assert_eq!(next(&mut messages, k).await.0, k);
    }

    // The stream owed 50 more when the server went silent, but they are purged meanwhile: the
    // consumer recreated once owes nothing, and waits as a caught-up one does.
    pause_the_consumer(&bus).await.purge().await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(1500), messages.next()).await;
    assert!(quiet.is_err(), "nothing left to deliver");
    assert_eq!(messages.resumed(), 1, "recreated once, then waiting without a timer");

    publish(&bus, "61".to_owned()).await;
    assert_eq!(next(&mut messages, N + 1).await, (N + 1, "61".to_owned()));
}
