"""Ingest throughput of a payments Parquet file, against DuckDB's own COPY of the same file.

    uv run --frozen python benchmarks/bench_ingest.py --rows 10000000

Generates (seeded, numpy + pyarrow) a valid payments file and the parties it references,
then measures in the same run:
  - baseline: DuckDB `COPY (SELECT * FROM read_parquet(f)) TO 'x.parquet' (FORMAT parquet)`,
  - ingest: `fieldbank.lake.ingest.ingest` of the file into a lake that holds the parties
    (checksum, every contract rule, key uniqueness, references, partitioned write, commit),
  - re-ingest with force=True: every row is already in the lake (the dedupe path).
Prints a table and writes benchmarks/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from fieldbank import contract
from fieldbank.config import load_settings
from fieldbank.lake.ingest import DEFAULT_MEMORY_LIMIT, ingest

RESULTS = Path(__file__).parent / "results" / "ingest.json"
CHUNK_ROWS = 1_000_000  # generate and write in chunks so generation memory stays bounded
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
SPAN_US = 365 * 24 * 3600 * 1_000_000


def ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pa.array(numbers).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), digits, "")


def make_parties(n: int) -> pa.Table:
    rng = np.random.default_rng(1)
    kinds = np.where(rng.random(n) < 0.8, "household", "business")
    sectors = np.where(
        kinds == "household",
        rng.choice(contract.HOUSEHOLD_SECTORS, n),
        rng.choice(contract.BUSINESS_SECTORS, n),
    )
    created = START.timestamp() * 1e6 - rng.integers(0, SPAN_US, n)
    cols = {
        "party_id": ids("p", np.arange(n), 8),
        "kind": pa.array(kinds),
        "region_id": ids("r", rng.integers(0, 50, n), 3),
        "sector": pa.array(sectors),
        "created_at": pa.array(created.astype("int64"), pa.int64()).cast(contract.TIMESTAMP),
        "birth_year": pa.array(rng.integers(1940, 2005, n).astype("int32")),
        "declared_income_minor": pa.array(rng.integers(0, 10**8, n)),
        "declared_assets_minor": pa.array(rng.integers(0, 10**9, n)),
        "phone_hash": ids("h", rng.integers(0, 10**9, n), 9),
        "device_hash": pa.nulls(n, pa.string()),
    }
    return pa.table(cols, schema=contract.PARTIES.schema)


def write_payments(path: Path, n_rows: int, n_parties: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    channels = pa.array(contract.PAYMENT_CHANNELS)
    kinds = pa.array(contract.PAYMENT_KINDS)
    categories = pa.array(contract.CATEGORIES)
    with pq.ParquetWriter(path, contract.PAYMENTS.schema) as writer:
        for start in range(0, n_rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, n_rows - start)
            category_idx = rng.integers(0, len(contract.CATEGORIES), n)
            category = pc.take(categories, pa.array(category_idx))
            category = pc.if_else(
                pa.array(rng.random(n) < 0.2), pa.scalar(None, pa.string()), category
            )
            ts_us = int(START.timestamp() * 1e6) + np.sort(rng.integers(0, SPAN_US, n))
            chunk = pa.table(
                {
                    "txn_id": ids("t", np.arange(start, start + n), 10),
                    "ts": pa.array(ts_us, pa.int64()).cast(contract.TIMESTAMP),
                    "payer_id": ids("p", rng.integers(0, n_parties, n), 8),
                    "payee_id": ids("p", rng.integers(0, n_parties, n), 8),
                    "amount_minor": pa.array(
                        np.maximum(1, rng.lognormal(7, 1.5, n)).astype("int64")
                    ),
                    "channel": pc.take(channels, pa.array(rng.integers(0, len(channels), n))),
                    "kind": pc.take(kinds, pa.array(rng.integers(0, len(kinds), n))),
                    "category": category,
                },
                schema=contract.PAYMENTS.schema,
            )
            writer.write_table(chunk)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="payments rows")
    parser.add_argument(
        "--parties", type=int, default=0, help="parties (default rows/20, at least 1000)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument(
        "--no-json", action="store_true", help="do not write benchmarks/results/ingest.json"
    )
    args = parser.parse_args()
    assert 1 <= args.rows <= 1_000_000_000
    n_parties = args.parties or max(1000, args.rows // 20)
    console = Console()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_ingest_"))
    raw = work / "raw"
    (raw / "parties").mkdir(parents=True, exist_ok=True)
    (raw / "payments").mkdir(parents=True, exist_ok=True)
    payments_file = raw / "payments" / "part-00000.parquet"
    t0 = time.perf_counter()
    pq.write_table(make_parties(n_parties), raw / "parties" / "part-00000.parquet")
    write_payments(payments_file, args.rows, n_parties, args.seed)
    gen_s = time.perf_counter() - t0
    file_mb = payments_file.stat().st_size / 2**20
    console.print(
        f"generated {args.rows:,} payments ({file_mb:,.0f} MiB) and {n_parties:,} parties in {gen_s:.1f} s"
    )

    # baseline: DuckDB reading and rewriting the same file
    con = duckdb.connect(
        config={"memory_limit": args.memory_limit, "temp_directory": str(work / "duck_tmp")}
    )
    t0 = time.perf_counter()
    con.execute(
        f"COPY (SELECT * FROM read_parquet('{payments_file}')) TO '{work / 'copy.parquet'}' (FORMAT parquet)"
    )
    baseline_s = time.perf_counter() - t0
    con.close()

    settings = load_settings(data_dir=work / "var")
    ingest(raw, settings, table="parties")
    t0 = time.perf_counter()
    first = ingest(raw, settings, table="payments", memory_limit=args.memory_limit)
    ingest_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = ingest(raw, settings, table="payments", memory_limit=args.memory_limit, force=True)
    reingest_s = time.perf_counter() - t0
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    assert first.rows_landed == args.rows, first.summary()
    assert again.rows_skipped == args.rows and again.rows_landed == 0, again.summary()

    result = {
        "benchmark": "ingest",
        "rows": args.rows,
        "parties": n_parties,
        "file_mib": round(file_mb, 1),
        "baseline_duckdb_copy_s": round(baseline_s, 3),
        "baseline_rows_per_s": round(args.rows / baseline_s),
        "ingest_s": round(ingest_s, 3),
        "ingest_rows_per_s": round(args.rows / ingest_s),
        "ingest_vs_baseline_time_ratio": round(ingest_s / baseline_s, 2),
        "ingest_seconds_by_step": {
            k: round(v, 3) for k, v in first.table("payments").seconds_by_step.items()
        },
        "reingest_all_duplicates_s": round(reingest_s, 3),
        "reingest_rows_per_s": round(args.rows / reingest_s),
        "peak_rss_mib": round(peak_rss_mb),
        "memory_limit": args.memory_limit,
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),  # the machine is shared: context
        "duckdb": duckdb.__version__,
        "python": platform.python_version(),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    table = Table(title=f"ingest of {args.rows:,} payments ({file_mb:,.0f} MiB Parquet)")
    for col in ("run", "seconds", "rows/s", "x baseline time"):
        table.add_column(col, justify="left" if col == "run" else "right")
    table.add_row(
        "DuckDB COPY read_parquet -> parquet (baseline)",
        f"{baseline_s:.2f}",
        f"{args.rows / baseline_s:,.0f}",
        "1.00",
    )
    table.add_row(
        "fieldbank ingest (all rules, partitioned, atomic)",
        f"{ingest_s:.2f}",
        f"{args.rows / ingest_s:,.0f}",
        f"{ingest_s / baseline_s:.2f}",
    )
    table.add_row(
        "re-ingest, --force (every row already in lake)",
        f"{reingest_s:.2f}",
        f"{args.rows / reingest_s:,.0f}",
        f"{reingest_s / baseline_s:.2f}",
    )
    console.print(table)
    steps = first.table("payments").seconds_by_step
    console.print("ingest steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()))
    console.print(f"peak RSS {peak_rss_mb:,.0f} MiB (DuckDB memory_limit {args.memory_limit})")
    if not args.no_json:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {RESULTS}")
    if args.workdir is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
