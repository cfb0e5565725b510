"""Score and feature drift: the population stability index (PSI) of the champion's score and
of its features, today's population against the training sample.

Credit practice: cut the *reference* (training) scores into deciles, count where today's
scores fall in those same bins, and sum (a - e) * ln(a / e) over the bins. For a feature the
bins are the feature's own reference deciles (a feature with few values gets one bin per value;
missing values are a bin of their own). Rule of thumb: < 0.10 stable, 0.10-0.25 watch,
> 0.25 shifted.

The training sample is rebuilt from the champion's metadata: the portraits at its training
as_of dates, restricted to its population (`fieldbank.labels`). Today's population is the same
rule applied to the newest portrait. Scoring both takes seconds, so the result is cached in
`data_dir/monitor/` per (model version, newest portrait); the dashboard reads the cache.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

N_BINS = 10
PSI_FLOOR = 1e-4  # an empty bin counts as this share: ln(0) would make PSI infinite
MAX_ROWS_PER_SAMPLE = 200_000  # a seeded sample beyond this: PSI needs shares, not every row
MAX_FEATURES_SHOWN = 30
PSI_WATCH, PSI_SHIFTED = 0.10, 0.25


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI of two count (or share) vectors over the same bins."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    assert e.shape == a.shape and e.sum() > 0 and a.sum() > 0, (e, a)
    e = np.maximum(e / e.sum(), PSI_FLOOR)
    a = np.maximum(a / a.sum(), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def decile_edges(reference: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (duplicates dropped: a lumpy feature gets
    fewer bins)."""
    values = np.asarray(reference, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return np.array([])
    edges = np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1], method="inverted_cdf"))
    return edges


def binned_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin (right-closed on the inner edges) plus a last bin for missing values."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    idx = np.searchsorted(edges, values[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return np.append(counts, missing.sum())


def psi_on_reference_bins(reference: np.ndarray, current: np.ndarray, n_bins: int = N_BINS) -> dict[str, Any]:
    edges = decile_edges(reference, n_bins)
    e, a = binned_counts(reference, edges), binned_counts(current, edges)
    keep = (e + a) > 0  # a bin empty on both sides says nothing
    return {"psi": psi(e[keep], a[keep]), "edges": edges.tolist(), "reference_counts": e.tolist(),
            "current_counts": a.tolist()}


def _category_psi(reference: pd.Series, current: pd.Series) -> float:
    levels = sorted(set(reference.dropna().astype(str)) | set(current.dropna().astype(str))) + ["<missing>"]
    ref = reference.astype("string").fillna("<missing>").value_counts().reindex(levels, fill_value=0)
    cur = current.astype("string").fillna("<missing>").value_counts().reindex(levels, fill_value=0)
    return psi(ref.to_numpy(), cur.to_numpy())


def status(value: float) -> str:
    return "shifted" if value > PSI_SHIFTED else "watch" if value > PSI_WATCH else "stable"


def _sample(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    if len(frame) <= MAX_ROWS_PER_SAMPLE:
        return frame
    return frame.sample(n=MAX_ROWS_PER_SAMPLE, random_state=seed)


def _population_rows(settings, day: dt.date, population: str, columns: list[str]) -> pd.DataFrame:
    from fieldbank.labels import default_labels
    from fieldbank.portrait.pipeline import portrait_path

    path = portrait_path(settings.data_dir, day)
    frame = pq.read_table(path, columns=["party_id", *columns]).to_pandas()
    parties = set(default_labels(settings.lake_dir, day, population=population)["party_id"].to_pylist())
    return frame[frame["party_id"].isin(parties)]


def compute_drift(settings, seed: int = 7) -> dict[str, Any]:
    """PSI of the champion's score and features, training sample vs the newest portrait."""
    from fieldbank.risk.scoring import load_models, newest_portrait_date, resolve_model, score_frame

    folder = resolve_model(settings.models_dir)
    meta = json.loads((folder / "metadata.json").read_text())
    models = load_models(str(folder))
    columns = models.specs[models.champion].columns
    population = meta.get("population", "open_at_d")
    train_days = [dt.date.fromisoformat(d) for d in meta["training_window"]["as_of"]]
    reference = _sample(pd.concat([_population_rows(settings, d, population, columns) for d in train_days],
                                  ignore_index=True), seed)
    newest = newest_portrait_date(settings.data_dir)
    current = _sample(_population_rows(settings, newest, population, columns), seed)
    if reference.empty or current.empty:
        raise ValueError(f"drift needs rows on both sides: reference {len(reference)}, current {len(current)} "
                         f"(population {population!r})")
    _, ref_points = score_frame(models, reference)
    _, cur_points = score_frame(models, current)
    score = psi_on_reference_bins(ref_points, cur_points)
    features = []
    for col in columns:
        if pd.api.types.is_numeric_dtype(reference[col]) or pd.api.types.is_bool_dtype(reference[col]):
            value = psi_on_reference_bins(reference[col].astype("float64").to_numpy(),
                                          current[col].astype("float64").to_numpy())["psi"]
        else:
            value = _category_psi(reference[col], current[col])
        features.append({"feature": col, "psi": round(value, 4), "status": status(value)})
    features.sort(key=lambda f: -f["psi"])
    return {
        "model": f"{folder.parent.name} v{folder.name}", "model_folder": str(folder),
        "reference": {"as_of": [d.isoformat() for d in train_days], "rows": int(len(reference))},
        "current": {"as_of": newest.isoformat(), "rows": int(len(current))},
        "population": population,
        "score": {**score, "psi": round(score["psi"], 4), "status": status(score["psi"])},
        "features": features, "features_shifted": sum(f["status"] == "shifted" for f in features),
        "computed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _newest_portrait(data_dir: Path) -> dt.date | None:
    root = Path(data_dir) / "portraits"
    days = [p.name.split("=", 1)[1] for p in root.glob("as_of=*") if p.is_dir()] if root.is_dir() else []
    return dt.date.fromisoformat(max(days)) if days else None


def cache_path(settings) -> Path | None:
    """Where the drift of the current champion on the newest portrait is cached (None: no
    champion or no portrait yet). Reads only the registry pointer: no model library import."""
    from fieldbank.risk import registry

    champion = registry.get_champion(settings.models_dir)
    newest = _newest_portrait(settings.data_dir)
    if champion is None or newest is None:
        return None
    name, version = champion
    return Path(settings.data_dir) / "monitor" / f"drift-{name}-v{int(version):04d}-{newest}.json"


def load_or_compute_drift(settings, *, compute: bool = True) -> dict[str, Any] | None:
    """The cached drift, computed and written (atomically) when missing and `compute`."""
    path = cache_path(settings)
    if path is None:
        return None
    if path.exists():
        return json.loads(path.read_text())
    if not compute:
        return None
    result = compute_drift(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".drift-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)
    return result
