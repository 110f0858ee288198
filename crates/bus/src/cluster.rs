//! A 3-node nats-server cluster on loopback with JetStream: what an R3 stream needs, for the
//! tests of failover and for `observatory bench --replicas 3`. Each node is started from a
//! config file (`nats-server -c`) through `LocalNatsServer`, and readiness is read from the
//! nodes' monitoring endpoints.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::server::{LocalNatsServer, ServerError, find_nats_server};

/// Nodes of the cluster: the smallest that keeps a quorum (2) when one node is lost.
const NODES: usize = 3;
const CLUSTER_NAME: &str = "observatory-local";
/// Ports are chosen free, then released for nats-server to bind: another process may take one
/// in between, which shows as a node failing to start; then new ports are tried.
const START_ATTEMPTS: usize = 3;
/// How long a node may take to enable JetStream, and the cluster to elect its meta leader.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

struct Node {
    name: String,
    client_port: u16,
    monitor_port: u16,
    config: PathBuf,
    store: PathBuf,
    server: Option<LocalNatsServer>,
}

/// Three nats-server processes `n1`..`n3` on loopback, each with its own client, route and
/// monitoring port and its own store directory, routed to each other in one cluster with
/// JetStream. Nodes are numbered from 0 (`n1` is node 0). Drop kills every node (SIGKILL) and
/// leaves the directory it was started in to its owner.
pub struct LocalNatsCluster {
    nodes: Vec<Node>,
}

