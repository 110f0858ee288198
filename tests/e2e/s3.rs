//! The same pipeline with projections in S3 (an S3-protocol server on loopback): create-only
//! manifests, restart and rebuild work through object_store's S3 client as on a directory.

use crate::harness::{Env, record};

#[tokio::test]
async fn projections_in_s3_commit_resume_and_rebuild() {
    let env = Env::with_s3();
    let token = env.add_agency("pn");
    let service = env.up().await;
    let records: Vec<_> = (0..50)
        .map(|i| {
            record(&format!("S{i}"), 1, "2024-05-01", if i % 2 == 0 { "75" } else { "13" }, "0903")
        })
        .collect();
    let seq = service.post_ndjson(&token, &records).await.sequence();
    let rows = service.counts("by=departement", seq).await;
    assert_eq!(rows.iter().map(|r| r["count"].as_i64().unwrap()).collect::<Vec<_>>(), vec![25, 25]);

    // Restart: the projector resumes from the manifest in S3, nothing is counted twice.
    service.stop();
    let service = env.up().await;
    let amend = service.post_ndjson(&token, &[record("S0", 2, "2024-05-01", "13", "0903")]).await;
    let seq = amend.sequence();
    let rows = service.counts("by=departement", seq).await;
    assert_eq!(rows.iter().map(|r| r["count"].as_i64().unwrap()).collect::<Vec<_>>(), vec![26, 24]);

    let output = env.rebuild();
    assert!(output.contains("v2"), "{output}");
    let after = service
        .get_on_version(&format!("/v1/incidents/counts?by=departement&min_sequence={seq}"), 2)
        .await;
    assert_eq!(after.body["rows"].as_array().unwrap(), &rows);
}
