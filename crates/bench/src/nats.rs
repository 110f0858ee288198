//! The bench's own NATS: one nats-server (R1 stream) or a 3-node cluster on loopback (R3
//! stream, `--replicas 3`), and how the bus and the service processes reach it.

use std::path::Path;

use anyhow::{Context, Result};
use observatory_bus::{Bus, BusConfig, LocalNatsCluster, LocalNatsServer};

pub enum Nats {
    Server(LocalNatsServer),
    Cluster(LocalNatsCluster),
}

impl Nats {
    /// Starts one server (`replicas` 1) or three nodes (`replicas` 3) with their stores in
    /// `dir`.
    pub async fn start(dir: &Path, replicas: usize) -> Result<Nats> {
        if replicas == 1 {
            return Ok(Nats::Server(LocalNatsServer::start(dir, 0)?));
        }
        let dir = dir.to_owned();
        // Forming the cluster polls the nodes for seconds: not on a runtime worker.
        let cluster = tokio::task::spawn_blocking(move || LocalNatsCluster::start(&dir))
            .await
            .context("the cluster's start panicked")??;
        Ok(Nats::Cluster(cluster))
    }

    pub fn replicas(&self) -> usize {
        match self {
            Nats::Server(_) => 1,
            Nats::Cluster(_) => 3,
        }
    }

    /// The `--nats-url`: one URL, or the cluster's three comma-separated.
    pub fn url(&self) -> String {
        match self {
            Nats::Server(server) => server.url(),
            Nats::Cluster(cluster) => cluster.urls(),
        }
    }

    /// Every nats-server process, for CPU time and memory.
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Nats::Server(server) => vec![server.pid()],
            Nats::Cluster(cluster) => cluster.pids(),
        }
    }

    pub async fn bus(&self) -> Result<Bus> {
        Ok(Bus::connect(BusConfig { replicas: self.replicas(), ..BusConfig::new(self.url()) })
            .await?)
    }

    /// The arguments that point a service process (`observatory ingest|project|rebuild`) at
    /// this NATS. `--replicas 3` for a cluster, since a service provisions the stream at start
    /// and one left at its default of 1 would bring the R3 stream down to one replica.
    pub fn service_args(&self) -> Vec<String> {
        let mut args = vec!["--nats-url".to_owned(), self.url()];
        if let Nats::Cluster(_) = self {
            args.extend(["--replicas".to_owned(), self.replicas().to_string()]);
        }
        args
    }
}
