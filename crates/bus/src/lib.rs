//! NATS JetStream edge: provisions the event stream, publishes with pipelined acks and
//! backpressure, and opens the consumers the projector and the ingest's dedupe index read.

mod cluster;
mod ordered;
mod publish;
mod read;
mod server;

use std::time::Duration;

use async_nats::jetstream::{self, stream};

pub use async_nats;
pub use cluster::LocalNatsCluster;
pub use ordered::{DEFAULT_RESUME_AFTER, Delivered, OrderedConsumer};
pub use publish::{Outgoing, PublishFailure, Published, Publisher, RetryPolicy};
pub use read::Stored;
pub use server::{LocalNatsServer, ServerError, find_nats_server};

/// Default stream name; every event subject `obs.>` lands in it.
pub const DEFAULT_STREAM: &str = "OBSERVATORY";
/// Header carrying the idempotency key (source, agency_incident_id, revision), so the
/// ingest can rebuild its index by replaying headers only.
pub const DEDUPE_HEADER: &str = "Obs-Dedupe";
/// Header of incident events: `observatory_model::RevisionStamp` (incident, revision, content
/// fingerprint), from which the ingest tells duplicates from conflicts and stale revisions.
pub const REVISION_HEADER: &str = "Obs-Revision";

#[derive(Debug, Clone)]
pub struct BusConfig {
    pub url: String,
    pub stream: String,
    pub replicas: usize,
    /// The server drops a repeated `Nats-Msg-Id` within this window (events other than
    /// incident revisions, which carry none). Longer-lived idempotency is the ingest's and the
    /// projector's job (invariant 4).
    pub duplicate_window: Duration,
    /// Zero means unlimited: a rebuild needs all history (invariant 2).
    pub max_age: Duration,
    /// Publish acks in flight before `publish` waits (backpressure).
    pub max_inflight: usize,
    /// How long an unacknowledged publish is sent again (a leader election).
    pub retry: RetryPolicy,
    /// The services' NKey seed, when the server requires authentication (the accounts of
    /// `observatory nats-config`).
    pub nkey_seed: Option<String>,
    /// How long an ordered consumer waits for a message the stream still owes before it
    /// recreates itself from the last one it delivered; zero leaves it to the client.
    pub resume_after: Duration,
}

impl BusConfig {
    pub fn new(url: impl Into<String>) -> BusConfig {
        BusConfig {
            url: url.into(),
            stream: DEFAULT_STREAM.to_owned(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::ZERO,
            max_inflight: 8192,
            retry: RetryPolicy::default(),
            nkey_seed: None,
            resume_after: DEFAULT_RESUME_AFTER,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {source}; is nats-server running (with -js)?")]
    Connect { url: String, source: async_nats::ConnectError },
    #[error(
        "cannot provision stream {stream}: {message}; check that JetStream is enabled (nats-server -js)"
    )]
    Stream { stream: String, message: String },
    #[error("consumer {name} on stream {stream}: {message}")]
    Consumer { stream: String, name: String, message: String },
}

/// A connected JetStream context with the event stream provisioned.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    /// The context events are published through: [`RetryPolicy::ack_timeout`].
    publishing: jetstream::Context,
    config: BusConfig,
}

impl Bus {
    /// Connects to any server `config.url` lists (several comma-separated URLs, as NATS
    /// clients take them: the nodes of a cluster) and provisions the stream.
    ///
    /// The first connection is not retried: `connect` provisions the stream at once, so a
    /// client left connecting in the background would only turn "no server reachable" into a
    /// JetStream timeout. A service that reaches none of the listed servers at start exits
    /// with an error naming them, and its supervisor (systemd, compose, Kubernetes) restarts
    /// it where the restarts can be seen; one node down does not stop a start, since every
    /// listed server is tried. Once connected the client reconnects forever, to any listed
    /// or discovered node: a service must outlive any outage of the cluster (a rolling
    /// restart of every node), and a client that gave up would leave a process that looks
    /// alive and never publishes or reads again.
    pub async fn connect(config: BusConfig) -> Result<Bus, BusError> {
        let options = match &config.nkey_seed {
            Some(seed) => async_nats::ConnectOptions::with_nkey(seed.clone()),
            None => async_nats::ConnectOptions::new(),
        };
        let client = options
            .name("observatory")
            .max_reconnects(None)
            .connect(server_urls(&config.url))
            .await
            .map_err(|source| BusError::Connect { url: config.url.clone(), source })?;
        let context = |timeout| {
            jetstream::ContextBuilder::new()
                .timeout(timeout)
                .max_ack_inflight(config.max_inflight)
                .backpressure_on_inflight(true)
                .build(client.clone())
        };
        let jetstream = context(Duration::from_secs(30));
        // Acks wait less than API requests, so that several attempts fit in the retry period.
        let publishing = context(config.retry.ack_timeout);
        let bus = Bus { client, jetstream, publishing, config };
        bus.provision_stream().await?;
        Ok(bus)
    }

