//! The process's Prometheus metrics: one registry per process (a static, as a process has one
//! `/metrics`), every series the observatory exports, and one function per thing worth
//! counting, called by the edge crates (ingest, bus, projector runner, the binary's HTTP
//! layer). The pure cores never call it. `GET /metrics` serves [`encode`] with
//! [`CONTENT_TYPE`] (the Prometheus text format 0.0.4).
//!
//! Names follow Prometheus conventions: the `observatory_` prefix, the unit in the name
//! (`_seconds`, `_bytes`), `_total` on counters. Every label has few values: `source` is a
//! registered agency (recorded only once its token is checked), `route` a route template
//! (`/v1/incidents/counts`, never a raw path), `projection` one of two names.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What an ingest endpoint took in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records {
    /// Incident records (`POST /v1/incidents`).
    Incidents,
    /// Survey respondent rows (`POST /v1/surveys/{survey}/waves/{wave}/responses`).
    SurveyResponses,
}

impl Records {
    fn label(self) -> &'static str {
        match self {
            Records::Incidents => "incident",
            Records::SurveyResponses => "survey_response",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    source: String,
    record: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    projection: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds an HTTP answer took, from a cached reference lookup to a cold netting.
const HTTP_SECONDS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Seconds a flush took: a few milliseconds for a trickle, tens of seconds for a rebuild's.
const FLUSH_SECONDS: [f64; 13] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

struct Metrics {
    registry: Registry,
    ingest_records: Family<RecordLabels, Counter>,
    ingest_subject_reads: Counter,
    publish_retry_rounds: Counter,
    publish_failures: Counter,
    projector_lag: Family<ProjectionLabels, Gauge>,
    projector_committed: Family<ProjectionLabels, Gauge>,
    flush_duration: HistogramFamily<ProjectionLabels>,
    flush_events: HistogramFamily<ProjectionLabels>,
    flush_bytes: HistogramFamily<ProjectionLabels>,
    http_duration: HistogramFamily<HttpLabels>,
    survey_waves_open: Gauge,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("observatory");
        registry.register(
            "build",
            "The observatory's version; always 1",
            Info::new(BuildLabels { version: env!("CARGO_PKG_VERSION") }),
        );
        let ingest_records = Family::<RecordLabels, Counter>::default();
        registry.register(
            "ingest_records",
            "Records an ingest endpoint answered for, by agency (source), kind (incident, \
             survey_response) and outcome (accepted, duplicate, rejected, failed: not stored, \
             answered 503)",
            ingest_records.clone(),
        );
        let ingest_subject_reads = Counter::default();
        registry.register(
            "ingest_subject_reads",
            "Reads of an incident subject the ingest made before deciding a record: its last \
             event or all its events (a first report \
             assumed new, or an amendment of an incident it wrote lately, needs none)",
            ingest_subject_reads.clone(),
        );
        let publish_retry_rounds = Counter::default();
        registry.register(
            "bus_publish_retry_rounds",
            "Rounds of publishes sent again because JetStream did not acknowledge them \
             (no responders, timeout, lost connection: a leader election)",
            publish_retry_rounds.clone(),
        );
        let publish_failures = Counter::default();
        registry.register(
            "bus_publish_failures",
            "Events JetStream had not acknowledged when the retry period ran out (answered 503)",
            publish_failures.clone(),
        );
        let projector_lag = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projector_lag_events",
            "Stream last sequence minus the sequence of the projection's committed manifest; 0 \
             when every event of the projection on the stream is committed",
            projector_lag.clone(),
        );
        let projector_committed = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projector_committed_sequence",
            "Stream sequence of the projection's newest committed manifest",
            projector_committed.clone(),
        );
        let flush_duration: HistogramFamily<ProjectionLabels> =
            Family::new_with_constructor(|| Histogram::new(FLUSH_SECONDS));
        registry.register_with_unit(
            "projector_flush_duration",
            "Time to write a flush's Parquet files and commit its manifest",
            Unit::Seconds,
            flush_duration.clone(),
        );
        // 1 to about a million events, 1 KiB to 1 GiB, by factors of 4.
        let flush_events: HistogramFamily<ProjectionLabels> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(1.0, 4.0, 11)));
        registry.register_with_unit(
            "projector_flush",
            "Events (applied or skipped) a flush committed",
            Unit::Other("events".into()),
            flush_events.clone(),
        );
        let flush_bytes: HistogramFamily<ProjectionLabels> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(1024.0, 4.0, 11)));
        registry.register_with_unit(
            "projector_flush",
            "Bytes of Parquet a flush wrote (compactions included)",
            Unit::Bytes,
            flush_bytes.clone(),
        );
        let http_duration: HistogramFamily<HttpLabels> =
            Family::new_with_constructor(|| Histogram::new(HTTP_SECONDS));
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request, by method, route template and status class",
            Unit::Seconds,
            http_duration.clone(),
        );
        let survey_waves_open = Gauge::default();
        registry.register(
            "survey_waves_open",
            "Survey waves declared and not yet closed, as the survey projection has folded them",
            survey_waves_open.clone(),
        );
        Metrics {
            registry,
            ingest_records,
            ingest_subject_reads,
            publish_retry_rounds,
            publish_failures,
            projector_lag,
            projector_committed,
            flush_duration,
            flush_events,
            flush_bytes,
            http_duration,
            survey_waves_open,
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Every series of this process in the Prometheus text format 0.0.4.
pub fn encode() -> String {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &METRICS.registry)
        .expect("writing to a String cannot fail");
    text
}

fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An ingest answer: its records accepted, duplicate, rejected (a record with several problems
/// counts once) and failed (not stored: JetStream did not acknowledge them in time, or the
/// stream could not be read; the answer is a 503 asking for the batch again).
pub fn ingest_answered(
    source: &str,
    records: Records,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    failed: u64,
) {
    let outcomes = [
        ("accepted", accepted),
        ("duplicate", duplicates),
        ("rejected", rejected),
        ("failed", failed),
    ];
    for (outcome, n) in outcomes {
        // Every outcome of a source appears at its first answer, so a rate is 0, not absent.
        let labels = RecordLabels { source: source.to_owned(), record: records.label(), outcome };
        METRICS.ingest_records.get_or_create(&labels).inc_by(n);
    }
}

/// Reads of incident subjects the ingest made to decide records.
pub fn ingest_subject_reads(reads: u64) {
    METRICS.ingest_subject_reads.inc_by(reads);
}

/// A publisher starts sending again what JetStream did not acknowledge.
pub fn publish_retry_round() {
    METRICS.publish_retry_rounds.inc();
}

/// Events JetStream had not acknowledged once the retry period ran out (counted by the
/// publishers' callers, which see the outcomes).
pub fn publish_failures(events: u64) {
    METRICS.publish_failures.inc_by(events);
}

/// A projector's position: its committed manifest's sequence and how far the stream is ahead.
pub fn projector_position(projection: &str, committed_sequence: u64, lag: u64) {
    let labels = ProjectionLabels { projection: projection.to_owned() };
    METRICS.projector_committed.get_or_create(&labels).set(gauge_value(committed_sequence));
    METRICS.projector_lag.get_or_create(&labels).set(gauge_value(lag));
}

/// A flush committed: how long it took, the events it covered and the bytes it wrote.
pub fn projector_flushed(projection: &str, duration: Duration, events: u64, bytes: u64) {
    let labels = ProjectionLabels { projection: projection.to_owned() };
    METRICS.flush_duration.get_or_create(&labels).observe(duration.as_secs_f64());
    METRICS.flush_events.get_or_create(&labels).observe(events as f64);
    METRICS.flush_bytes.get_or_create(&labels).observe(bytes as f64);
}

/// Survey waves declared and not closed.
pub fn survey_waves_open(waves: usize) {
    METRICS.survey_waves_open.set(gauge_value(waves as u64));
}

/// An HTTP answer. `route` is the matched route template (`/v1/surveys/{survey}/waves`), or
/// `unmatched` for a request no route took; unusual methods are counted as `other`.
pub fn http_answered(method: &str, route: &str, status: u16, duration: Duration) {
    let method = match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    };
    let status = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let labels = HttpLabels { method, route: route.to_owned(), status };
    METRICS.http_duration.get_or_create(&labels).observe(duration.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn series_are_named_by_the_conventions_and_carry_their_labels() {
        ingest_answered("test-agency", Records::Incidents, 3, 1, 2, 0);
        ingest_answered("test-agency", Records::Incidents, 1, 0, 0, 0);
        publish_retry_round();
        projector_position("incidents", 42, 0);
        projector_flushed("incidents", Duration::from_millis(3), 5, 2048);
        http_answered("GET", "/v1/incidents/counts", 200, Duration::from_millis(2));
        http_answered("BREW", "unmatched", 404, Duration::from_millis(1));
        let text = encode();
        let value = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}"));
        let records = |outcome: &str| {
            format!(
                "observatory_ingest_records_total{{source=\"test-agency\",record=\"incident\",outcome=\"{outcome}\"}}"
            )
        };
        assert_eq!(value(&records("accepted")), "4");
        assert_eq!(value(&records("duplicate")), "1");
        assert_eq!(value(&records("rejected")), "2");
        assert!(text.contains("# TYPE observatory_ingest_records_total counter"), "{text}");
        assert!(sample(&text, "observatory_bus_publish_retry_rounds_total").is_some(), "{text}");
        assert_eq!(value("observatory_projector_lag_events{projection=\"incidents\"}"), "0");
        assert_eq!(
            value("observatory_projector_committed_sequence{projection=\"incidents\"}"),
            "42"
        );
        assert_eq!(
            value("observatory_projector_flush_duration_seconds_count{projection=\"incidents\"}"),
            "1"
        );
        assert_eq!(
            value("observatory_projector_flush_events_sum{projection=\"incidents\"}"),
            "5.0"
        );
        assert_eq!(
            value("observatory_projector_flush_bytes_sum{projection=\"incidents\"}"),
            "2048.0"
        );
        assert_eq!(
            value(
                "observatory_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/incidents/counts\",status=\"2xx\"}"
            ),
            "1"
        );
        assert_eq!(
            value(
                "observatory_http_request_duration_seconds_count{method=\"other\",route=\"unmatched\",status=\"4xx\"}"
            ),
            "1"
        );
        assert_eq!(
            value(&format!("observatory_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))),
            "1"
        );
        assert!(text.contains("# TYPE observatory_survey_waves_open gauge"), "{text}");
    }
}