impl LocalNatsCluster {
    /// Starts the three nodes with their config files and store directories in `dir` (created
    /// if missing), and returns once each has JetStream enabled and the cluster has a meta
    /// leader that sees the two other nodes as current (a stream of 3 replicas can then be
    /// created). Blocks for as long as that takes (up to about a minute).
    ///
    /// The store directories of an attempt whose nodes did not all start are removed before
    /// the next attempt, so `dir` should be meant for a new cluster.
    pub fn start(dir: &Path) -> Result<LocalNatsCluster, ServerError> {
        // Checked first so that a missing binary is reported as such, not as three failed
        // attempts to start a node.
        find_nats_server()?;
        std::fs::create_dir_all(dir)
            .map_err(|source| ServerError::ClusterFiles { path: dir.to_owned(), source })?;
        let mut attempts = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(dir) {
                Ok(cluster) => {
                    for i in 0..NODES {
                        cluster.wait_ready(i)?;
                    }
                    cluster.wait_formed()?;
                    return Ok(cluster);
                }
                Err(e) => attempts.push(e),
            }
        }
        Err(ServerError::ClusterStart { attempts })
    }

    fn try_start(dir: &Path) -> Result<LocalNatsCluster, ServerError> {
        let mut cluster = Self::configure(dir)?;
        for i in 0..NODES {
            if let Err(e) = cluster.spawn(i) {
                let stores: Vec<PathBuf> = cluster.nodes.iter().map(|n| n.store.clone()).collect();
                // The started nodes must be dead before their stores go.
                drop(cluster);
                for store in stores {
                    let _ = std::fs::remove_dir_all(store);
                }
                return Err(e);
            }
        }
        Ok(cluster)
    }

    /// Picks the ports and writes each node's config file; starts nothing.
    fn configure(dir: &Path) -> Result<LocalNatsCluster, ServerError> {
        let ports = free_ports(3 * NODES).map_err(ServerError::Ports)?;
        let (client, rest) = ports.split_at(NODES);
        let (route, monitor) = rest.split_at(NODES);
        let mut nodes = Vec::with_capacity(NODES);
        for i in 0..NODES {
            let name = format!("n{}", i + 1);
            let store = dir.join(&name);
            let routes: Vec<String> = (0..NODES)
                .filter(|&j| j != i)
                .map(|j| format!("\"nats-route://127.0.0.1:{}\"", route[j]))
                .collect();
            let text = format!(
                "server_name: {name}\n\
                 listen: 127.0.0.1:{client}\n\
                 http: 127.0.0.1:{monitor}\n\
                 jetstream {{ store_dir: {store} }}\n\
                 cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{route}\n  routes: [{routes}]\n}}\n",
                client = client[i],
                monitor = monitor[i],
                store = quoted(&store),
                route = route[i],
                routes = routes.join(", "),
            );
            let config = dir.join(format!("{name}.conf"));
            std::fs::write(&config, text)
                .map_err(|source| ServerError::ClusterFiles { path: config.clone(), source })?;
            nodes.push(Node {
                name,
                client_port: client[i],
                monitor_port: monitor[i],
                config,
                store,
                server: None,
            });
        }
        Ok(LocalNatsCluster { nodes })
    }

    fn spawn(&mut self, i: usize) -> Result<(), ServerError> {
        let node = &mut self.nodes[i];
        let server = LocalNatsServer::start_with_config(&node.config)
            .map_err(|e| ServerError::Node { node: node.name.clone(), source: Box::new(e) })?;
        node.server = Some(server);
        Ok(())
    }

    /// The three client URLs, comma-separated, as NATS clients and `--nats-url` take them.
    pub fn urls(&self) -> String {
        (0..NODES).map(|i| self.url(i)).collect::<Vec<_>>().join(",")
    }

    /// The client URL of node `i` (0-based), whether it is running or not.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// The `server_name` of node `i`: `n1`, `n2`, `n3`.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The node number of a `server_name`, as stream infos name their leader and peers.
    pub fn index_of(&self, server_name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == server_name)
    }

    /// The monitoring base URL of node `i` (`/healthz`, `/jsz`, `/routez`...).
    pub fn monitor_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].monitor_port)
    }

    /// The config file node `i` is started from.
    pub fn config_path(&self, i: usize) -> PathBuf {
        self.nodes[i].config.clone()
    }

    /// The JetStream store directory of node `i`.
    pub fn store_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].store.clone()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].server.is_some()
    }

    /// The process ids of the running nodes, e.g. to sample their CPU time and memory.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|node| node.server.as_ref().map(LocalNatsServer::pid))
            .collect()
    }

    /// Kills node `i` with SIGKILL: a crash, not a shutdown (no lame-duck mode, no leadership
    /// handed over, nothing flushed). False when it was not running.
    pub fn kill(&mut self, i: usize) -> bool {
        self.nodes[i].server.take().is_some()
    }

    /// Starts node `i` again on the same ports and store directory (killing it first if it
    /// runs), and returns once it has JetStream enabled and the meta leader sees it as current
    /// again. Its streams may still be catching up: wait on their replicas for that.
    pub fn restart(&mut self, i: usize) -> Result<(), ServerError> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_ready(i)?;
        self.wait_formed()
    }

    /// The node that leads `stream` (in any account), as the leader itself reports it on its
    /// monitoring endpoint: a node that says it is the leader, so a stale view of another node
    /// (which may still name a killed leader) is never taken for the answer. `None` while no
    /// running node leads it, e.g. during an election.
    pub fn leader_of(&self, stream: &str) -> Option<usize> {
        (0..NODES).find(|&i| {
            self.stream_detail(i, stream).is_some_and(|detail| {
                detail["cluster"]["leader"].as_str() == Some(self.nodes[i].name.as_str())
            })
        })
    }

    /// Node `i`'s own view of `stream`: its entry in `/jsz?streams=true` (`name`, `cluster`
    /// with `leader` and `replicas`, `state` with `messages`, `first_seq`, `last_seq`). `None`
    /// when the node is down or does not hold the stream.
    pub fn stream_detail(&self, i: usize, stream: &str) -> Option<serde_json::Value> {
        let jsz = self.monitor(i, "/jsz?streams=true")?;
        let accounts = jsz["account_details"].as_array()?;
        accounts
            .iter()
            .filter_map(|account| account["stream_detail"].as_array())
            .flatten()
            .find(|detail| detail["name"].as_str() == Some(stream))
            .cloned()
    }

    /// A JSON monitoring endpoint of node `i` (`path` with its query), `None` when the node
    /// is down or answers anything but 200 with JSON.
    pub fn monitor(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        if !self.is_running(i) {
            return None;
        }
        match http_get(self.nodes[i].monitor_port, path) {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// Waits until node `i` answers `/healthz?js-enabled-only=true` with 200.
    fn wait_ready(&self, i: usize) -> Result<(), ServerError> {
        let port = self.nodes[i].monitor_port;
        let mut last = String::new();
        let ready = wait_until(READY_TIMEOUT, || {
            match http_get(port, "/healthz?js-enabled-only=true") {
                Ok((200, _)) => return true,
                Ok((status, body)) => last = format!("{status} {body}"),
                Err(e) => last = e.to_string(),
            }
            false
        });
        if ready {
            return Ok(());
        }
        Err(ServerError::NodeNotReady {
            node: self.nodes[i].name.clone(),
            waited: READY_TIMEOUT,
            last,
        })
    }

    /// Waits until every running node names the same meta leader and that leader sees every
    /// other running node as a current peer of the meta group (`/jsz` `meta_cluster`).
    fn wait_formed(&self) -> Result<(), ServerError> {
        let running: Vec<usize> = (0..NODES).filter(|&i| self.is_running(i)).collect();
        let mut last = String::new();
        let formed = wait_until(READY_TIMEOUT, || {
            let metas: Vec<serde_json::Value> = running
                .iter()
                .filter_map(|&i| self.monitor(i, "/jsz").map(|jsz| jsz["meta_cluster"].clone()))
                .collect();
            last = serde_json::Value::Array(metas.clone()).to_string();
            let leaders: Vec<&str> =
                metas.iter().filter_map(|meta| meta["leader"].as_str()).collect();
            let Some(&leader) = leaders.first() else { return false };
            if leaders.len() != running.len() || leaders.iter().any(|l| *l != leader) {
                return false;
            }
            let Some(at_leader) = self.index_of(leader).filter(|i| running.contains(i)) else {
                return false;
            };
            let Some(meta) = running.iter().position(|&i| i == at_leader).map(|k| &metas[k]) else {
                return false;
            };
            let replicas = meta["replicas"].as_array().cloned().unwrap_or_default();
            meta["cluster_size"].as_u64() == Some(NODES as u64)
                && running.iter().filter(|&&i| i != at_leader).all(|&i| {
                    replicas.iter().any(|peer| {
                        peer["name"].as_str() == Some(self.nodes[i].name.as_str())
                            && peer["current"].as_bool() == Some(true)
                    })
                })
        });
        if formed {
            return Ok(());
        }
        Err(ServerError::ClusterNotFormed { waited: READY_TIMEOUT, last })
    }
}

/// A path as a quoted string of the nats-server config format, so that a work directory with
/// blanks or quotes in its name still parses.
fn quoted(path: &Path) -> String {
    let text = path.display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{text}\"")
}

/// Polls `condition` every 50 ms until it holds (true) or `timeout` passes (false).
fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// `n` distinct ports free on loopback right now (all held open until every one is chosen).
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

/// A GET on loopback, as HTTP/1.0 so that the answer is never chunked and ends with the
/// connection: status and body. By hand, so that the bus needs no HTTP client for it.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("unexpected answer: {head:.80}")))?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_store_path_is_quoted_for_the_config_file() {
        let path = std::path::Path::new("work dir/a \"b\"\\c");
        assert_eq!(super::quoted(path), r#""work dir/a \"b\"\\c""#);
    }
}
