//! `observatory bench` itself, on a small stream: the figures BENCHMARKS.md records come from
//! this command, so its projection stage must run, and report what it measured, on every change.

use serde_json::Value;

use crate::harness::Env;

/// Two trials of the projection stage: each a raw replay and a rebuild of the whole stream
/// (a new version each), both reported, the headline figures being their medians.
#[test]
fn the_projection_stage_reports_every_trial_and_their_medians() {
    let env = Env::new();
    let work = env.dir.path().join("bench");
    let json = env.dir.path().join("bench.json");
    std::fs::create_dir_all(&work).unwrap();
    let text = env
        .observatory("bench")
        .flag("--events", "3000")
        .flag("--stages", "projection")
        .flag("--projection-runs", "2")
        .flag("--work-dir", work.to_str().unwrap())
        .flag("--json", json.to_str().unwrap())
        .run();
    assert!(text.contains("medians of 2 trials"), "{text}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let projection = &report["projection"];
    let trials = projection["trials"].as_array().expect("trials");
    assert_eq!(trials.len(), 2, "{projection:#}");
    for trial in trials {
        assert!(trial["rebuild"]["events_per_s"].as_f64().unwrap() > 0.0, "{trial:#}");
        assert!(trial["rebuild"]["longest_stream_wait_seconds"].as_f64().is_some(), "{trial:#}");
    }
    // Of two, the median is the faster (the upper middle).
    let fastest = |part: &str| {
        trials.iter().map(|t| t[part]["events_per_s"].as_f64().unwrap()).fold(0.0, f64::max)
    };
    let (rebuild, raw) = (&projection["rebuild"], &projection["raw_replay"]);
    assert_eq!(rebuild["events_per_s"].as_f64().unwrap(), fastest("rebuild"));
    assert_eq!(raw["events_per_s"].as_f64().unwrap(), fastest("raw_replay"));
    assert_eq!(rebuild["last_sequence"], 3000);
    let ratio = projection["projection_ratio"].as_f64().unwrap();
    let expected =
        rebuild["events_per_s"].as_f64().unwrap() / raw["events_per_s"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-12, "{ratio} vs {expected}");
}
