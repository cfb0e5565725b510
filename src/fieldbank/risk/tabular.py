"""Generic mode: train and validate on any tabular credit data set (CSV or Parquet).

One row per applicant, a target column saying who went bad, optionally a time column. With a
time column the newest 20% of rows are held out (out-of-time validation, as a bank would);
without one, stratified k-fold cross-validation, repeated on small tables where a single
split is too noisy to compare models.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from fieldbank.risk.features import FeatureSpec
from fieldbank.risk.metrics import score_metrics
from fieldbank.risk.models import LgbmPD, ScorecardPD

MAX_ROWS = 20_000_000  # beyond this, sample first: one machine's memory is the limit
OOT_SHARE = 0.2  # newest share of rows held out when a time column is given
VALID_SHARE = 0.2  # share of the development rows used for early stopping and calibration
SMALL_TABLE_ROWS = 5_000  # below this, cross-validation is repeated (5x5) to tame noise
MODEL_NAMES = ("lgbm", "scorecard", "logistic")


@dataclass
class TabularData:
    x: pd.DataFrame
    y_bad: np.ndarray
    time: pd.Series | None
    source: Path
    fingerprint: str  # sha256 of the file: which data this model saw
    target: str
    dropped_rows: int = 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_table(
    path: Path,
    target: str,
    bad_values: list[str] | None = None,
    time_column: str | None = None,
    drop: list[str] | None = None,
) -> TabularData:
    """Read the table and split it into features, the 0/1 bad flag and the time column."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--table {path}: no such file")
    if path.suffix.lower() == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix.lower() in (".csv", ".txt"):
        frame = pd.read_csv(path)
    else:
        raise ValueError(f"--table {path}: unsupported file type {path.suffix!r}; use .csv or .parquet")
    if len(frame) > MAX_ROWS:
        raise ValueError(f"--table {path}: {len(frame)} rows, more than the limit of {MAX_ROWS}; sample it first")
    for col in [target, time_column, *(drop or [])]:
        if col is not None and col not in frame.columns:
            raise ValueError(f"column {col!r} not in {path.name}; columns are {list(frame.columns)}")

    labelled = frame[target].notna()
    dropped = int((~labelled).sum())
    frame = frame[labelled].reset_index(drop=True)
    raw_target = frame.pop(target)
    if bad_values:
        y_bad = raw_target.astype(str).isin([str(v) for v in bad_values]).to_numpy(np.int8)
    else:
        values = set(pd.unique(raw_target))
        if not values <= {0, 1, True, False}:
            shown = sorted(map(str, values))[:10]
            raise ValueError(
                f"target {target!r} has values {shown}: the rule is 0/1 (1 = bad); "
                "name the bad values with --bad-value"
            )
        y_bad = raw_target.astype(int).to_numpy(np.int8)
    if len(np.unique(y_bad)) < 2:
        raise ValueError(f"target {target!r}: every row is {'bad' if y_bad[0] else 'good'}; need both")

    time = None
    if time_column:
        time = pd.to_datetime(frame.pop(time_column), errors="raise", utc=True)
    for col in drop or []:
        frame.pop(col)
    return TabularData(frame, y_bad, time, path, _sha256(path), target, dropped)


def logistic_baseline(spec: FeatureSpec):
    """The reference a careful modeller starts from: median impute, one-hot, standardise, LR."""
    return make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), list(spec.numeric)),
                ("cat", OneHotEncoder(handle_unknown="ignore"), list(spec.categorical)),
            ]
        ),
        LogisticRegression(max_iter=2000),
    )


@dataclass
class FittedModels:
    lgbm: LgbmPD
    scorecard: ScorecardPD
    logistic: object

    def predict_pd(self, x: pd.DataFrame) -> dict[str, np.ndarray]:
        frame = self.lgbm.spec.frame(x)
        return {
            "lgbm": self.lgbm.predict_pd(x),
            "scorecard": self.scorecard.predict_pd(x),
            "logistic": self.logistic.predict_proba(frame)[:, 1],
        }


