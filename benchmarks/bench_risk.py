"""Portrait-mode credit models on a simulated economy: uplift, calibration and speed.

Simulates (or reuses) an economy, trains exactly what `fieldbank train --as-of ...` trains,
and measures: out-of-time AUC of the portrait champion vs the traditional baseline vs the
simulator's true-PD ceiling on the same rows, ECE, training time, batch scoring rows/s, and
single-row latency p50/p99 of PD + points + 4 reason codes (the decision service's step).
Prints a table, writes benchmarks/results/risk.json.

    uv run python benchmarks/bench_risk.py --parties 3000 --months 18       # quick
    uv run python benchmarks/bench_risk.py --parties 30000 --months 36      # the committed run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fieldbank.config import load_settings
from fieldbank.risk.dataset import monthly_dates

LATENCY_CALLS = 1000


def as_of_plan(start: dt.date, months: int, horizon_days: int) -> list[dt.date]:
    """Monthly training dates from month 4 (a quarter of history for the 90-day features) up to
    the embargo, plus the newest labelled month as the out-of-time date."""
    end = dt.date(start.year + (start.month - 1 + months) // 12, (start.month - 1 + months) % 12 + 1, 1)
    last_labelled = end - dt.timedelta(days=horizon_days)
    oot = dt.date(last_labelled.year, last_labelled.month, 1)
    embargo = oot - dt.timedelta(days=horizon_days)
    first = dt.date(start.year + (start.month + 2) // 12, (start.month + 2) % 12 + 1, 1)
    train = monthly_dates(first, embargo)[-10:]  # at most 10 training months
    assert train, f"{months} months are too short for a {horizon_days}-day label with an embargo"
    return [*train, oot]


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=30_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--horizon-days", type=int, default=None, help="default 365, or 180 below 30 months")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None, help="default /tmp/fieldbank-bench-risk-<size>")
    parser.add_argument("--out", type=Path, default=here / "results" / "risk.json")
    args = parser.parse_args()
    horizon = args.horizon_days or (365 if args.months >= 30 else 180)
    data_dir = args.data_dir or Path(f"/tmp/fieldbank-bench-risk-{args.parties}x{args.months}")
    console = Console()
    start = dt.date(2023, 1, 1)
    settings = load_settings(data_dir=data_dir)
    timings: dict[str, float] = {}

    if not (settings.lake_dir / "parties").exists():
        from fieldbank.lake.commands import ingest_command
        from fieldbank.simulate.commands import simulate_command

        t0 = time.perf_counter()
        simulate_command(parties=args.parties, months=args.months, seed=args.seed, start=start.isoformat(),
                         pd_paths=8, data_dir=data_dir, quiet=True)
        ingest_command(src=settings.raw_dir, data_dir=data_dir)
        timings["simulate_ingest_s"] = time.perf_counter() - t0

    from fieldbank.risk.dataset import ensure_portraits
    from fieldbank.risk.explain import reasons
    from fieldbank.risk.portrait_training import train_on_portraits
    from fieldbank.risk.scoring import FastScorer, score_frame

    dates = as_of_plan(start, args.months, horizon)
    t0 = time.perf_counter()
    ensure_portraits(settings.data_dir, settings.lake_dir, dates)
    timings["portraits_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = train_on_portraits(settings, dates, name="bench", seed=args.seed, horizon_days=horizon)
    timings["train_total_s"] = time.perf_counter() - t0
    timings["fit_s"] = result.extras["fit_seconds"]

    models = result.models
    _, oot, _ = result.table.split()
    champion = models.models[models.champion]
    fast = FastScorer(champion)
    repeats = max(1, 50_000 // max(len(oot), 1))
    t0 = time.perf_counter()
    for _ in range(repeats):
        score_frame(models, oot)
    batch_rows_per_s = repeats * len(oot) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(repeats):
        for start_row in range(0, len(oot), FastScorer.MAX_ROWS):
            fast.predict_pd(oot.iloc[start_row:start_row + FastScorer.MAX_ROWS])
    fast_rows_per_s = repeats * len(oot) / (time.perf_counter() - t0)
    rng = np.random.default_rng(0)
    latencies_ms, slow_ms = [], []
    for n, i in enumerate(rng.integers(0, len(oot), LATENCY_CALLS)):
        row = oot.iloc[[int(i)]]
        t = time.perf_counter()
        fast.score(row)  # PD + points + 4 reasons: the decision service's step
        latencies_ms.append((time.perf_counter() - t) * 1000)
        if n < 100:  # the pandas path, for comparison (slow: sampled)
            t = time.perf_counter()
            score_frame(models, row)
            reasons(champion, row)
            slow_ms.append((time.perf_counter() - t) * 1000)

    m = result.metrics
    uplift = {u["model"]: u for u in result.uplift}
    out = {
        "benchmark": "risk",
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "parties": args.parties, "months": args.months, "horizon_days": horizon, "seed": args.seed,
        "as_of_dates": [d.isoformat() for d in dates], "split": result.extras["split"],
        "rows": {"train": result.extras["train_rows"], "oot": result.extras["oot_rows"],
                 "train_defaults": int(result.metrics["lgbm_both"]["train"]["bad_rate"] * result.extras["train_rows"]),
                 "oot_defaults": int(round(m["lgbm_both"]["oot"]["bad_rate"] * m["lgbm_both"]["oot"]["rows"]))},
        "oot_auc": {k: u["oot_auc"] for k, u in uplift.items()},
        "oot_auc_scorecard": m["scorecard_both"]["oot"]["auc"],
        "oot_ece": {k: m[k]["oot"]["ece"] for k in m},
        "oot_ks": {k: m[k]["oot"]["ks"] for k in m},
        "champion_minus_traditional_auc": uplift["lgbm_both"]["oot_auc"] - uplift["lgbm_traditional"]["oot_auc"],
        "ceiling_minus_champion_auc": (result.truth_auc_oot - uplift["lgbm_both"]["oot_auc"])
        if result.truth_auc_oot is not None else None,
        "timings_s": timings,
        "batch_scoring_rows_per_s": {"pandas_path": batch_rows_per_s, "fast_path_1000_row_chunks": fast_rows_per_s},
        "single_row_with_reasons_ms": {"p50": float(np.percentile(latencies_ms, 50)),
                                       "p99": float(np.percentile(latencies_ms, 99)), "calls": LATENCY_CALLS},
        "single_row_with_reasons_pandas_path_ms": {"p50": float(np.percentile(slow_ms, 50)),
                                                   "p99": float(np.percentile(slow_ms, 99)), "calls": len(slow_ms)},
        "report": str(result.report_path),
    }

    t = Table(title=f"risk: {args.parties:,} parties x {args.months} months, label {horizon} d, "
                    f"OOT {dates[-1]} ({out['rows']['oot']:,} rows, {out['rows']['oot_defaults']} defaults)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for k, v in out["oot_auc"].items():
        t.add_row(f"OOT AUC {k}", f"{v:.4f}")
    t.add_row("OOT AUC scorecard_both", f"{out['oot_auc_scorecard']:.4f}")
    t.add_row("champion - traditional (AUC)", f"{out['champion_minus_traditional_auc']:+.4f}")
    if out["ceiling_minus_champion_auc"] is not None:
        t.add_row("true-PD ceiling - champion (AUC)", f"{out['ceiling_minus_champion_auc']:+.4f}")
    t.add_row("OOT ECE champion", f"{out['oot_ece']['lgbm_both']:.4f}")
    for k, v in timings.items():
        t.add_row(k, f"{v:.1f}")
    t.add_row("batch scoring, pandas path (rows/s)", f"{batch_rows_per_s:,.0f}")
    t.add_row("batch scoring, fast path (rows/s)", f"{fast_rows_per_s:,.0f}")
    t.add_row("single row + 4 reasons p50 / p99 (ms)",
              f"{out['single_row_with_reasons_ms']['p50']:.2f} / {out['single_row_with_reasons_ms']['p99']:.2f}")
    slow = out["single_row_with_reasons_pandas_path_ms"]
    t.add_row("  same on the pandas path p50 / p99 (ms)", f"{slow['p50']:.2f} / {slow['p99']:.2f}")
    console.print(t)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
