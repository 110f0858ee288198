//! What operators read: `/metrics` after posts, queries and projection (exact counters per
//! source, the projector's lag reaching 0, latency by route template, all of it valid
//! Prometheus text), `/health/live` and `/health/ready` through a NATS outage and an unreadable
//! store, the projector's `--metrics-http`, and `--log-format json`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Env, Service, free_port, record, terminate, wait_until};

/// One sample line of the exposition text.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The Prometheus text exposition format 0.0.4, read strictly: `# HELP` and `# TYPE` lines
/// before their family's samples, each family's lines in one group, names and label names
/// of the allowed characters, quoted and escaped label values, numeric values, no series
/// twice, and histograms with cumulative buckets whose `+Inf` bucket equals `_count`.
fn parse_exposition(text: &str) -> Result<(BTreeMap<String, String>, Vec<Sample>), String> {
    fn is_name(name: &str, colon: bool) -> bool {
        let mut chars = name.chars();
        let ok = |c: char, first: bool| {
            c.is_ascii_alphabetic()
                || c == '_'
                || (colon && c == ':')
                || (!first && c.is_ascii_digit())
        };
        chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
    }
    fn value(text: &str) -> Result<f64, String> {
        match text {
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            _ => text.parse().map_err(|_| format!("'{text}' is not a value")),
        }
    }
    /// The family a sample belongs to, given the family types seen.
    fn family_of(name: &str, types: &BTreeMap<String, String>) -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && types.get(base).is_some_and(|t| t == "histogram" || t == "summary")
            {
                return base.to_owned();
            }
        }
        name.to_owned()
    }

    if !text.ends_with('\n') {
        return Err("the text does not end with a newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = BTreeSet::new();
    let mut closed = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    let mut seen = BTreeSet::new();
    let mut enter = |family: &str, current: &mut Option<String>| -> Result<(), String> {
        if current.as_deref() != Some(family) {
            if let Some(previous) = current.take() {
                closed.insert(previous);
            }
            if closed.contains(family) {
                return Err(format!("the lines of {family} are not in one group"));
            }
            *current = Some(family.to_owned());
        }
        Ok(())
    };
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("HELP"), Some(name), help) => {
                    if !is_name(name, true) || !helped.insert(name.to_owned()) {
                        return Err(at("a bad or repeated HELP".into()));
                    }
                    let help = help.unwrap_or("");
                    let mut chars = help.chars();
                    while let Some(c) = chars.next() {
                        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                            return Err(at("a bad escape in HELP".into()));
                        }
                    }
                    enter(name, &mut current).map_err(at)?;
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    let known = ["counter", "gauge", "histogram", "summary", "untyped"];
                    if !is_name(name, true) || !known.contains(&kind) {
                        return Err(at("a bad TYPE".into()));
                    }
                    if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                        return Err(at("a second TYPE".into()));
                    }
                    if samples.iter().any(|s: &Sample| family_of(&s.name, &types) == name) {
                        return Err(at("TYPE after the family's samples".into()));
                    }
                    enter(name, &mut current).map_err(at)?;
                }
                _ => {} // a plain comment
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(at(format!("'{name}' is not a metric name")));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            let end = loop {
                let start = match chars.peek() {
                    Some((i, '}')) => break *i,
                    Some((i, _)) => *i,
                    None => return Err(at("unclosed labels".into())),
                };
                let eq = inner[start..].find('=').ok_or_else(|| at("a label without =".into()))?;
                let label = &inner[start..start + eq];
                if !is_name(label, false) || label.starts_with("__") {
                    return Err(at(format!("'{label}' is not a label name")));
                }
                while chars.peek().is_some_and(|(i, _)| *i <= start + eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(at("an unquoted label value".into()));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => return Err(at("a bad escape in a label value".into())),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => return Err(at("an unterminated label value".into())),
                    }
                }
                if labels.insert(label.to_owned(), value).is_some() {
                    return Err(at(format!("label {label} twice")));
                }
                match chars.next() {
                    Some((_, ',')) => {}
                    Some((i, '}')) => break i,
                    _ => return Err(at("labels not separated by commas".into())),
                }
            };
            rest = &inner[end + 1..];
        }
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?
            .split(' ');
        let sample_value = value(fields.next().unwrap_or("")).map_err(at)?;
        if let Some(timestamp) = fields.next() {
            timestamp.parse::<i64>().map_err(|_| at("a bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing text".into()));
        }
        let family = family_of(name, &types);
        enter(&family, &mut current).map_err(at)?;
        if !seen.insert((name.to_owned(), labels.clone())) {
            return Err(at("a series given twice".into()));
        }
        samples.push(Sample { name: name.to_owned(), labels, value: sample_value });
    }
    // Histograms: per label set, cumulative buckets ending in +Inf = _count.
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in samples.iter().filter(|s| s.name == format!("{family}_bucket")) {
            let mut labels = sample.labels.clone();
            let le = labels.remove("le").ok_or(format!("{family}: a bucket without le"))?;
            series.entry(labels).or_default().push((value(&le)?, sample.value));
        }
        for (labels, buckets) in series {
            if !buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1) {
                return Err(format!("{family}{labels:?}: buckets not cumulative"));
            }
            let count = samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && s.labels == labels)
                .ok_or(format!("{family}{labels:?}: no _count"))?;
            match buckets.last() {
                Some((le, n)) if le.is_infinite() && *n == count.value => {}
                _ => return Err(format!("{family}{labels:?}: the +Inf bucket is not _count")),
            }
        }
    }
    Ok((types, samples))
}

