//! `LocalNatsCluster` without the test-support wrapper: started in a directory of the caller's,
//! it takes an R3 stream through the bus, and its leader is found on the nodes' monitoring.

use std::time::{Duration, Instant};

use observatory_bus::{Bus, BusConfig, LocalNatsCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_cluster_takes_an_r3_stream_and_names_its_leader() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = LocalNatsCluster::start(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cluster.pids().len(), 3);
    for i in 0..3 {
        assert!(cluster.config_path(i).starts_with(dir.path()));
        assert!(cluster.store_dir(i).starts_with(dir.path()));
    }

    let bus = Bus::connect(BusConfig { replicas: 3, ..BusConfig::new(cluster.urls()) })
        .await
        .expect("connect to the cluster");
    let ack = bus
        .jetstream()
        .publish("obs.test.local_cluster", "probe".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    assert_eq!(ack.sequence, 1);
    let info = bus.stream().await.expect("stream").info().await.expect("info").clone();
    assert_eq!(info.config.num_replicas, 3);

    // The monitoring endpoints may lag the acknowledged write by a moment.
    let stream = bus.config().stream.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        if let Some(leader) = cluster.leader_of(&stream) {
            break leader;
        }
        assert!(Instant::now() < deadline, "no node reported leading {stream}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let detail = cluster.stream_detail(leader, &stream).expect("the leader's view");
    assert_eq!(detail["cluster"]["leader"].as_str(), Some(cluster.name(leader)));
}
