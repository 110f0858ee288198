//! The OpenAPI document against the running service: every documented path answers (none falls
//! through to the "no endpoint" fallback or a 405), and schemathesis, generating requests from the
//! document, finds no 5xx and no answer that breaks its schema.

use std::process::Command;

use crate::harness::{Env, record};
use reqwest::Method;

#[tokio::test]
async fn every_documented_operation_answers_and_schemathesis_finds_nothing() {
    let env = Env::new();
    let pn = env.add_agency("pn");
    let service = env.up().await;
    let records: Vec<_> = (0..50)
        .map(|i| record(&format!("O{i}"), 1, &format!("2025-{:02}-03", 1 + i % 12), "75", "0903"))
        .collect();
    let sequence = service.post_ndjson(&pn, &records).await.sequence();
    service.counts("by=year", sequence).await;

    let document = service.get_public("/openapi.json").await;
    assert_eq!(document.status, 200);
    assert_eq!(document.headers["content-type"], "application/json");
    let paths = document.body["paths"].as_object().unwrap();
    let example = |name: &str| match name {
        "survey" => "cvs",
        "wave" => "2024",
        "id" => "r1",
        "name" => "natinf",
        "kind" => "dataflow",
        "context" => "dataflow",
        "agency" => "OBSERVATORY",
        "version" => "1.0",
        "key" => "A.FR",
        "period" => "2025-01",
        "release" => "r1",
        "file" => "report.pdf",
        other => panic!("no example for {{{other}}}"),
    };
    for (template, item) in paths {
        let mut path = template.clone();
        while let Some(start) = path.find('{') {
            let end = path[start..].find('}').unwrap() + start;
            let value = example(&path[start + 1..end]);
            path.replace_range(start..=end, value);
        }
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let answer = service.call(method.clone(), &path).send().await;
            let fallback =
                answer.body["error"].as_str().is_some_and(|e| e.starts_with("no endpoint at"));
            assert!(
                !fallback && answer.status != 405,
                "{method} {path}: {} {}",
                answer.status,
                answer.text
            );
            assert!(
                answer.status < 500 || answer.status == 503,
                "{method} {path}: {}",
                answer.text
            );
        }
    }

    let output = Command::new("schemathesis")
        .args(["run", &format!("{}/openapi.json", service.base)])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--max-examples", "10", "--request-timeout", "60", "--seed", "2014"])
        .env("NO_COLOR", "1")
        // schemathesis keeps a cache of crashes in its working directory: not the repository's.
        .current_dir(env.data_dir())
        .output()
        .expect("schemathesis from scripts/setup.sh (source scripts/env.sh)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> =
        stdout.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
    println!("{}", summary.join("\n"));
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
}
