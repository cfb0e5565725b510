"""Training time of the LightGBM champion on a large synthetic credit table, vs plain LightGBM.

Trains `LgbmPD` exactly as fieldbank does (src/fieldbank/risk/models.py: one time-ordered
(fit, valid) fold, early stopping on the valid rows, monotone constraints, calibration on the
valid scores, the monotone check) on a seeded synthetic table with a planted signal, and in
the same run a baseline: plain `lightgbm.train` with the same parameters and the same number
of trees the champion keeps, on a numpy array, with no validation set, no early stopping, no
calibration and no monotone check. The ratio of the two times is fieldbank's overhead.
Reports seconds, trees, rows/s and peak RSS. Prints a table, writes
benchmarks/results/train_time.json.

    uv run python benchmarks/bench_train_time.py --rows 50000 --features 60      # quick
    uv run python benchmarks/bench_train_time.py --rows 1000000 --features 300   # the issue's size
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import threading
import time
from dataclasses import replace
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import psutil
from rich.console import Console
from rich.table import Table
from sklearn.metrics import roc_auc_score

from fieldbank.risk.calibration import Calibrator
from fieldbank.risk.features import FeatureSpec
from fieldbank.risk.models import SINGLE_THREAD_ROWS, LgbmParams, LgbmPD

VALID_SHARE = 0.2  # the newest fifth of the rows: early stopping and calibration
N_MONOTONE = 10  # planted monotone features, constrained in the model
N_NONLINEAR = 6  # planted features with a U-shaped or interacting effect
MISSING_SHARE = 0.05  # missing values in every tenth feature, as in real portraits
BASE_LOGIT = -3.0  # about a 6 % default rate
RSS_SAMPLE_S = 0.05
MAX_ROWS = 5_000_000  # 5M x 300 float32 is 6 GB before LightGBM's copies


class PeakRss:
    """Samples this process's RSS in a thread; `peak_mib` is the maximum seen in the block."""

    def __enter__(self) -> "PeakRss":
        self._proc = psutil.Process()
        self.start_mib = self._proc.memory_info().rss / 2**20
        self.peak_mib = self.start_mib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            self.peak_mib = max(self.peak_mib, self._proc.memory_info().rss / 2**20)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, self._proc.memory_info().rss / 2**20)