/// `GET /metrics`, checked and parsed.
pub(crate) async fn metrics(base: &str) -> Vec<Sample> {
    let response = reqwest::get(format!("{base}/metrics")).await.expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.unwrap();
    let (types, samples) = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (family, kind) in &types {
        assert!(family.starts_with("observatory_"), "{family}");
        assert_eq!(kind == "counter", family.ends_with("_total"), "{family} is a {kind}");
    }
    samples
}

/// The value of the one series named `name` with (at least) `labels`, if any.
pub(crate) fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?} matches {matching:?}");
    matching.first().map(|s| s.value)
}

fn records(samples: &[Sample], source: &str, record: &str, outcome: &str) -> f64 {
    value(
        samples,
        "observatory_ingest_records_total",
        &[("source", source), ("record", record), ("outcome", outcome)],
    )
    .unwrap_or(0.0)
}

fn requests(samples: &[Sample], method: &str, route: &str, status: &str) -> f64 {
    value(
        samples,
        "observatory_http_request_duration_seconds_count",
        &[("method", method), ("route", route), ("status", status)],
    )
    .unwrap_or(0.0)
}

fn survey_declaration() -> Value {
    json!({
        "wave": "2024",
        "population": "households",
        "reference_period": {"from": "2024-01-01", "to": "2024-12-31"},
        "respondent_id": "hh",
        "design": {"weights": "w"},
        "variables": [
            {"name": "w", "type": "numeric", "min": 0},
            {"name": "victim", "type": "categorical", "values": ["yes", "no"], "required": true},
            {"name": "reported", "type": "categorical", "values": ["yes", "no"]},
            {"name": "age", "type": "integer", "min": 15, "max": 120}
        ],
        "victimisation_items": [
            {"name": "fraud", "victim": "victim", "reported": "reported", "iccs": "0701"}
        ]
    })
}

