"""How many Monte Carlo paths the loan truth (true PD of the label event) needs.

Runs the simulator once with `--reference-paths` (512) paths per open loan and month start (the
reference: its noise is negligible), keeps every path, and measures for K = 8 ... 256 how much
AUC against the realized label (this loan reaches 90+ DPD within 365 days, from the book at the
end of the simulated horizon) is lost by estimating the PD from K paths instead of all of them:
mean over disjoint groups of K paths. Also the cost of the loan truth per path. Prints a table,
writes benchmarks/results/risk_truth_paths.json. The default size takes about 3 minutes on 2 cores.

    uv run python benchmarks/bench_risk_truth_paths.py --parties 12000 --months 24
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table
from sklearn.metrics import roc_auc_score

from fieldbank.simulate import SimParams, engine, loan_truth
from fieldbank.simulate.params import US_PER_DAY

PATHS = (8, 16, 32, 64, 128, 256)
HORIZON_DAYS = 365


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=12_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reference-paths", type=int, default=512)
    parser.add_argument("--out", type=Path, default=here / "results" / "risk_truth_paths.json")
    args = parser.parse_args()
    assert args.reference_paths >= 2 * max(PATHS), "the reference needs at least two groups of the largest K"
    console = Console()
    kept: list[tuple[np.ndarray, int, np.ndarray]] = []  # (loans, month start us, paths x loans P(365 d))
    original = loan_truth.default_probabilities

    def keeping(p, pop, book, loans, t, month_start, state, rng):
        out = original(p, pop, book, loans, t, month_start, state, rng)
        kept.append((loans.copy(), int(month_start[t]), out[loan_truth.HORIZONS_DAYS.index(HORIZON_DAYS)]))
        return out

    params = SimParams(parties=args.parties, months=args.months, seed=args.seed, loan_pd_paths=args.reference_paths)
    loan_truth.default_probabilities = keeping  # the engine calls it through the module: every path is kept
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            report = engine.simulate(params, Path(tmp) / "raw", Path(tmp) / "truth", progress=False)
            seconds = time.perf_counter() - t0
            # realized label of every (open loan, month start): the book at the end of the horizon
            outcomes = pq.read_table(Path(tmp) / "truth" / "loan_outcomes.parquet")
            final_us = pc.fill_null(pc.cast(outcomes.column("defaulted_at"), pa.int64()), -1).to_numpy()
    finally:
        loan_truth.default_probabilities = original
    realized, paths = [], []
    for (loans, d_us, out) in kept:
        realized.append((final_us[loans] >= d_us) & (final_us[loans] < d_us + HORIZON_DAYS * US_PER_DAY))
        paths.append(out)
    y = np.concatenate(realized).astype(np.int64)
    hit = np.concatenate(paths, axis=1)  # reference paths x rows: P(default in 365 d) on each path
    reference_auc = float(roc_auc_score(y, hit.mean(axis=0)))
    rows = []
    for k in PATHS:
        groups = args.reference_paths // k
        aucs = [float(roc_auc_score(y, hit[g * k:(g + 1) * k].mean(axis=0))) for g in range(min(groups, 16))]
        rows.append({"paths": k, "auc_mean": float(np.mean(aucs)), "auc_sd": float(np.std(aucs)),
                     "auc_loss_vs_reference": reference_auc - float(np.mean(aucs)), "groups": len(aucs)})
    out = {
        "benchmark": "risk_truth_paths",
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "parties": args.parties, "months": args.months, "seed": args.seed, "horizon_days": HORIZON_DAYS,
        "rows": int(len(y)), "defaults": int(y.sum()),
        "reference_paths": args.reference_paths, "reference_auc": reference_auc, "by_paths": rows,
        "simulate_seconds_with_reference": seconds,
        "loan_truth_seconds_with_reference": report.seconds_by_phase.get("loan_true_pd"),
    }
    table = Table(title=f"loan truth: AUC lost to Monte Carlo noise ({len(y):,} loan-months, {int(y.sum()):,} defaults; "
                        f"reference {args.reference_paths} paths: AUC {reference_auc:.4f})")
    for col in ("paths", "AUC (mean of groups)", "sd", "loss vs reference"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["paths"]), f"{r['auc_mean']:.4f}", f"{r['auc_sd']:.4f}", f"{r['auc_loss_vs_reference']:+.4f}")
    console.print(table)
    console.print(f"loan truth with {args.reference_paths} paths: {out['loan_truth_seconds_with_reference']:.1f} s "
                  f"of {seconds:.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
