//! `observatory bench` itself, on a small stream: the figures BENCHMARKS.md records come from
//! this command, so its projection, ingest and query stages must run, and report what they
//! measured, on every change.

use serde_json::Value;

use crate::harness::Env;

/// `observatory bench` with `flags`, in a work directory of its own: what it printed, and the
/// report it wrote as JSON.
fn bench(flags: &[(&str, &str)]) -> (String, Value) {
    let env = Env::new();
    let work = env.dir.path().join("bench");
    let json = env.dir.path().join("bench.json");
    std::fs::create_dir_all(&work).unwrap();
    let mut command = env.observatory("bench");
    for &(flag, value) in flags {
        command = command.flag(flag, value);
    }
    let text = command
        .flag("--work-dir", work.to_str().unwrap())
        .flag("--json", json.to_str().unwrap())
        .run();
    (text, serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap())
}

/// Two trials of the projection stage: each a projection floor, a raw replay and a rebuild of
/// the whole stream (a new version each), all reported, the headline figures being their
/// medians. The floor writes a state row for every incident event and folds nothing: no
/// counts, and at least the rows the rebuild keeps (which drops repeated revisions).
#[test]
fn the_projection_stage_reports_every_trial_and_their_medians() {
    let (text, report) =
        bench(&[("--events", "3000"), ("--stages", "projection"), ("--projection-runs", "2")]);
    assert!(text.contains("medians of 2 trials"), "{text}");
    let projection = &report["projection"];
    let trials = projection["trials"].as_array().expect("trials");
    assert_eq!(trials.len(), 2, "{projection:#}");
    assert!(text.contains("projection floor (decoding, state rows to Parquet, no fold)"), "{text}");
    // The fold timed alone folds the stream's own events (the stream is under its cap): at
    // least the incidents the rebuild counts (it also knows the withdrawn ones).
    let alone = &projection["fold_alone"];
    assert_eq!(alone["events"], 3000, "{alone:#}");
    let known = alone["incidents"].as_u64().unwrap();
    let counted = projection["rebuild"]["incidents_counted"].as_u64().unwrap();
    assert!(known >= counted && known <= 3000 && counted > 2000, "{alone:#} {counted}");
    for part in ["decode_us_per_event", "fold_us_per_event", "encode_us_per_event"] {
        assert!(alone[part].as_f64().unwrap() > 0.0, "{alone:#}");
    }
    for trial in trials {
        assert!(trial["rebuild"]["events_per_s"].as_f64().unwrap() > 0.0, "{trial:#}");
        assert!(trial["rebuild"]["longest_stream_wait_seconds"].as_f64().is_some(), "{trial:#}");
        let (floor, rebuild) = (&trial["floor"], &trial["rebuild"]);
        assert_eq!(floor["last_sequence"], 3000, "{trial:#}");
        assert!(floor["longest_stream_wait_seconds"].as_f64().is_some(), "{trial:#}");
        assert_eq!(floor["counts_files"], 0, "{trial:#}");
        let rows = |r: &Value| r["state_rows"].as_u64().unwrap();
        assert!(rows(floor) >= rows(rebuild) && rows(floor) <= 3000, "{trial:#}");
        assert!(rows(rebuild) > 2000, "{trial:#}");
        let rate = |r: &Value| r["events_per_s"].as_f64().unwrap();
        let raw = trial["raw_replay"]["events_per_s"].as_f64().unwrap();
        assert!((trial["floor_ratio"].as_f64().unwrap() - rate(floor) / raw).abs() < 1e-12);
        let to_floor = rate(rebuild) / rate(floor);
        assert!((trial["ratio_to_floor"].as_f64().unwrap() - to_floor).abs() < 1e-12);
    }
    // Of two, the median is the faster (the upper middle).
    let fastest = |part: &str| {
        trials.iter().map(|t| t[part]["events_per_s"].as_f64().unwrap()).fold(0.0, f64::max)
    };
    let (rebuild, raw) = (&projection["rebuild"], &projection["raw_replay"]);
    assert_eq!(rebuild["events_per_s"].as_f64().unwrap(), fastest("rebuild"));
    assert_eq!(raw["events_per_s"].as_f64().unwrap(), fastest("raw_replay"));
    assert_eq!(projection["floor"]["events_per_s"].as_f64().unwrap(), fastest("floor"));
    assert_eq!(rebuild["last_sequence"], 3000);
    // The ratio is the median trial's own (a rebuild over the raw replay just before it), not
    // the median rebuild over the median raw replay, which may come from different trials.
    let ratio = projection["projection_ratio"].as_f64().unwrap();
    let ratios: Vec<f64> = trials
        .iter()
        .map(|t| {
            let own = t["ratio"].as_f64().unwrap();
            let pair = t["rebuild"]["events_per_s"].as_f64().unwrap()
                / t["raw_replay"]["events_per_s"].as_f64().unwrap();
            assert!((own - pair).abs() < 1e-12, "{t:#}");
            own
        })
        .collect();
    assert_eq!(ratio, ratios.iter().copied().fold(0.0, f64::max), "{projection:#}");
}