def fit_all(spec: FeatureSpec, x_dev: pd.DataFrame, y_dev: np.ndarray, time_dev: pd.Series | None, seed: int) -> FittedModels:
    """Fit every model on development rows.

    With a time column: trees on the oldest 80%, early stopping + calibration on the newest 20%.
    Without: LightGBM is cross-fitted on 5 stratified folds (every development row serves once
    for early stopping and calibration, and the 5 boosters are averaged); the scorecard uses
    the first fold's split.
    """
    if time_dev is not None:
        order = np.argsort(time_dev.to_numpy(), kind="stable")
        cut = int(len(order) * (1 - VALID_SHARE))
        splits = [(order[:cut], order[cut:])]
    else:
        n_folds = round(1 / VALID_SHARE)
        splits = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(x_dev, y_dev))
    folds = [(x_dev.iloc[f], y_dev[f], x_dev.iloc[v], y_dev[v]) for f, v in splits]
    lgbm = LgbmPD(spec, seed=seed).fit_folds(folds)
    scorecard = ScorecardPD(spec, seed=seed).fit(*folds[0])
    logistic = logistic_baseline(spec).fit(spec.frame(x_dev), y_dev)
    return FittedModels(lgbm, scorecard, logistic)


@dataclass
class Validation:
    method: str  # human-readable: how the numbers were obtained
    folds: list[dict[str, dict[str, float]]] = field(default_factory=list)  # per fold: model -> metrics
    train: dict[str, dict[str, float]] = field(default_factory=dict)  # out-of-time mode only

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """model -> metric -> {mean, sd} over folds (sd 0 for a single out-of-time split)."""
        out: dict = {}
        for model in MODEL_NAMES:
            per_metric: dict[str, dict[str, float]] = {}
            for metric in self.folds[0][model]:
                values = np.array([f[model][metric] for f in self.folds], dtype=float)
                per_metric[metric] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
            out[model] = per_metric
        return out


def validate(data: TabularData, spec: FeatureSpec, seed: int = 0, folds: int = 5, repeats: int | None = None,
             progress=None) -> Validation:
    """Out-of-time when the data has a time column, else (repeated) stratified k-fold CV."""
    x, y = data.x, data.y_bad
    if data.time is not None:
        order = np.argsort(data.time.to_numpy(), kind="stable")
        cut = int(len(order) * (1 - OOT_SHARE))
        dev, oot = order[:cut], order[cut:]
        if len(np.unique(y[oot])) < 2:
            raise ValueError("out-of-time rows hold only one class; cannot validate")
        models = fit_all(spec, x.iloc[dev], y[dev], data.time.iloc[dev], seed)
        start, end = data.time.iloc[oot].min(), data.time.iloc[oot].max()
        v = Validation(f"out-of-time: trained on the oldest {len(dev)} rows, validated on the newest "
                       f"{len(oot)} ({start:%Y-%m-%d} to {end:%Y-%m-%d})")
        v.folds.append({m: score_metrics(y[oot], p) for m, p in models.predict_pd(x.iloc[oot]).items()})
        v.train = {m: score_metrics(y[dev], p) for m, p in models.predict_pd(x.iloc[dev]).items()}
        return v
    repeats = repeats or (5 if len(y) < SMALL_TABLE_ROWS else 1)
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    v = Validation(f"stratified {folds}-fold cross-validation, repeated {repeats}x ({folds * repeats} fits)")
    for i, (train_idx, test_idx) in enumerate(splitter.split(x, y)):
        models = fit_all(spec, x.iloc[train_idx], y[train_idx], None, seed + i)
        v.folds.append({m: score_metrics(y[test_idx], p) for m, p in models.predict_pd(x.iloc[test_idx]).items()})
        if progress is not None:
            progress()
    return v
