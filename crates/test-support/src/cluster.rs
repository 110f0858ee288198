//! A 3-node nats-server cluster on loopback with JetStream, for tests of what a cluster does
//! that one server cannot: R3 streams, a stream leader killed with SIGKILL, a node restarted on
//! its store. The cluster is `observatory_bus::LocalNatsCluster` in a temporary directory;
//! here its failures become panics, as a test without its servers must fail.

use std::path::PathBuf;

use observatory_bus::LocalNatsCluster;

/// Three nats-server processes `n1`..`n3` on loopback with their stores in a temporary
/// directory (see [`LocalNatsCluster`]). Nodes are numbered from 0 (`n1` is node 0). Drop
/// kills every node, then removes the directory.
pub struct TestCluster {
    // Declared before `_dir`: the servers die before their store directories are removed.
    cluster: LocalNatsCluster,
    /// Held for its Drop only.
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts the three nodes and returns once each has JetStream enabled and the cluster has
    /// a meta leader that sees the two other nodes as current (a stream of 3 replicas can then
    /// be created). Panics with install instructions when nats-server is missing, and with
    /// the nodes' state when the cluster does not form within 30 s.
    pub fn start() -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let cluster = LocalNatsCluster::start(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        TestCluster { cluster, _dir: dir }
    }

    /// The three client URLs, comma-separated, as NATS clients and `--nats-url` take them.
    pub fn urls(&self) -> String {
        self.cluster.urls()
    }

    /// The client URL of node `i` (0-based), whether it is running or not.
    pub fn url(&self, i: usize) -> String {
        self.cluster.url(i)
    }

    /// The `server_name` of node `i`: `n1`, `n2`, `n3`.
    pub fn name(&self, i: usize) -> &str {
        self.cluster.name(i)
    }

    /// The node number of a `server_name`, as stream infos name their leader and peers.
    pub fn index_of(&self, server_name: &str) -> Option<usize> {
        self.cluster.index_of(server_name)
    }

    /// The monitoring base URL of node `i` (`/healthz`, `/jsz`, `/routez`...).
    pub fn monitor_url(&self, i: usize) -> String {
        self.cluster.monitor_url(i)
    }

    /// The config file node `i` is started from.
    pub fn config_path(&self, i: usize) -> PathBuf {
        self.cluster.config_path(i)
    }

    /// The JetStream store directory of node `i`.
    pub fn store_dir(&self, i: usize) -> PathBuf {
        self.cluster.store_dir(i)
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.cluster.is_running(i)
    }

    /// Kills node `i` with SIGKILL: a crash, not a shutdown. Panics when it is not running.
    pub fn kill(&mut self, i: usize) {
        assert!(self.cluster.kill(i), "node {} is not running", self.cluster.name(i));
    }

    /// Starts node `i` again on the same ports and store directory, and returns once it has
    /// JetStream enabled and the meta leader sees it as current again. Its streams may still be
    /// catching up: wait on their replicas for that.
    pub fn restart(&mut self, i: usize) {
        if let Err(e) = self.cluster.restart(i) {
            panic!("restarting {}: {e}", self.cluster.name(i));
        }
    }

    /// The node that leads `stream`, as the leader itself reports it; `None` while no running
    /// node leads it (see [`LocalNatsCluster::leader_of`]).
    pub fn leader_of(&self, stream: &str) -> Option<usize> {
        self.cluster.leader_of(stream)
    }

    /// Node `i`'s own view of `stream` in `/jsz?streams=true`; `None` when the node is down or
    /// does not hold the stream.
    pub fn stream_detail(&self, i: usize, stream: &str) -> Option<serde_json::Value> {
        self.cluster.stream_detail(i, stream)
    }

    /// A JSON monitoring endpoint of node `i`, `None` when the node is down or answers
    /// anything but 200 with JSON.
    pub fn monitor(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        self.cluster.monitor(i, path)
    }
}
