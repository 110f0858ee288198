//! What the survey ledger relies on from the server, pinned against a real nats-server: the
//! expected last sequence checked across a wildcard of subjects
//! (`Nats-Expected-Last-Subject-Sequence-Subject`), and direct gets over a wildcard.

use bytes::Bytes;
use observatory_bus::{Bus, BusConfig, Outgoing, PublishFailure};

fn event(subject: &str, id: &str, expected: Option<u64>) -> Outgoing {
    Outgoing {
        subject: subject.into(),
        message_id: Some(id.into()),
        dedupe: format!("{:0>32}", id),
        revision: None,
        expected_last_subject_sequence: expected,
        expected_last_subject_filter: expected.map(|_| "obs.survey.id.cvs.*".to_owned()),
        payload: Bytes::from(id.to_owned()),
    }
}

#[tokio::test]
async fn the_expected_sequence_is_checked_across_the_surveys_subjects() {
    let nats = observatory_test_support::TestNats::start();
    let bus = Bus::connect(BusConfig::new(nats.url())).await.unwrap();
    let publisher = bus.publisher();

    // Nothing yet on any subject of the survey: 0 is the expected sequence.
    let first = publisher.publish_one(event("obs.survey.id.cvs.insee", "a", Some(0))).await;
    assert_eq!(first.unwrap().sequence, 1);
    // Another survey's subject does not count.
    publisher.publish_one(event("obs.survey.id.other.insee", "b", None)).await.unwrap();
    // Another source wrote after 1, on another subject of the survey: 1 is refused...
    publisher.publish_one(event("obs.survey.id.cvs.ssmsi", "c", Some(1))).await.unwrap();
    let stale = publisher.publish_one(event("obs.survey.id.cvs.insee", "d", Some(1))).await;
    assert_eq!(stale, Err(PublishFailure::WrongLastSequence));
    // ...and 3, the last of the survey, accepted.
    let fresh = publisher.publish_one(event("obs.survey.id.cvs.insee", "d", Some(3))).await;
    assert_eq!(fresh.unwrap().sequence, 4);
    // The expectation is checked before the duplicate window: a repeat of a stored message
    // (a retry whose first ack was lost) that expected what it expected the first time is
    // refused as stale, not answered as a duplicate. The writer reads the survey again and
    // finds its own message id there.
    let again = publisher.publish_one(event("obs.survey.id.cvs.insee", "d", Some(3))).await;
    assert_eq!(again, Err(PublishFailure::WrongLastSequence));
    let again = publisher.publish_one(event("obs.survey.id.cvs.insee", "d", Some(4))).await;
    assert_eq!(again.unwrap(), observatory_bus::Published { sequence: 4, duplicate: true });

    // Direct gets read the survey's events over the wildcard, in order, after a sequence.
    let all = bus.on_subject_after("obs.survey.id.cvs.*", 0).await.unwrap();
    assert_eq!(all.iter().map(|m| m.sequence).collect::<Vec<_>>(), [1, 3, 4]);
    let after = bus.on_subject_after("obs.survey.id.cvs.*", 3).await.unwrap();
    assert_eq!(after.iter().map(|m| m.payload.clone()).collect::<Vec<_>>(), ["d"]);
    assert_eq!(after[0].header("Nats-Msg-Id"), Some("d"));
    let last = bus.last_on_subject_at_leader("obs.survey.id.cvs.*").await.unwrap();
    assert_eq!(last.map(|m| m.sequence), Some(4));
    assert!(bus.last_on_subject_at_leader("obs.survey.id.none.*").await.unwrap().is_none());
}
