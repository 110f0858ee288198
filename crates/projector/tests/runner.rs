//! The shared consumer loop against a real nats-server: a replay commits what the stream
//! holds and switches `CURRENT`; a serving loop follows that switch to the new version.

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use observatory_bus::{Bus, BusConfig};
use observatory_model::{Channel, Envelope, Event, IncidentReported, Unit, VictimType};
use observatory_projector::{IncidentSink, ProjectorConfig, replay, serve};
use observatory_store::{Manifest, Projection, ProjectionId, Store, TableId};
use observatory_test_support::{TestNats, TestStore};

fn report(id: u32, revision: u32) -> Event {
    Event::IncidentReported(IncidentReported {
        agency_incident_id: format!("I{id}"),
        revision,
        occurred_on: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
        occurred_until: None,
        reported_on: NaiveDate::from_ymd_opt(2024, 3, 2).unwrap(),
        iccs: "0903".into(),
        offence_code: None,
        cyber: true,
        departement: Some("75".into()),
        victim_type: VictimType::Individual,
        channel: Channel::Email,
        loss_eur: None,
        unit: Unit::Offence,
        coding: None,
    })
}

/// Publishes `events` from agency `pn` and returns the sequence of the last one.
async fn publish(bus: &Bus, events: &[Event]) -> u64 {
    let mut sequence = 0;
    for event in events {
        let envelope = Envelope::new(event, "pn", Utc::now());
        let ack = bus
            .jetstream()
            .publish(envelope.subject(), envelope.to_bytes().into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        sequence = ack.sequence;
    }
    sequence
}

fn config() -> ProjectorConfig {
    ProjectorConfig { flush_interval: Duration::from_millis(20), ..ProjectorConfig::default() }
}

/// Polls `check` until it answers, for at most 30 s.
async fn wait_for<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A nats-server, a store directory, a connected bus and the incident projection in that store
/// (the servers stop when the first two are dropped).
async fn setup() -> (TestNats, TestStore, Bus, Projection) {
    let nats = TestNats::start();
    let store = TestStore::new();
    let bus = Bus::connect(BusConfig::new(nats.url())).await.unwrap();
    let projection = Projection::new(
        Store::open(store.path().to_str().unwrap()).unwrap(),
        ProjectionId::Incidents,
    );
    (nats, store, bus, projection)
}

async fn newest(projection: &Projection, version: u32) -> Option<Manifest> {
    projection.newest_manifest(version).await.expect("store readable")
}

#[tokio::test]
async fn a_replay_commits_the_stream_up_to_its_last_sequence_and_switches_current() {
    let (_nats, _store, bus, projection) = setup().await;
    let last = publish(&bus, &[report(1, 1), report(2, 1), report(1, 2)]).await;

    let (version, sequence) =
        replay::<IncidentSink>(&bus, &projection, &config(), |_| {}).await.unwrap();

    assert_eq!((version, sequence), (1, last));
    assert_eq!(projection.current_version().await.unwrap(), Some(1));
    let manifest = projection.serving_manifest().await.unwrap().expect("a committed manifest");
    assert_eq!(manifest.last_sequence, last);
    assert_eq!(manifest.stats["events_applied"], 3);
    assert_eq!(manifest.stats["incidents_known"], 2);
    // Its last flush wrote the fold image a restart loads (and no flush before it did).
    let images = manifest.files(&TableId::FoldImage);
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!((images[0].last_sequence, images[0].rows), (last, 2));
    let restarted =
        IncidentSink::open(projection.clone(), 1, "OBSERVATORY", &config()).await.unwrap();
    assert_eq!(restarted.restored().image, Some(last));
    assert_eq!(restarted.restored().state_rows, 0);
    assert_eq!(restarted.fold.counted_incidents(), 2);

    // A second rebuild goes to the next version and leaves the first one intact.
    let (version, sequence) =
        replay::<IncidentSink>(&bus, &projection, &config(), |_| {}).await.unwrap();
    assert_eq!((version, sequence), (2, last));
    assert_eq!(projection.current_version().await.unwrap(), Some(2));
    assert_eq!(newest(&projection, 1).await.unwrap().last_sequence, last);
}

#[tokio::test]
async fn a_serving_loop_follows_current_to_the_rebuilt_version() {
    let (_nats, _store, bus, projection) = setup().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn({
        let (bus, projection) = (bus.clone(), projection.clone());
        async move {
            serve::<IncidentSink>(&bus, &projection, &config(), async {
                let _ = stopped.await;
            })
            .await
        }
    });

    let first = publish(&bus, &[report(1, 1), report(2, 1)]).await;
    wait_for("version 1 to commit the first events", || async {
        newest(&projection, 1).await.filter(|m| m.last_sequence == first)
    })
    .await;
    assert_eq!(projection.current_version().await.unwrap(), Some(1), "serve created version 1");

    let (version, _) = replay::<IncidentSink>(&bus, &projection, &config(), |_| {}).await.unwrap();
    assert_eq!(version, 2);
    // Only a loop serving version 2 commits anything there after the rebuild.
    let next = publish(&bus, &[report(3, 1)]).await;
    let manifest = wait_for("the serving loop to commit into version 2", || async {
        newest(&projection, 2).await.filter(|m| m.last_sequence == next)
    })
    .await;
    assert_eq!(manifest.stats["incidents_known"], 3);

    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
}