def planted_table(rows: int, features: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict[str, int]]:
    """Rows in time order (row i is older than row i+1) with a slowly rising default rate.
    Returns (x, y_bad, true_logit, monotone directions of the planted monotone features)."""
    assert features >= N_MONOTONE + N_NONLINEAR + 1, "too few features for the planted signal"
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features), dtype=np.float32)
    directions = np.where(np.arange(N_MONOTONE) % 2 == 0, 1, -1)
    weights = np.linspace(0.6, 0.15, N_MONOTONE) * directions
    logit = BASE_LOGIT + x[:, :N_MONOTONE].astype(np.float64) @ weights
    a, b = N_MONOTONE, N_MONOTONE + N_NONLINEAR
    nonlinear = x[:, a:b].astype(np.float64)
    logit += 0.25 * (nonlinear[:, :2] ** 2 - 1).sum(axis=1)  # U-shaped: both extremes are risky
    logit += 0.3 * nonlinear[:, 2] * nonlinear[:, 3]  # an interaction
    logit += 0.4 * np.tanh(2 * nonlinear[:, 4]) - 0.3 * (nonlinear[:, 5] > 1)  # a step
    logit += np.linspace(-0.2, 0.2, rows)  # drift: later rows are riskier
    y_bad = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    # Missing values after the outcome is drawn, as a missing bureau or bill field would be.
    for col in range(N_MONOTONE, features, 10):
        x[rng.random(rows) < MISSING_SHARE, col] = np.nan
    columns = [f"f{i:03d}" for i in range(features)]
    monotone = {columns[i]: int(directions[i]) for i in range(N_MONOTONE)}
    return pd.DataFrame(x, columns=columns, copy=False), y_bad, logit, monotone


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=300)
    parser.add_argument("--max-trees", type=int, default=None,
                        help=f"cap on trees (fieldbank's default {LgbmParams().max_trees}); a capped run says so")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=here / "results" / "train_time.json")
    args = parser.parse_args()
    assert 1_000 <= args.rows <= MAX_ROWS, f"--rows must be in 1,000..{MAX_ROWS:,}"
    console = Console()
    load_start = os.getloadavg()

    with console.status(f"generating {args.rows:,} x {args.features} rows"):
        t0 = time.perf_counter()
        x, y_bad, true_logit, monotone = planted_table(args.rows, args.features, args.seed)
        generate_s = time.perf_counter() - t0
    cut = int(args.rows * (1 - VALID_SHARE))  # one time-ordered fold: fit on the older rows
    x_fit, x_valid = x.iloc[:cut], x.iloc[cut:]
    y_fit, y_valid = y_bad[:cut], y_bad[cut:]
    spec = FeatureSpec.infer(x, monotone=monotone)
    params = LgbmParams() if args.max_trees is None else replace(LgbmParams(), max_trees=args.max_trees)

    with console.status("fieldbank LgbmPD: early stopping, calibration, monotone check"), PeakRss() as rss_model:
        t0 = time.perf_counter()
        model = LgbmPD(spec, params, seed=args.seed).fit(x_fit, y_fit, x_valid, y_valid)
        model_s = time.perf_counter() - t0
    kept_trees = model.n_trees_[0]
    # LightGBM keeps the trees up to the best iteration; early stopping grew `patience` more
    # (or stopped at the cap).
    grown_trees = min(kept_trees + params.early_stopping_rounds, params.max_trees)
    # Parts of the fit measured again on the fitted model (the fit itself is one call).
    t0 = time.perf_counter()
    raw_valid = model.predict_raw(x_valid)
    valid_predict_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    Calibrator().fit(raw_valid, y_valid, seed=args.seed)
    calibrate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.check_monotone(x_fit)
    monotone_check_s = time.perf_counter() - t0
    auc_model = float(roc_auc_score(y_valid, model.predict_pd(x_valid)))
    auc_truth = float(roc_auc_score(y_valid, true_logit[cut:]))

    # Baseline: the same parameters and trees, nothing around them.
    baseline_params = {**model._lgb_params(), "num_threads": os.cpu_count() if cut >= SINGLE_THREAD_ROWS else 1}
    with console.status(f"baseline: plain lightgbm.train, {kept_trees} trees"), PeakRss() as rss_base:
        t0 = time.perf_counter()
        train_set = lgb.Dataset(x_fit.to_numpy(np.float64), label=y_fit, params=baseline_params).construct()
        baseline_binning_s = time.perf_counter() - t0  # fixed cost; the rest grows with the trees
        booster = lgb.train(baseline_params, train_set, num_boost_round=kept_trees)
        baseline_s = time.perf_counter() - t0
    auc_baseline = float(roc_auc_score(y_valid, booster.predict(x_valid.to_numpy(np.float64))))
    del booster, train_set

    capped = grown_trees >= params.max_trees
    out = {
        "benchmark": "train_time",
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "lightgbm": lgb.__version__,
                    "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "load_avg_1m_at_start": load_start[0], "load_avg_1m_at_end": os.getloadavg()[0]},
        "rows": args.rows, "features": args.features, "seed": args.seed,
        "fit_rows": cut, "valid_rows": args.rows - cut, "default_rate": float(y_bad.mean()),
        "planted": {"monotone": N_MONOTONE, "nonlinear": N_NONLINEAR,
                    "noise": args.features - N_MONOTONE - N_NONLINEAR},
        "max_trees": params.max_trees, "max_trees_lowered_by_flag": args.max_trees is not None,
        "stopped_by_cap": capped,
        "generate_s": generate_s,
        "fieldbank": {"seconds": model_s, "trees_kept": kept_trees, "trees_grown": grown_trees,
                      "fit_rows_per_s": cut / model_s, "peak_rss_mib": rss_model.peak_mib,
                      "rss_before_mib": rss_model.start_mib, "valid_auc": auc_model,
                      "parts_remeasured_s": {"valid_predict": valid_predict_s, "calibrate": calibrate_s,
                                             "monotone_check": monotone_check_s}},
        "baseline": {"what": "lightgbm.train, same params, trees_kept rounds, numpy input, no valid set",
                     "seconds": baseline_s, "trees": kept_trees, "fit_rows_per_s": cut / baseline_s,
                     "binning_s": baseline_binning_s, "seconds_per_tree_after_binning": (baseline_s - baseline_binning_s) / kept_trees,
                     "peak_rss_mib": rss_base.peak_mib, "rss_before_mib": rss_base.start_mib,
                     "valid_auc": auc_baseline},
        "overhead_ratio": model_s / baseline_s,
        "seconds_per_tree": {"fieldbank_grown": model_s / grown_trees, "baseline": baseline_s / kept_trees},
        "true_logit_valid_auc": auc_truth,
    }

    t = Table(title=f"training time: {args.rows:,} rows x {args.features} features "
                    f"({cut:,} fit / {args.rows - cut:,} valid, time-ordered), {os.cpu_count()} cores")
    for col in ("", "seconds", "trees", "fit rows/s", "peak RSS (MiB)", "valid AUC"):
        t.add_column(col, justify="right")
    t.add_row("fieldbank LgbmPD", f"{model_s:.1f}", f"{kept_trees} kept / {grown_trees} grown",
              f"{cut / model_s:,.0f}", f"{rss_model.peak_mib:,.0f}", f"{auc_model:.4f}")
    t.add_row("plain lightgbm.train", f"{baseline_s:.1f}", f"{kept_trees}",
              f"{cut / baseline_s:,.0f}", f"{rss_base.peak_mib:,.0f}", f"{auc_baseline:.4f}")
    t.add_row("overhead ratio", f"{out['overhead_ratio']:.2f}x", "", "", "", f"truth {auc_truth:.4f}")
    console.print(t)
    console.print(f"inside the fit: valid predict {valid_predict_s:.1f} s, calibration {calibrate_s:.1f} s, "
                  f"monotone check {monotone_check_s:.1f} s" + (f"; STOPPED BY THE CAP of {params.max_trees} trees" if capped else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    console.print(f"train_time: {args.rows:,} x {args.features} in {model_s:.0f} s ({kept_trees} trees), "
                  f"{out['overhead_ratio']:.2f}x plain LightGBM; wrote {args.out}")


if __name__ == "__main__":
    main()
