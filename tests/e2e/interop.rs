//! Interoperability: the clients statisticians use (sdmx1, pysdmx, the official SDMX-JSON
//! schema; see `tests/interop/clients.py`) read a running observatory, public and exact, and
//! find the numbers of the JSON answer.

use std::process::Command;

use crate::harness::{Env, record};

#[tokio::test]
async fn the_clients_of_each_ecosystem_read_the_same_numbers() {
    let env = Env::new();
    let pn = env.add_agency("pn");
    let service = env.up().await;
    let places = ["75", "92", "13", "69", "2A", "971", "01"];
    let records: Vec<_> = (0..200usize)
        .map(|i| {
            let day = format!("{}-{:02}-{:02}", 2024 + i % 2, 1 + (i * 5) % 12, 1 + i % 27);
            record(&format!("I{i}"), 1, &day, places[i % places.len()], ["0903", "0701"][i % 2])
        })
        .collect();
    let sequence = service.post_ndjson(&pn, &records).await.sequence();
    service.counts("by=year", sequence).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop/clients.py");
    for token in [None, Some(env.researcher())] {
        let mut command = Command::new("python3");
        command.arg(script).arg(&service.base);
        if let Some(token) = token {
            command.arg(token);
        }
        let output =
            command.output().expect("python3 from scripts/setup.sh (source scripts/env.sh)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        println!("{}:\n{stdout}", if token.is_some() { "researcher" } else { "public" });
        assert!(output.status.success(), "{stdout}\n{stderr}");
    }
}
