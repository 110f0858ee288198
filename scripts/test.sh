#!/usr/bin/env bash
# Runs every check: the hygiene gate (formatting, lints, the tidy rules), unit tests of the pure
# crates, the R-reference checks of the survey statistics, and the end-to-end tests against a
# real nats-server and object store.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
# The hygiene gate first: it is the cheapest to fail on.
echo "test: cargo fmt --check" >&2
cargo fmt --all --check
echo "test: cargo clippy (every target, warnings are errors)" >&2
# OBSERVATORY_CLIPPY_TARGET_DIR (set by .ci/run) keeps clippy's artefacts apart and deletes them
# afterwards, for machines short of disk.
if [ -n "${OBSERVATORY_CLIPPY_TARGET_DIR:-}" ]; then
  CARGO_TARGET_DIR="$OBSERVATORY_CLIPPY_TARGET_DIR" cargo clippy --workspace --all-targets --locked -- -D warnings
  rm -rf "$OBSERVATORY_CLIPPY_TARGET_DIR"
else
  cargo clippy --workspace --all-targets --locked -- -D warnings
fi
# Two cores: build once, then run; the e2e tests start their own servers on free ports.
cargo test --workspace --no-run --locked
cargo test --workspace --locked -- --test-threads 2
