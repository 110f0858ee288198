//! The bus on a real 3-node JetStream cluster: `--nats-url` listing the three nodes, an R3
//! stream, failover of the client when its node dies, and no acknowledged message lost or
//! doubled when the stream leader is killed with SIGKILL and restarted.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use observatory_bus::{Bus, BusConfig};
use observatory_test_support::TestCluster;

const SUBJECT: &str = "obs.test.cluster.probe";

fn r3(cluster: &TestCluster) -> BusConfig {
    BusConfig { replicas: 3, ..BusConfig::new(cluster.urls()) }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics naming `what` after `timeout`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A JetStream context on the bus's connection with 2 s request timeouts, so that a request
/// left unanswered during an election or a reconnect is retried within seconds (the bus's own
/// context waits 30 s).
fn quick(bus: &Bus) -> jetstream::Context {
    jetstream::ContextBuilder::new().timeout(Duration::from_secs(2)).build(bus.client().clone())
}

/// The stream's info, `None` while unanswered.
async fn info(bus: &Bus) -> Option<stream::Info> {
    let mut stream = quick(bus).get_stream(&bus.config().stream).await.ok()?;
    stream.info().await.ok().cloned()
}

/// Whether the stream's info shows three replicas on n1, n2 and n3: a leader and two peers,
/// both current.
fn three_current_replicas(info: &stream::Info) -> bool {
    let Some(cluster) = &info.cluster else { return false };
    let mut names: BTreeSet<&str> = cluster.replicas.iter().map(|p| p.name.as_str()).collect();
    let Some(leader) = cluster.leader.as_deref() else { return false };
    names.insert(leader);
    cluster.replicas.len() == 2
        && cluster.replicas.iter().all(|peer| peer.current && !peer.offline)
        && names == BTreeSet::from(["n1", "n2", "n3"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_urls_and_replicas_3_provision_a_stream_with_three_current_replicas() {
    let cluster = TestCluster::start();
    let bus = Bus::connect(r3(&cluster)).await.expect("connect to the cluster");
    let info = eventually(Duration::from_secs(20), "three current replicas", || async {
        info(&bus).await.filter(three_current_replicas)
    })
    .await;
    assert_eq!(info.config.num_replicas, 3);
    let leader = info.cluster.as_ref().and_then(|c| c.leader.clone()).expect("leader");
    assert_eq!(cluster.leader_of(&bus.config().stream), cluster.index_of(&leader));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_fails_over_to_another_listed_node_and_connects_while_one_is_down() {
    let mut cluster = TestCluster::start();
    let bus = Bus::connect(r3(&cluster)).await.expect("connect to the cluster");
    eventually(Duration::from_secs(20), "three current replicas", || async {
        info(&bus).await.filter(three_current_replicas)
    })
    .await;

    // Kill the node the client is connected to: it reconnects to another and JetStream
    // answers again (the stream keeps a quorum of 2).
    let connected = bus.client().server_info().server_name;
    let dead = cluster.index_of(&connected).expect("connected to a node of the cluster");
    cluster.kill(dead);
    let killed_at = Instant::now();
    let now = eventually(Duration::from_secs(30), "the stream answering after failover", || {
        let bus = bus.clone();
        async move {
            info(&bus).await?;
            Some(bus.client().server_info().server_name)
        }
    })
    .await;
    assert_ne!(now, connected, "still reports the killed node");
    println!(
        "connected to {connected}, killed; the stream answered through {now} after {:.1?}",
        killed_at.elapsed()
    );

    // A new process starts while that node is down: the listed URLs still connect it, and
    // whichever order the client tries them in (it shuffles them), the dead one is skipped.
    // The dead URL alone does not connect: the list is what lets a service start.
    for _ in 0..4 {
        let other = Bus::connect(r3(&cluster)).await.expect("connect with one node down");
        assert_ne!(other.client().server_info().server_name, connected);
    }
    let alone = Bus::connect(BusConfig { replicas: 3, ..BusConfig::new(cluster.url(dead)) });
    assert!(alone.await.is_err(), "connected to a killed node");
}

/// Publishes message `k` (payload `k`, `Nats-Msg-Id` `m<k>`) until it is acknowledged,
/// retrying with the same id for at most 30 s on the errors of an election or a reconnect
/// (no responders, a missing ack, a lost connection, a JetStream error answer): a retried
/// message the stream already stored is then answered as a duplicate, never stored twice.
/// Returns its sequence and the errors met.
async fn publish_until_acked(js: &jetstream::Context, k: u64) -> (u64, Vec<String>) {
    let started = Instant::now();
    let mut errors = Vec::new();
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("m{k}").as_str());
        let attempt =
            async { js.publish_with_headers(SUBJECT, headers, k.to_string().into()).await?.await };
        match attempt.await {
            Ok(ack) => return (ack.sequence, errors),
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        PublishErrorKind::StreamNotFound
                            | PublishErrorKind::TimedOut
                            | PublishErrorKind::BrokenPipe
                            | PublishErrorKind::Other
                    ),
                    "message {k}: {e}"
                );
                errors.push(e.to_string());
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "message {k} not acknowledged within 30 s: {errors:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Publishes messages `range` in order, each acknowledged before the next, and checks each
/// landed at sequence `k + 1` (no gap, no double). Returns the errors retried.
async fn publish_all(js: &jetstream::Context, range: std::ops::Range<u64>) -> Vec<String> {
    let mut retried = Vec::new();
    for k in range {
        let (sequence, errors) = publish_until_acked(js, k).await;
        assert_eq!(sequence, k + 1, "message {k} after retries {errors:?}");
        retried.extend(errors);
    }
    retried
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_loses_no_acknowledged_message_and_doubles_none() {
    const N: u64 = 300;
    let started = Instant::now();
    let mut cluster = TestCluster::start();
    let bus = Bus::connect(r3(&cluster)).await.expect("connect to the cluster");
    let stream_name = bus.config().stream.clone();
    eventually(Duration::from_secs(20), "three current replicas", || async {
        info(&bus).await.filter(three_current_replicas)
    })
    .await;
    let js = quick(&bus);

    let retried_before = publish_all(&js, 0..N).await;
    assert!(retried_before.is_empty(), "retries with every node up: {retried_before:?}");

    // Kill the leader and publish straight away: the first messages are retried through the
    // election (the stream takes no message without a leader), the others go to the new one.
    let leader = cluster.leader_of(&stream_name).expect("the stream has a leader");
    cluster.kill(leader);
    let killed_at = Instant::now();
    let retried_after = publish_all(&js, N..N + 1).await;
    let first_ack = killed_at.elapsed();
    let new_leader = eventually(Duration::from_secs(30), "a new stream leader", || async {
        cluster.leader_of(&stream_name).filter(|&l| l != leader)
    })
    .await;
    let retried_later = publish_all(&js, N + 1..2 * N).await;
    assert!(retried_later.is_empty(), "retries once a new leader was seen: {retried_later:?}");

    cluster.restart(leader);
    eventually(Duration::from_secs(30), "the restarted node current again", || async {
        let info = info(&bus).await.filter(three_current_replicas)?;
        let own = cluster.stream_detail(leader, &stream_name)?;
        (own["state"]["last_seq"].as_u64() == Some(2 * N)).then_some(info)
    })
    .await;

    let info = info(&bus).await.expect("stream info");
    assert_eq!(info.state.messages, 2 * N);
    assert_eq!((info.state.first_sequence, info.state.last_sequence), (1, 2 * N));

    // A consumer reads every message once, in order, sequence k + 1 carrying k.
    let mut messages = bus.ordered_replay(SUBJECT, false).await.expect("consumer");
    for k in 0..2 * N {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .unwrap_or_else(|_| panic!("message {k} not delivered within 10 s"))
            .expect("stream open")
            .expect("message");
        let (sequence, payload) = (message.stream_sequence, &message.message.payload);
        assert_eq!((sequence, payload.as_ref()), (k + 1, k.to_string().as_bytes()));
    }
    println!(
        "leader {} killed; {} leads; first message after the kill acknowledged after \
         {first_ack:.1?}, {} attempts retried ({:?}); whole test {:.1?}",
        cluster.name(leader),
        cluster.name(new_leader),
        retried_after.len(),
        retried_after.iter().collect::<BTreeSet<_>>(),
        started.elapsed(),
    );
}

/// Two writers racing for one subject on an R3 stream: each pair of events expecting the
/// subject empty stores one and refuses the other as a wrong last sequence, whichever code
/// the leader answers it with (10071 once the first is stored, 10164 while it is still being
/// replicated). A refusal read as "not acknowledged" would turn an ingest's race into a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_race_for_a_subject_is_a_wrong_last_sequence_on_a_cluster() {
    use observatory_bus::{Outgoing, PublishFailure};
    let cluster = TestCluster::start();
    let bus = Bus::connect(r3(&cluster)).await.unwrap();
    let event = |subject: usize, writer: &str| Outgoing {
        subject: format!("obs.test.race.{subject}"),
        message_id: Some(format!("{writer}-{subject}")),
        dedupe: format!("{subject:032x}"),
        revision: None,
        expected_last_subject_sequence: Some(0),
        expected_last_subject_filter: None,
        payload: bytes::Bytes::from(writer.to_owned()),
    };
    // Pipelined: the second of each pair reaches the leader while the first is in flight.
    let events: Vec<Outgoing> =
        (0..200).flat_map(|subject| [event(subject, "a"), event(subject, "b")]).collect();
    let results = bus.publisher().publish_all(events).await;
    for (subject, pair) in results.chunks(2).enumerate() {
        let stored = pair.iter().filter(|r| r.is_ok()).count();
        let refused =
            pair.iter().filter(|r| matches!(r, Err(PublishFailure::WrongLastSequence))).count();
        assert_eq!((stored, refused), (1, 1), "subject {subject}: {pair:?}");
    }
}
