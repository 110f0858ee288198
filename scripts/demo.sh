#!/usr/bin/env bash
# One command: sets everything up, builds the observatory, brings it up (with its own
# nats-server), pushes the demo feed through the HTTP API, compares the ground truth with
# the query's answer, and keeps serving until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
# The whole workspace, so features unify as in the tests and Polars is built once.
cargo build --release --locked --workspace
bin="${CARGO_TARGET_DIR:-target}/release/observatory"
data="${OBSERVATORY_DATA_DIR:-./data}"
http="${OBSERVATORY_HTTP:-127.0.0.1:8080}"
mkdir -p "$data"
"$bin" --data-dir "$data" --http "$http" up &
up_pid=$!
trap 'kill $up_pid 2>/dev/null; wait $up_pid 2>/dev/null' EXIT INT TERM
"$bin" --data-dir "$data" demo --url "http://$http"
echo
echo "The observatory is up at http://$http (Ctrl-C to stop). For example:"
echo "  curl 'http://$http/v1/incidents/counts?by=year,iccs&cyber=true&unit=offence'"
echo "  curl 'http://$http/v1/incidents/counts?by=month,unit&departement=75,92&from=2024-01&to=2024-12&format=csv'"
wait $up_pid
