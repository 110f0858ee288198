#!/usr/bin/env bash
# Runs every test: unit tests of the pure crates, the R-reference checks of the survey
# statistics, and the end-to-end tests against a real nats-server and object store.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
# Two cores: build once, then run; the e2e tests start their own servers on free ports.
cargo test --workspace --no-run --locked
cargo test --workspace --locked -- --test-threads 2