    pub fn config(&self) -> &BusConfig {
        &self.config
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![format!("{}.>", observatory_model::SUBJECT_ROOT)],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: self.config.replicas,
            duplicate_window: self.config.duplicate_window,
            max_age: self.config.max_age,
            max_messages: -1,
            max_bytes: -1,
            discard: stream::DiscardPolicy::New,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// Creates the stream, or brings an existing one to the configured limits.
    async fn provision_stream(&self) -> Result<(), BusError> {
        let wanted = self.stream_config();
        let err = |e: &dyn std::fmt::Display| BusError::Stream {
            stream: wanted.name.clone(),
            message: e.to_string(),
        };
        match self.jetstream.get_stream(&wanted.name).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(|e| err(&e))?;
                let current = &info.config;
                if current.duplicate_window != wanted.duplicate_window
                    || current.max_age != wanted.max_age
                    || current.num_replicas != wanted.num_replicas
                {
                    self.jetstream.update_stream(&wanted).await.map_err(|e| err(&e))?;
                    tracing::info!(stream = %wanted.name, "stream limits updated");
                }
            }
            Err(_) => {
                self.jetstream.create_stream(wanted.clone()).await.map_err(|e| err(&e))?;
                tracing::info!(stream = %wanted.name, "stream created");
            }
        }
        Ok(())
    }

    pub async fn stream(&self) -> Result<stream::Stream, BusError> {
        self.jetstream.get_stream(&self.config.stream).await.map_err(|e| BusError::Stream {
            stream: self.config.stream.clone(),
            message: e.to_string(),
        })
    }

    /// Sequence of the newest message in the stream (0 when empty).
    pub async fn last_sequence(&self) -> Result<u64, BusError> {
        let mut stream = self.stream().await?;
        let info = stream.info().await.map_err(|e| BusError::Stream {
            stream: self.config.stream.clone(),
            message: e.to_string(),
        })?;
        Ok(info.state.last_sequence)
    }

    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.publishing.clone(), self.config.retry)
    }

    /// An ordered, ephemeral consumer over `filter_subject` from the first message,
    /// optionally delivering headers only (cheap replays of idempotency keys).
    pub async fn ordered_replay(
        &self,
        filter_subject: &str,
        headers_only: bool,
    ) -> Result<OrderedConsumer, BusError> {
        Ok(self.ordered_from(filter_subject, headers_only, 0, 0).await?.messages)
    }

    /// An ordered consumer over `filter_subject` starting right after `after_sequence`, with
    /// how many matching messages it had to deliver when created. `max_batch` caps the
    /// messages per pull request (0: the client's default), for streams of large messages.
    ///
    /// No acks: the server keeps no per-message delivery state (a durable consumer with acks
    /// doubles nats-server's CPU per event). The client recreates the consumer from the last
    /// stream sequence it saw whenever a delivery is missed, and [`OrderedConsumer`] does so
    /// sooner when a pull request goes unanswered, so messages still arrive exactly once and
    /// in order. Projectors resume from their committed manifest, never from a consumer's ack
    /// floor (invariant 3), so they need nothing more.
    pub async fn ordered_from(
        &self,
        filter_subject: &str,
        headers_only: bool,
        after_sequence: u64,
        max_batch: usize,
    ) -> Result<OrderedFrom, BusError> {
        let spec =
            ordered::Spec { filter_subject: filter_subject.to_owned(), headers_only, max_batch };
        let stream = self.stream().await?;
        let (messages, pending_at_start) =
            OrderedConsumer::open(stream, spec, after_sequence, self.config.resume_after).await?;
        Ok(OrderedFrom { messages, pending_at_start })
    }
}

/// The servers of a `--nats-url`: comma-separated, blanks around each ignored. async-nats
/// parses a `&str` as one URL (`a,b` is an invalid port), so the list is split here.
fn server_urls(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|part| !part.is_empty()).collect()
}

/// An ordered consumer and how many messages were pending when it was created.
pub struct OrderedFrom {
    pub messages: OrderedConsumer,
    pub pending_at_start: u64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_nats_url_lists_servers_separated_by_commas() {
        assert_eq!(super::server_urls("nats://127.0.0.1:4222"), ["nats://127.0.0.1:4222"]);
        assert_eq!(
            super::server_urls("nats://nats-1:4222, nats://nats-2:4222,nats://nats-3:4222,"),
            ["nats://nats-1:4222", "nats://nats-2:4222", "nats://nats-3:4222"]
        );
    }
}
