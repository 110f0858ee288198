#!/usr/bin/env python3
"""DuckDB side of `observatory bench`: the same count queries over the same Parquet files.

Usage: duckdb_queries.py INPUT.json  (written by the bench)

INPUT: {"files": [paths of the counts files the committed manifest names],
        "queries": [{"name", "by": [dims], "from": "YYYY-MM"|null, "to": ..., "filters": {dim: [values]}}],
        "runs": R, "warmup": W}

Counts files hold deltas (and compacted snapshots) per cell: every query SUMs them, as the
observatory's engine does. Each query is timed in-process, both straight over the Parquet files
and over an in-memory table loaded from them once. Prints one JSON object on stdout; when the
duckdb package is missing it prints {"skipped": "..."} instead.
"""

import json
import sys
import time

try:
    import duckdb
except ImportError as error:  # the bench reports the comparison as skipped
    print(json.dumps({"skipped": f"the Python duckdb package is not importable ({error}); "
                                 "scripts/setup.sh installs it into .tools/venv"}))
    sys.exit(0)


def quote(value):
    return "'" + str(value).replace("'", "''") + "'"


def where_clause(query):
    conditions = []
    if query.get("from"):
        conditions.append(f"month >= {quote(query['from'])}")
    if query.get("to"):
        conditions.append(f"month <= {quote(query['to'])}")
    for dim, values in sorted(query.get("filters", {}).items()):
        if dim == "iccs":
            # A code matches its whole subtree, as in the observatory's API.
            conditions.append("(" + " OR ".join(f"starts_with(iccs, {quote(v)})" for v in values) + ")")
        elif dim == "cyber":
            conditions.append("(" + " OR ".join(f"cyber = {'true' if v == 'true' else 'false'}" for v in values) + ")")
        elif dim == "year":
            conditions.append(f"year IN ({', '.join(str(int(v)) for v in values)})")
        else:
            conditions.append(f"{dim} IN ({', '.join(quote(v) for v in values)})")
    return (" WHERE " + " AND ".join(conditions)) if conditions else ""


def sql(query, source):
    by = query.get("by", [])
    where = where_clause(query)
    if not by:
        return f"SELECT COALESCE(SUM(count), 0)::BIGINT, COALESCE(SUM(loss_cents), 0)::BIGINT FROM {source}{where}"
    keys = ", ".join(by)
    return (f"SELECT {keys}, SUM(count)::BIGINT AS count, SUM(loss_cents)::BIGINT AS loss_cents "
            f"FROM {source}{where} GROUP BY {keys} HAVING SUM(count) <> 0 ORDER BY {keys}")


def text(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def timed(con, statement, runs, warmup):
    for _ in range(warmup):
        con.execute(statement).fetchall()
    times = []
    rows = None
    for _ in range(runs):
        started = time.perf_counter()
        rows = con.execute(statement).fetchall()
        times.append((time.perf_counter() - started) * 1000.0)
    return times, rows


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    con = duckdb.connect()
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    files = "[" + ", ".join(quote(p) for p in spec["files"]) + "]"
    # The files sit under year=YYYY/ directories but carry their own year column.
    parquet = f"read_parquet({files}, hive_partitioning = false)"
    started = time.perf_counter()
    con.execute(f"CREATE TABLE counts AS SELECT * FROM {parquet}")
    load_ms = (time.perf_counter() - started) * 1000.0
    out = {
        "duckdb_version": duckdb.__version__,
        "python_version": sys.version.split()[0],
        "threads": threads,
        "load_ms": load_ms,
        "queries": {},
    }
    for query in spec["queries"]:
        by = query.get("by", [])
        parquet_ms, rows = timed(con, sql(query, parquet), spec["runs"], spec["warmup"])
        memory_ms, memory_rows = timed(con, sql(query, "counts"), spec["runs"], spec["warmup"])
        if sorted(map(repr, rows)) != sorted(map(repr, memory_rows)):
            raise SystemExit(f"{query['name']}: DuckDB over Parquet and in memory disagree")
        out["queries"][query["name"]] = {
            "sql": sql(query, "<files>"),
            "parquet_ms": parquet_ms,
            "memory_ms": memory_ms,
            "rows": [[[text(v) for v in row[: len(by)]], int(row[len(by)]), int(row[len(by) + 1])] for row in rows],
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
