"""The latest portrait's supply chain job at one date: the cached SQL (PageRank edges query,
PageRank in numpy, the family's query) against raw_invoices.py (numpy from the Parquet
files), in the same process, median of N runs: process CPU seconds (all threads: DuckDB's
too) and wall seconds. Prints a table and writes JSON.

    uv run --frozen python benchmarks/bench_supply_chain.py LAKE AS_OF [--runs 5] [--json out.json]

LAKE must hold the compiled SQL templates (`_portrait_state/sql/*.json`, made by a
`latest_portrait` run on it); it is only read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from fieldbank.portrait import connect, load_inputs
from fieldbank.portrait.engine import duckdb_execute_arrow
from fieldbank.portrait.families import supply_chain
from fieldbank.portrait.graph import pagerank_arrow
from fieldbank.portrait.pipeline import PAGERANK_TABLE, raw_supply_chain_rows
from fieldbank.portrait.sqlcache import render


def timed(job: Callable[[], pa.Table], runs: int) -> dict[str, float]:
    cpu, wall, rows = [], [], 0
    for _ in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        rows = job().num_rows
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"cpu_s": statistics.median(cpu), "wall_s": statistics.median(wall), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("lake", type=Path)
    ap.add_argument("as_of", type=dt.date.fromisoformat)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    templates = json.loads(next((args.lake / "_portrait_state" / "sql").glob("*.json")).read_text())
    edges_sql = render(templates["pagerank_edges"], args.as_of)
    family_sql = render(templates[supply_chain.__name__], args.as_of)
    con = connect("duckdb")
    inp = load_inputs(con, args.lake, use_rollups=False, named_views=True)  # the lake views; no rollup update
    raw = con.con  # noqa: SLF001

    def sql_job() -> pa.Table:  # pipeline._pagerank_job's fallback
        raw.register(PAGERANK_TABLE, pagerank_arrow(duckdb_execute_arrow(raw, edges_sql)))
        return duckdb_execute_arrow(raw, family_sql)

    def numpy_job() -> pa.Table:
        table = raw_supply_chain_rows(inp, args.as_of)
        assert table is not None
        return table

    sql_job(), numpy_job()  # warm: the files in the page cache, imports
    results = {"sql": timed(sql_job, args.runs), "numpy": timed(numpy_job, args.runs)}  # interleaving not needed
    print(f"supply chain job, {args.lake} as_of {args.as_of}, median of {args.runs}")
    print(f"{'path':8s} {'cpu_s':>8s} {'wall_s':>8s} {'rows':>8s}")
    for name, r in results.items():
        print(f"{name:8s} {r['cpu_s']:8.4f} {r['wall_s']:8.4f} {r['rows']:8d}")
    print(f"speed-up: cpu {results['sql']['cpu_s'] / results['numpy']['cpu_s']:.1f}x, "
          f"wall {results['sql']['wall_s'] / results['numpy']['wall_s']:.1f}x")
    if args.json is not None:
        args.json.write_text(json.dumps({"lake": str(args.lake), "as_of": args.as_of.isoformat(), "runs": args.runs,
                                         **results}, indent=2))


if __name__ == "__main__":
    main()
