#!/usr/bin/env bash
# One command: sets everything up, builds the observatory, brings it up (with its own
# nats-server), pushes the demo feed through the HTTP API, compares the ground truth with
# the query's answer, and keeps serving until Ctrl-C.
#
# The service's logs go to <data-dir>/logs/observatory.log (plain text); this terminal shows
# only the demo's own output. OBSERVATORY_BIN=path/to/observatory skips the release build and
# runs that binary instead (e.g. target/debug/observatory).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
if [ -n "${OBSERVATORY_BIN:-}" ]; then
  bin="$OBSERVATORY_BIN"
else
  # The whole workspace, so features unify as in the tests and Polars is built once.
  cargo build --release --locked --workspace
  bin="${CARGO_TARGET_DIR:-target}/release/observatory"
fi
data="${OBSERVATORY_DATA_DIR:-./data}"
http="${OBSERVATORY_HTTP:-127.0.0.1:8080}"
log="$data/logs/observatory.log"
mkdir -p "$data/logs"
"$bin" up --data-dir "$data" --http "$http" >"$log" 2>&1 &
up_pid=$!
trap 'kill $up_pid 2>/dev/null; wait $up_pid 2>/dev/null' EXIT INT TERM
echo "observatory up is starting on http://$http; its log: $log"
echo
if ! "$bin" demo --data-dir "$data" --url "http://$http"; then
  echo >&2
  echo "The demo failed. The last lines of the service's log ($log):" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
echo
echo "The observatory is up at http://$http (Ctrl-C to stop); its log: $log. For example:"
echo "  curl 'http://$http/v1/incidents/counts?by=year,iccs&cyber=true&unit=offence'"
echo "  curl 'http://$http/v1/incidents/counts?by=month,unit&departement=75,92&from=2024-01&to=2024-12&format=csv'"
wait $up_pid