#[tokio::test]
async fn metrics_count_what_was_answered_per_source_and_parse_as_prometheus_text() {
    let env = Env::new();
    let (pn, gn) = (env.add_agency("pn"), env.add_agency("gn"));
    let service = env.up().await;

    // pn: three records accepted; one with two problems and one unreadable line: two rejected
    // records (three rejections).
    let mut twice_wrong = record("D", 1, "2024-03-05", "75", "0903");
    twice_wrong["departement"] = json!("20");
    twice_wrong["iccs"] = json!("9999");
    let body = format!(
        "{}\n{}\n{}\n{twice_wrong}\nnot json\n",
        record("A", 1, "2024-03-05", "75", "0903"),
        record("B", 1, "2024-03-06", "92", "0903"),
        record("C", 1, "2024-04-01", "13", "0701"),
    );
    let first = service.post(Some(&pn), "application/x-ndjson", body).await;
    assert_eq!(first.body["accepted"], 3, "{}", first.body);
    assert_eq!(first.body["rejected"].as_array().unwrap().len(), 3, "{}", first.body);
    // Two duplicates and one new record.
    let again = service
        .post_ndjson(
            &pn,
            &[
                record("A", 1, "2024-03-05", "75", "0903"),
                record("B", 1, "2024-03-06", "92", "0903"),
                record("E", 1, "2024-05-01", "75", "0903"),
            ],
        )
        .await;
    assert_eq!(
        (again.body["accepted"].as_u64(), again.body["duplicates"].as_u64()),
        (Some(1), Some(2))
    );
    // gn: two accepted, one rejected.
    let mut bad = record("H", 1, "2024-03-05", "75", "0903");
    bad["occurred_on"] = json!("2024-13-01");
    let gn_answer = service
        .post_ndjson(
            &gn,
            &[
                record("F", 1, "2024-03-05", "69", "0903"),
                record("G", 1, "2024-03-07", "69", "0903"),
                bad,
            ],
        )
        .await;
    assert_eq!(gn_answer.body["accepted"], 2, "{}", gn_answer.body);

    // Survey rows: three accepted, one twice in the body (a duplicate), one out of range.
    let declared = service
        .post_to(
            "/v1/surveys/cvs/waves",
            Some(&gn),
            "application/json",
            survey_declaration().to_string(),
        )
        .await;
    assert!(declared.status < 300, "{}", declared.body);
    let rows = [
        json!({"hh": "H1", "w": 10.0, "victim": "yes", "age": 30}),
        json!({"hh": "H2", "w": 10.0, "victim": "no", "age": 40}),
        json!({"hh": "H3", "w": 12.0, "victim": "no"}),
        json!({"hh": "H1", "w": 10.0, "victim": "yes", "age": 30}),
        json!({"hh": "H4", "w": 12.0, "victim": "no", "age": 200}),
    ];
    let body: String = rows.iter().map(|r| format!("{r}\n")).collect();
    let answered = service
        .post_to("/v1/surveys/cvs/waves/2024/responses", Some(&gn), "application/x-ndjson", body)
        .await;
    assert_eq!(
        (answered.body["accepted"].as_u64(), answered.body["duplicates"].as_u64()),
        (Some(3), Some(1)),
        "{}",
        answered.body
    );

    // Queries: the counts twice (and once more by `counts`, waiting for the projection), a bad
    // counts request, a crosswalk by name, a path no route takes.
    let last =
        [first.sequence(), again.sequence(), gn_answer.sequence()].into_iter().max().unwrap();
    service.counts("by=year", last).await;
    for _ in 0..2 {
        assert_eq!(service.get("/v1/incidents/counts?by=source").await.status, 200);
    }
    assert_eq!(service.get("/v1/incidents/counts?by=nothing").await.status, 400);
    assert_eq!(service.get_public("/v1/reference/crosswalks/natinf").await.status, 200);
    assert_eq!(service.get_public("/v1/no/such/path").await.status, 404);

    // The projector catches up: lag 0 and the stream's end committed, for both projections.
    let samples = poll(
        "both projections committed with lag 0",
        || metrics(&service.base),
        |samples| {
            let lag =
                |p: &str| value(samples, "observatory_projector_lag_events", &[("projection", p)]);
            let open = value(samples, "observatory_survey_waves_open", &[]);
            lag("incidents") == Some(0.0) && lag("surveys") == Some(0.0) && open == Some(1.0)
        },
    )
    .await;
    let committed =
        value(&samples, "observatory_projector_committed_sequence", &[("projection", "incidents")]);
    assert!(committed.unwrap() >= last as f64, "{committed:?} < {last}");

    // Exact counters per source and kind.
    let expected = [
        ("pn", "incident", [4.0, 2.0, 2.0, 0.0]),
        ("gn", "incident", [2.0, 0.0, 1.0, 0.0]),
        ("gn", "survey_response", [3.0, 1.0, 1.0, 0.0]),
    ];
    for (source, record, counts) in expected {
        for (outcome, count) in
            ["accepted", "duplicate", "rejected", "failed"].into_iter().zip(counts)
        {
            assert_eq!(
                records(&samples, source, record, outcome),
                count,
                "{source} {record} {outcome}"
            );
        }
    }
    assert_eq!(records(&samples, "pn", "survey_response", "accepted"), 0.0);
    assert_eq!(value(&samples, "observatory_bus_publish_retry_rounds_total", &[]), Some(0.0));
    assert_eq!(value(&samples, "observatory_bus_publish_failures_total", &[]), Some(0.0));

    // Flushes: every incident event accepted (6) committed, Parquet written, durations timed.
    let flush = |name: &str| value(&samples, name, &[("projection", "incidents")]).unwrap_or(0.0);
    assert_eq!(flush("observatory_projector_flush_events_sum"), 6.0);
    assert!(flush("observatory_projector_flush_events_count") >= 1.0);
    assert!(flush("observatory_projector_flush_bytes_sum") > 0.0);
    assert_eq!(
        flush("observatory_projector_flush_duration_seconds_count"),
        flush("observatory_projector_flush_events_count")
    );

    // Latency by route template and status class; a raw path is never a label.
    assert_eq!(requests(&samples, "GET", "/v1/incidents/counts", "2xx"), 3.0);
    assert_eq!(requests(&samples, "GET", "/v1/incidents/counts", "4xx"), 1.0);
    assert_eq!(requests(&samples, "GET", "/v1/reference/crosswalks/{name}", "2xx"), 1.0);
    assert_eq!(requests(&samples, "GET", "unmatched", "4xx"), 1.0);
    assert_eq!(requests(&samples, "POST", "/v1/incidents", "2xx"), 3.0);
    assert_eq!(
        requests(&samples, "POST", "/v1/surveys/{survey}/waves/{wave}/responses", "2xx"),
        1.0
    );
    let routes: BTreeSet<&str> =
        samples.iter().filter_map(|s| s.labels.get("route").map(String::as_str)).collect();
    assert!(
        routes.iter().all(|r| *r == "unmatched" || !r.contains("natinf") && !r.contains("?")),
        "{routes:?}"
    );

    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(value(&samples, "observatory_build_info", &[("version", version)]), Some(1.0));
}