/// The ingest stage on a few requests: the HTTP ingest accepts every record, and each raw
/// baseline publishes the same number of events; the bracketed ratio is the HTTP rate over the
/// harmonic mean of the two raw publishes with the ingest's headers on either side of it; each
/// publish has an empty server of its own.
#[test]
fn the_ingest_stage_brackets_the_http_ingest_with_raw_publishes_of_its_messages() {
    let (text, report) = bench(&[
        ("--events", "1000"),
        ("--stages", "ingest"),
        ("--ingest-records", "3000"),
        ("--batch-sizes", "500"),
    ]);
    assert!(text.contains("before and after it (harmonic mean)"), "{text}");
    let runs = report["ingest"]["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "{report:#}");
    let run = &runs[0];
    assert_eq!(run["records"], 3000);
    let rate = |field: &str| run[field].as_f64().unwrap_or_else(|| panic!("{field}: {run:#}"));
    for field in [
        "http_events_per_s",
        "raw_events_per_s",
        "raw_expected_events_per_s",
        "raw_expected_after_events_per_s",
        "raw_after_events_per_s",
        "floor_events_per_s",
        "floor_after_events_per_s",
        "json_floor_us_per_record",
        "json_value_us_per_record",
        "prepare_us_per_record",
    ] {
        assert!(rate(field) > 0.0, "{field}: {run:#}");
    }
    assert!(text.contains("the ingest reading, validating and encoding"), "{text}");
    let health = &run["health_during_ingest"];
    let ms = |field: &str| health[field].as_f64().unwrap_or_else(|| panic!("{field}: {run:#}"));
    assert!(health["runs"].as_u64().unwrap() >= 1, "{run:#}");
    assert!(
        0.0 < ms("p50_ms") && ms("p50_ms") <= ms("p99_ms") && ms("p99_ms") <= ms("max_ms"),
        "{run:#}"
    );
    assert!(text.contains("GET /health during the HTTP ingest"), "{text}");
    // Each bracketed ratio: the HTTP ingest over the harmonic mean of the raw publishes just
    // before and just after it.
    let mean = |a: f64, b: f64| 2.0 / (1.0 / a + 1.0 / b);
    let check_bracketed = |ratio: &str, before: &str, after: &str| {
        let expected = rate("http_events_per_s") / mean(rate(before), rate(after));
        let bracketed = rate(ratio);
        assert!((bracketed - expected).abs() < 1e-12, "{ratio}: {bracketed} vs {expected}");
    };
    check_bracketed(
        "ratio_to_expected_bracketed",
        "raw_expected_events_per_s",
        "raw_expected_after_events_per_s",
    );
    assert!(text.contains("HTTP / the raw publish before and after it (harmonic mean)"), "{text}");
    check_bracketed("ratio_bracketed", "raw_events_per_s", "raw_after_events_per_s");
    check_bracketed("ratio_to_floor_bracketed", "floor_events_per_s", "floor_after_events_per_s");
    assert!(text.contains("floor ingest (HTTP, serde_json reading and writing back"), "{text}");
    // The floor's ratio is its two runs' harmonic mean over the plain raw publishes'.
    let floor = mean(rate("floor_events_per_s"), rate("floor_after_events_per_s"))
        / mean(rate("raw_events_per_s"), rate("raw_after_events_per_s"));
    assert!((rate("floor_ratio_bracketed") - floor).abs() < 1e-12, "{run:#}");
    // Every publish met an empty server: its stream held its own events and nothing more (on a
    // shared server the counts would grow 3000, 6000, ...). The HTTP ingest stores fewer than
    // it was sent, since a revision that reaches it after a later one is superseded, not stored.
    let messages: Vec<u64> = run["stream_messages"]
        .as_array()
        .expect("stream_messages")
        .iter()
        .map(|n| n.as_u64().expect("a count"))
        .collect();
    assert_eq!(messages.len(), 8, "{run:#}");
    for (phase, &n) in messages.iter().enumerate() {
        if phase == 4 {
            assert!((1..=3000).contains(&n), "the HTTP ingest's stream held {n}: {run:#}");
        } else {
            assert_eq!(n, 3000, "publish {phase}'s stream: {run:#}");
        }
    }
}

/// The query stage on a small projection: every count answer equal to DuckDB's over the same
/// Parquet files, and five rebuild switches in a row under the running service, each with its
/// first request, the requests answered from the previous version while the new one was netted,
/// and ten from the new one; the target is the slowest first request.
#[test]
fn the_query_stage_checks_every_answer_against_duckdb_and_times_five_switches() {
    let (text, report) =
        bench(&[("--events", "3000"), ("--stages", "projection,query"), ("--query-runs", "2")]);
    let query = &report["query"];
    // DuckDB is installed by scripts/setup.sh: a skipped baseline would hide every ratio.
    assert_eq!(query["duckdb"]["status"], "ran", "{query:#}");
    let queries = query["queries"].as_array().expect("queries");
    assert_eq!(queries.len(), 5, "{query:#}");
    for q in queries {
        assert_eq!(q["equal"], true, "an answer differs from DuckDB's: {q:#}");
        assert!(q["rows"].as_u64().unwrap() > 0, "{q:#}");
        assert!(q["p99_ratio_vs_duckdb"].as_f64().unwrap() > 0.0, "{q:#}");
    }

    let after = &query["after_switch"];
    let switches = after["switches"].as_array().expect("switches");
    assert_eq!(switches.len(), 5, "{after:#}");
    let ms = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {after:#}"));
    let firsts: Vec<f64> = switches.iter().map(|s| ms(&s["first_request_ms"])).collect();
    assert_eq!(ms(&after["first_request_ms"]), firsts.iter().copied().fold(0.0, f64::max));
    let mut switched_to = Vec::new();
    for switch in switches {
        // The first request is answered from the previous version exactly when requests were
        // timed during the netting, and is the first of them.
        let version = switch["first_request_version"].as_u64().unwrap();
        let during = &switch["during_netting"];
        let slowest_sent = &switch["slowest_during_sent_after_s"];
        if during.is_null() {
            assert!(slowest_sent.is_null(), "{switch:#}");
            switched_to.push(version);
        } else {
            assert!(during["runs"].as_u64().unwrap() >= 1, "{switch:#}");
            assert!(ms(&during["max_ms"]) >= ms(&switch["first_request_ms"]), "{switch:#}");
            // Sent between the switch and the new version's first answer.
            let sent = ms(slowest_sent);
            assert!(sent >= 0.0 && sent <= ms(&switch["new_version_served_after_s"]), "{switch:#}");
            switched_to.push(version + 1);
        }
        assert_eq!(switch["after_netting"]["runs"], 10, "{switch:#}");
        assert!(ms(&switch["new_version_served_after_s"]) >= 0.0, "{switch:#}");
    }
    // Each switch moved CURRENT one version on from the last.
    for pair in switched_to.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "{after:#}");
    }
    // The service's memory, read before it stopped: resident within its peak.
    let (rss, peak) = (ms(&query["service_rss_mib"]), ms(&query["service_peak_rss_mib"]));
    assert!(rss > 0.0 && rss <= peak, "{query:#}");
    let lazy = ms(&query["service_lazy_free_mib"]);
    assert!(lazy >= 0.0 && lazy <= rss, "{query:#}");
    assert!(text.contains("the query service after the switches"), "{text}");
    let target = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"].as_str().unwrap().starts_with("first count query after"))
        .unwrap_or_else(|| panic!("no switch target: {text}"));
    assert_eq!(ms(&target["value"]), ms(&after["first_request_ms"]));
}
