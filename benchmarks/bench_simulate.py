"""Benchmark `fieldbank simulate`: wall time, rows/s per table and peak memory.

The simulator runs in a subprocess (so its peak RSS is measured alone, by polling with
psutil). The baseline, measured in the same run on the same machine, is the pure I/O
floor: pyarrow writing already-generated payments rows to Parquet with the same writer
settings, extrapolated to the run's payment count. The ratio says how far generation is
from just writing the bytes.

    uv run --frozen python benchmarks/bench_simulate.py --parties 20000 --months 12
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results" / "simulate.json"
BASELINE_MAX_ROWS = 10_000_000  # rows of payments loaded for the I/O floor (bounds memory)
POLL_SECONDS = 0.2


def run_simulator(parties: int, months: int, seed: int, data_dir: Path) -> tuple[float, float, str]:
    """Run the simulator in a subprocess; return (wall seconds, peak RSS MiB, its output)."""
    cmd = [sys.executable, "-m", "fieldbank.simulate", "--parties", str(parties), "--months", str(months),
           "--seed", str(seed), "--data-dir", str(data_dir), "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(POLL_SECONDS)
    wall = time.perf_counter() - t0
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"simulator failed ({proc.returncode}):\n{output}")
    return wall, peak / 2**20, output


def io_floor_seconds(payments_dir: Path, total_rows: int) -> tuple[float, float]:
    """(rows/s, seconds for total_rows) of pyarrow writing payments rows to Parquet."""
    files = sorted(payments_dir.glob("part-*.parquet"))
    table = pq.ParquetFile(files[0]).read()
    table = table.slice(0, min(table.num_rows, BASELINE_MAX_ROWS))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with pq.ParquetWriter(Path(tmp) / "floor.parquet", table.schema, compression="snappy") as w:
            for batch in table.to_batches(max_chunksize=1_000_000):
                w.write_batch(batch, row_group_size=1_000_000)
        seconds = time.perf_counter() - t0
    rows_per_s = table.num_rows / seconds
    return rows_per_s, total_rows / rows_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parties", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None, help="where to simulate (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="free text stored with the result (e.g. 'extrapolated')")
    args = parser.parse_args()
    console = Console()

    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        console.print(f"simulating {args.parties:,} parties x {args.months} months ...")
        wall, peak_mib, output = run_simulator(args.parties, args.months, args.seed, data_dir)
        summary = json.loads((data_dir / "truth" / "summary.json").read_text())
        rows = summary["rows"]
        floor_rows_per_s, floor_seconds = io_floor_seconds(data_dir / "raw" / "payments", rows["payments"])

    result = {
        "benchmark": "simulate",
        "parties": args.parties,
        "months": args.months,
        "seed": args.seed,
        "wall_seconds": round(wall, 2),
        "simulator_seconds": summary["seconds"],
        "peak_rss_mib": round(peak_mib, 1),
        "rows": rows,
        "rows_per_second": {name: round(n / wall) for name, n in rows.items()},
        "total_rows_per_second": round(sum(rows.values()) / wall),
        "baseline": {
            "what": "pyarrow writing the same number of payments rows to Parquet (snappy), already generated",
            "rows_per_second": round(floor_rows_per_s),
            "seconds_for_all_payments": round(floor_seconds, 2),
        },
        "ratio_wall_to_io_floor": round(wall / floor_seconds, 2),
        "realism": summary["realism"],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "target": "1,000,000 parties x 12 months in <= 900 s with peak RSS <= 8192 MiB on 2 cores",
        "note": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    table = Table(title=f"fieldbank simulate: {args.parties:,} parties x {args.months} months")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("wall time", f"{wall:,.1f} s")
    table.add_row("peak memory (RSS)", f"{peak_mib:,.0f} MiB")
    for name, n in rows.items():
        table.add_row(f"{name} rows", f"{n:,} ({n / wall:,.0f}/s)")
    table.add_row("I/O floor: pyarrow writes payments", f"{floor_rows_per_s:,.0f} rows/s = {floor_seconds:,.1f} s")
    table.add_row("ratio wall / I/O floor", f"{wall / floor_seconds:,.2f}x")
    console.print(table)
    console.print(f"[green]benchmark done[/green]: {args.parties:,} x {args.months} in {wall:,.1f} s, "
                  f"peak {peak_mib:,.0f} MiB; wrote {args.out}")


if __name__ == "__main__":
    main()
