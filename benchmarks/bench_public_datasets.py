"""Generic training mode on the public credit data sets in ../shared/datasets/.

Runs exactly what `fieldbank train --table ... --target ...` runs (default settings, no
per-data-set code), and compares the validated AUC with the published reference figures
from ../shared/datasets/README.md and with the plain logistic-regression baseline fitted in
the same folds of the same run. Prints a table, writes benchmarks/results/public_datasets.json.

    uv run python benchmarks/bench_public_datasets.py [--datasets-dir ../shared/datasets]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fieldbank.risk.features import FeatureSpec
from fieldbank.risk.tabular import load_table, validate

# (file, target, bad values, columns that are not features, reference AUCs from the README)
DATASETS = {
    "german_credit": ("german_credit.csv", "creditability", ["bad"], [],
                      {"reference_logistic": 0.781, "reference_lightgbm": 0.785}),
    "taiwan_default": ("taiwan_default.csv", "default_payment_next_month", None, ["ID"],
                       {"reference_logistic": 0.724, "reference_lightgbm": 0.783}),
}


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets-dir", type=Path, default=here.parent.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=here / "results" / "public_datasets.json")
    args = parser.parse_args()

    console = Console()
    results = {}
    for name, (file, target, bad_values, drop, reference) in DATASETS.items():
        started = time.perf_counter()
        data = load_table(args.datasets_dir / file, target, bad_values, drop=drop)
        validation = validate(data, FeatureSpec.infer(data.x), seed=0)
        summary = validation.summary()
        results[name] = {
            "rows": len(data.y_bad), "validation": validation.method, "seconds": time.perf_counter() - started,
            **reference,
            **{f"{model}_{metric}": summary[model][metric][stat]
               for model in summary for metric in ("auc", "ks", "brier", "ece") for stat in ("mean",)},
            **{f"{model}_auc_sd": summary[model]["auc"]["sd"] for model in summary},
        }
        console.print(f"{name}: done in {results[name]['seconds']:.0f} s ({validation.method})")

    table = Table(title="validated AUC on public credit data (mean ± sd over folds)")
    for col in ("data set", "fieldbank LightGBM", "scorecard", "LR baseline (same run)", "published LR",
                "published LightGBM", "Δ vs published LightGBM", "LightGBM KS", "LightGBM ECE"):
        table.add_column(col, justify="right")
    for name, r in results.items():
        table.add_row(name, f"{r['lgbm_auc']:.4f} ± {r['lgbm_auc_sd']:.4f}", f"{r['scorecard_auc']:.4f}",
                      f"{r['logistic_auc']:.4f}", f"{r['reference_logistic']:.3f}", f"{r['reference_lightgbm']:.3f}",
                      f"{r['lgbm_auc'] - r['reference_lightgbm']:+.4f}", f"{r['lgbm_ks']:.4f}", f"{r['lgbm_ece']:.4f}")
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