#[test]
fn the_exposition_parser_refuses_what_prometheus_refuses() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n\
                # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
    assert!(parse_exposition(good).is_ok(), "{:?}", parse_exposition(good));
    for bad in [
        "a 1",                   // no final newline
        "a{x=1} 1\n",            // unquoted label value
        "a{x=\"1\" 1\n",         // unclosed labels
        "a one\n",               // not a value
        "1a 1\n",                // not a name
        "a 1\nb 1\na 2\n",       // a family in two groups
        "a 1\na 2\n",            // a series twice
        "a 1\n# TYPE a gauge\n", // TYPE after samples
        "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n", // not cumulative
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n", // +Inf is not _count
        "a{x=\"\\q\"} 1\n",                                         // bad escape
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted: {bad:?}");
    }
}

/// Calls `probe` until what it answers satisfies `done` (for at most a minute), and returns that.
async fn poll<T, F, Fut>(what: &str, mut probe: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = probe().await;
        if done(&answer) {
            return answer;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ready(base: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}/health/ready")).await.expect("GET /health/ready");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// The readiness of one part in a `/health/ready` answer.
fn part(body: &Value, name: &str) -> Value {
    body["parts"]
        .as_array()
        .and_then(|parts| parts.iter().find(|p| p["part"] == name))
        .unwrap_or_else(|| panic!("no part {name}: {body}"))
        .clone()
}

async fn live(service: &Service) -> u16 {
    service.call(Method::GET, "/health/live").send().await.status
}

#[tokio::test]
async fn ready_names_the_part_that_is_not_and_recovers_with_it() {
    let mut env = Env::new();

    // up: every part ready once started.
    let up = env.up().await;
    let (status, body) = ready(&up.base).await;
    assert_eq!(status, 200, "{body}");
    for name in ["nats", "ingest", "survey_ingest", "projection:incidents", "projection:surveys"] {
        assert_eq!(part(&body, name)["ready"], true, "{body}");
    }
    up.stop();

    // ingest: NATS goes away, the ingest is live but not ready; NATS comes back, ready again.
    let ingest = env.observatory("ingest").start().await;
    assert_eq!(ready(&ingest.base).await.0, 200);
    let port = env.nats.stop();
    let answer =
        poll("ingest not ready without NATS", || ready(&ingest.base), |(status, _)| *status == 503)
            .await;
    let nats = part(&answer.1, "nats");
    assert_eq!(nats["ready"], false, "{}", answer.1);
    assert!(nats["reason"].as_str().unwrap().contains("not connected to NATS"), "{nats}");
    assert!(nats["action"].as_str().unwrap().contains("--nats-url"), "{nats}");
    assert_eq!(answer.1["status"], 503);
    assert!(answer.1["error"].as_str().unwrap().starts_with("not ready: nats"), "{}", answer.1);
    assert_eq!(live(&ingest).await, 200);
    env.nats.start_on(port);
    wait_until("ingest ready once NATS is back", Duration::from_secs(60), || {
        let base = ingest.base.clone();
        async move { ready(&base).await.0 == 200 }
    })
    .await;
    ingest.stop();

    // query: a CURRENT that is not a version makes the incident projection unreadable.
    let current = env.store().join("projections/incidents/CURRENT");
    std::fs::create_dir_all(current.parent().unwrap()).unwrap();
    std::fs::write(&current, "garbage\n").unwrap();
    let query = env.observatory("query").start().await;
    let (status, body) = ready(&query.base).await;
    assert_eq!(status, 503, "{body}");
    let incidents = part(&body, "projection:incidents");
    assert_eq!(incidents["ready"], false);
    assert!(incidents["reason"].as_str().unwrap().contains("garbage"), "{incidents}");
    assert!(incidents["action"].as_str().unwrap().contains("--store"), "{incidents}");
    assert_eq!(part(&body, "projection:surveys")["ready"], true);
    assert_eq!(live(&query).await, 200);
    // The old /health stays as it was for the query: 200.
    assert_eq!(query.call(Method::GET, "/health").send().await.status, 200);
    // An empty store is a valid empty projection (ready once its counts are netted, within
    // the engine's next look at the store).
    std::fs::remove_file(&current).unwrap();
    wait_until("query ready once CURRENT is readable", Duration::from_secs(30), || {
        let base = query.base.clone();
        async move { ready(&base).await.0 == 200 }
    })
    .await;
    query.stop();

    // project --metrics-http: its health and metrics, on the address it is given.
    let address = format!("127.0.0.1:{}", free_port());
    let mut projector = env.observatory("project").flag("--metrics-http", &address).spawn();
    let base = format!("http://{address}");
    wait_until("the projector's /health/ready", Duration::from_secs(60), || {
        let base = base.clone();
        async move {
            match reqwest::get(format!("{base}/health/ready")).await {
                Ok(response) => response.status() == 200,
                Err(_) => false,
            }
        }
    })
    .await;
    let (_, body) = ready(&base).await;
    assert_eq!(part(&body, "nats")["ready"], true, "{body}");
    assert_eq!(part(&body, "projection:incidents")["ready"], true, "{body}");
    // Each projection reports its position once it has opened its version and consumes.
    poll(
        "the projector's position in its metrics",
        || metrics(&base),
        |samples| {
            ["incidents", "surveys"].iter().all(|p| {
                value(samples, "observatory_projector_lag_events", &[("projection", p)]).is_some()
            })
        },
    )
    .await;
    terminate(&mut projector);
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_span_fields() {
    let env = Env::new();
    let token = env.add_agency("pn");
    let log = env.dir.path().join("observatory.log");
    let file = std::fs::File::create(&log).unwrap();
    let service = env
        .observatory("up")
        .flag("--log-format", "json")
        .start_with(Stdio::from(file), &[("OBSERVATORY_LOG", "info")])
        .await;
    let answer = service
        .post(
            Some(&token),
            "application/x-ndjson",
            format!("{}\nnot json\n", record("A", 1, "2024-03-05", "75", "0903")),
        )
        .await;
    assert_eq!(answer.body["accepted"], 1, "{}", answer.body);
    service.stop();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{e}: not one JSON object: {line}"))
        })
        .collect();
    assert!(lines.len() >= 3, "{text}");
    for line in &lines {
        for key in ["timestamp", "level", "target"] {
            assert!(line[key].is_string(), "no {key}: {line}");
        }
    }
    assert!(lines.iter().any(|l| l["message"] == "listening"), "{text}");
    let batch = lines
        .iter()
        .find(|l| l["message"] == "batch answered")
        .unwrap_or_else(|| panic!("no batch line: {text}"));
    assert_eq!(batch["level"], "INFO");
    assert_eq!(batch["span"]["name"], "ingest", "{batch}");
    assert_eq!(batch["span"]["source"], "pn", "{batch}");
    assert_eq!(batch["span"]["accepted"], 1, "{batch}");
    assert_eq!(batch["span"]["rejected"], 1, "{batch}");
    assert_eq!(batch["spans"][0]["source"], "pn", "{batch}");
}

/// `observatory query` offers the memory it frees to the kernel lazily unless told otherwise,
/// and mimalloc holds what it was told (the log reads the options back from the allocator).
#[tokio::test]
async fn the_query_service_tells_the_allocator_what_to_do_with_freed_memory() {
    let env = Env::new();
    for (flag, expected) in [(None, "Lazy"), (Some("keep"), "Keep"), (Some("return"), "Return")] {
        let log = env.dir.path().join("query.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut query = env.observatory("query").flag("--log-format", "json");
        if let Some(freed) = flag {
            query = query.flag("--freed-memory", freed);
        }
        let service = query.start_with(Stdio::from(file), &[("OBSERVATORY_LOG", "info")]).await;
        service.stop();
        let text = std::fs::read_to_string(&log).unwrap();
        let line = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["freed_memory"].is_string())
            .unwrap_or_else(|| panic!("no freed_memory line: {text}"));
        assert_eq!(line["freed_memory"], expected, "{line}");
    }
}
