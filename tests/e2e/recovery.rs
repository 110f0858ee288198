//! Exactly-once under restarts, crashes and rebuilds: the committed manifest is the
//! checkpoint, so counts stay exact whatever happens to the projector process.

use std::collections::HashMap;
use std::time::Duration;

use observatory_query::{CountsEngine, CountsRequest};
use observatory_store::{Projection, Store};
use serde_json::{Value, json};

use crate::harness::{Env, record, terminate, wait_until};

/// A deterministic generator of feed batches with amendments, withdrawals and resends,
/// plus the ground truth of what must be counted.
struct Feed {
    state: u64,
    next_id: usize,
    /// id → (revision, Some(departement) while counted)
    truth: HashMap<String, (u32, Option<String>)>,
}

const DEPS: [&str; 6] = ["75", "92", "13", "2A", "971", "59"];

impl Feed {
    fn new(seed: u64) -> Feed {
        Feed {
            state: seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407),
            next_id: 0,
            truth: HashMap::new(),
        }
    }

    fn next(&mut self, below: u64) -> u64 {
        self.state = self.state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.state >> 33) % below
    }

    fn batch(&mut self, size: usize) -> Vec<Value> {
        let mut records = Vec::with_capacity(size);
        for _ in 0..size {
            let roll = self.next(100);
            let existing =
                (self.next_id > 0).then(|| format!("I{}", self.next(self.next_id as u64)));
            match (roll, existing) {
                (0..=9, Some(id)) => {
                    let (revision, _) = self.truth[&id];
                    let dep = DEPS[self.next(DEPS.len() as u64) as usize];
                    records.push(record(&id, revision + 1, "2024-05-01", dep, "0903"));
                    self.truth.insert(id, (revision + 1, Some(dep.to_owned())));
                }
                (10..=13, Some(id)) => {
                    let (revision, _) = self.truth[&id];
                    records.push(json!({"agency_incident_id": id, "revision": revision + 1, "withdrawn": true}));
                    self.truth.insert(id, (revision + 1, None));
                }
                (14..=18, Some(id)) => {
                    // A resend of revision 1: a duplicate or stale, never counted again.
                    records.push(record(&id, 1, "2024-01-01", "01", "0701"));
                }
                _ => {
                    let id = format!("I{}", self.next_id);
                    self.next_id += 1;
                    let dep = DEPS[self.next(DEPS.len() as u64) as usize];
                    records.push(record(&id, 1, "2024-03-01", dep, "0701"));
                    self.truth.insert(id, (1, Some(dep.to_owned())));
                }
            }
        }
        records
    }

    fn expected_by_departement(&self) -> Vec<(String, i64)> {
        let mut counts: HashMap<String, i64> = HashMap::new();
        for (_, dep) in self.truth.values() {
            if let Some(dep) = dep {
                *counts.entry(dep.clone()).or_default() += 1;
            }
        }
        let mut rows: Vec<(String, i64)> = counts.into_iter().collect();
        rows.sort();
        rows
    }
}

fn projection(env: &Env) -> Projection {
    Projection::new(
        Store::open(env.store().to_str().unwrap()).unwrap(),
        observatory_store::ProjectionId::Incidents,
    )
}

async fn committed(projection: &Projection) -> u64 {
    projection.serving_manifest().await.ok().flatten().map_or(0, |m| m.last_sequence)
}

/// Counts by département straight from the committed store, as the query reads them.
async fn store_counts(projection: &Projection) -> Vec<(String, i64)> {
    let engine = CountsEngine::new(projection.clone());
    let request = CountsRequest::parse(&[("by".into(), "departement".into())]).unwrap();
    let answer = engine.counts(&request, Duration::ZERO).await.unwrap();
    let rows = observatory_query::frame_rows(&answer.frame);
    rows.iter()
        .map(|r| (r["departement"].as_str().unwrap().to_owned(), r["count"].as_i64().unwrap()))
        .collect()
}

#[tokio::test]
async fn projector_resumes_from_its_manifest_after_a_restart() {
    let env = Env::new();
    let token = env.add_agency("pn");
    let ingest = env.observatory("ingest").start().await;
    let projection = projection(&env);
    let mut feed = Feed::new(7);

    let mut projector = env.spawn_projector();
    let seq = ingest.post_ndjson(&token, &feed.batch(500)).await.sequence();
    wait_until("first batch committed", Duration::from_secs(30), || async {
        committed(&projection).await >= seq
    })
    .await;
    terminate(&mut projector);
    let first_manifest = projection.serving_manifest().await.unwrap().unwrap();

    // Written while no projector runs; picked up from the manifest's sequence + 1.
    let seq = ingest.post_ndjson(&token, &feed.batch(500)).await.sequence();
    let mut projector = env.spawn_projector();
    wait_until("second batch committed", Duration::from_secs(30), || async {
        committed(&projection).await >= seq
    })
    .await;
    terminate(&mut projector);
    let manifest = projection.serving_manifest().await.unwrap().unwrap();
    assert!(manifest.last_sequence > first_manifest.last_sequence);
    assert_eq!(manifest.version, first_manifest.version);
    assert_eq!(store_counts(&projection).await, feed.expected_by_departement());
    let counted: i64 = feed.expected_by_departement().iter().map(|(_, c)| c).sum();
    assert_eq!(manifest.stats["incidents_counted"], counted as u64);
}

#[tokio::test]
async fn projector_killed_with_sigkill_at_random_points_keeps_counts_exact() {
    let env = Env::new();
    let token = env.add_agency("pn");
    let ingest = env.observatory("ingest").start().await;
    let projection = projection(&env);
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64;
    eprintln!("seed {seed}");
    let mut feed = Feed::new(seed);
    let mut chooser = Feed::new(seed ^ 0xdead_beef);

    let mut projector = env.spawn_projector();
    let mut kills = 0;
    let mut last = 0;
    for _ in 0..10 {
        let before = committed(&projection).await;
        last = ingest.post_ndjson(&token, &feed.batch(3_000)).await.sequence();
        // Kill once the projector has got somewhere into this batch: a random point.
        let target = before + 1 + chooser.next(last.saturating_sub(before).max(1));
        wait_until("projector progress", Duration::from_secs(60), || async {
            committed(&projection).await >= target.min(last)
        })
        .await;
        projector.kill().expect("SIGKILL");
        projector.wait().expect("reaped");
        kills += 1;
        projector = env.spawn_projector();
    }
    wait_until("everything committed", Duration::from_secs(60), || async {
        committed(&projection).await >= last
    })
    .await;
    terminate(&mut projector);
    assert_eq!(kills, 10);
    assert_eq!(store_counts(&projection).await, feed.expected_by_departement(), "seed {seed}");
    let counted: i64 = feed.expected_by_departement().iter().map(|(_, c)| c).sum();
    let manifest = projection.serving_manifest().await.unwrap().unwrap();
    assert_eq!(
        manifest.stats["incidents_counted"], counted as u64,
        "state table agrees, seed {seed}"
    );

    // A rebuild from sequence 1 gives the same answer.
    env.rebuild();
    assert_eq!(projection.current_version().await.unwrap(), Some(2));
    assert_eq!(
        store_counts(&projection).await,
        feed.expected_by_departement(),
        "rebuild, seed {seed}"
    );
}

#[tokio::test]
async fn rebuild_equals_the_incremental_projection_and_switches_atomically() {
    let env = Env::new();
    let token = env.add_agency("pn");
    let service = env.up().await;
    let mut feed = Feed::new(42);
    let mut last = 0;
    for _ in 0..4 {
        last = service.post_ndjson(&token, &feed.batch(800)).await.sequence();
    }
    let query = "by=month,departement,iccs,cyber,victim_type,channel,source";
    let incremental = service.counts(query, last).await;
    let before = service.get(&format!("/v1/incidents/counts?{query}")).await;
    assert_eq!(before.body["as_of"]["version"], 1);

    let output = env.rebuild();
    assert!(output.contains("v2"), "{output}");
    let after = service
        .get_on_version(&format!("/v1/incidents/counts?{query}&min_sequence={last}"), 2)
        .await;
    assert_eq!(after.body["rows"].as_array().unwrap(), &incremental);

    // The serving projector follows the switch and keeps projecting into v2.
    let more = service.post_ndjson(&token, &feed.batch(100)).await.sequence();
    let rows = service.counts("by=departement", more).await;
    let got: Vec<(String, i64)> = rows
        .iter()
        .map(|r| (r["departement"].as_str().unwrap().into(), r["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(got, feed.expected_by_departement());
    let answer = service.get(&format!("/v1/incidents/counts?min_sequence={more}")).await;
    assert_eq!(answer.body["as_of"]["version"], 2);
}
