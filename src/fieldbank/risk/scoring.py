"""Scoring one party (or a batch) with a portrait-mode model: PD, points and reasons."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fieldbank.risk import registry
from fieldbank.risk.explain import N_REASONS, Reason, reason_text, reasons
from fieldbank.risk.models import LgbmPD
from fieldbank.risk.portrait_training import PortraitModels, pd_to_points

DEFAULT_NAME = "portrait"


@dataclass(frozen=True)
class ScoredParty:
    party_id: str
    as_of: dt.date
    pd: float
    points: float
    model: str
    folder: Path
    reasons: list[Reason]


def resolve_model(models_dir: Path, name: str | None = None, version: int | None = None) -> Path:
    """The champion when no name is given (if it is a portrait model), else the newest `portrait`."""
    if name is None:
        champion = registry.get_champion(models_dir)
        name, version = champion if champion else (DEFAULT_NAME, None)
    folder = registry.folder_of(models_dir, name, version)
    meta = json.loads((folder / "metadata.json").read_text())
    if meta.get("mode") != "portrait":
        raise ValueError(f"model {name} v{int(folder.name)} was trained in {meta.get('mode')!r} mode; "
                         "scoring a party needs a portrait-mode model (fieldbank train --as-of ...)")
    return folder


@lru_cache(maxsize=4)  # a model version folder never changes once written
def load_models(folder: str) -> PortraitModels:
    return PortraitModels.load(Path(folder))


def score_frame(models: PortraitModels, rows: pd.DataFrame, key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(PD, points) for portrait rows. LightGBM PDs go on the scorecard's points scale."""
    key = key or models.champion
    model = models.models[key]
    pd_ = model.predict_pd(rows)
    points = pd_to_points(pd_) if isinstance(model, LgbmPD) else model.points(rows)
    return pd_, np.asarray(points, dtype=np.float64)


class FastScorer:
    """The decision-time path for a LightGBM model: PD, points and reasons for a few rows in
    about a millisecond. It skips pandas (FeatureSpec.frame and LightGBM's pandas input cost
    ~30 ms a row) and hands LightGBM a float matrix, categories as their training codes (the
    position in the spec's levels, which is how LightGBM stored them); it gives the same
    numbers as the pandas path (tested)."""

    MAX_ROWS = 1_000  # decision-time batches; batch scoring uses score_frame

    def __init__(self, model: LgbmPD) -> None:
        assert isinstance(model, LgbmPD)
        self.model = model
        self.columns = model.spec.columns
        self.codes = {col: {level: float(i) for i, level in enumerate(levels)}
                      for col, levels in model.spec.categorical.items()}

    def matrix(self, rows: pd.DataFrame) -> np.ndarray:
        assert 0 < len(rows) <= self.MAX_ROWS, len(rows)
        out = np.empty((len(rows), len(self.columns)), dtype=np.float64)
        numeric = [j for j, c in enumerate(self.columns) if c not in self.codes]
        out[:, numeric] = rows[[self.columns[j] for j in numeric]].to_numpy(dtype=np.float64, na_value=np.nan)
        for j, col in enumerate(self.columns):
            if col in self.codes:
                codes = self.codes[col]
                out[:, j] = [np.nan if pd.isna(v) else codes.get(str(v), np.nan) for v in rows[col].tolist()]
        return out

    def predict_pd(self, rows: pd.DataFrame) -> np.ndarray:
        """PDs only (no reasons), for batch scoring in chunks of up to MAX_ROWS."""
        m, x = self.model, self.matrix(rows)
        raw = np.mean([b.predict(x, num_iteration=n, num_threads=1) for b, n in zip(m.boosters_, m.n_trees_)], axis=0)
        return m.calibrator_.predict(raw)

    def score(self, rows: pd.DataFrame, n_reasons: int = N_REASONS) -> tuple[np.ndarray, np.ndarray, list[list[Reason]]]:
        x = self.matrix(rows)
        m = self.model
        raw = np.mean([b.predict(x, num_iteration=n, num_threads=1) for b, n in zip(m.boosters_, m.n_trees_)], axis=0)
        pd_ = m.calibrator_.predict(raw)
        contrib = np.mean([b.predict(x, num_iteration=n, num_threads=1, pred_contrib=True)
                           for b, n in zip(m.boosters_, m.n_trees_)], axis=0)[:, :-1]
        why = []
        for i in range(len(rows)):
            order = np.argsort(-contrib[i], kind="stable")[:n_reasons]
            picked = [self.columns[j] for j in order if contrib[i, j] > 0]
            values = rows[picked].iloc[i].tolist() if picked else []
            why.append([Reason(col, v, float(contrib[i, self.columns.index(col)]), "log-odds", reason_text(col, v))
                        for col, v in zip(picked, values)])
        return pd_, pd_to_points(pd_), why


def newest_portrait_date(data_dir: Path) -> dt.date:
    root = Path(data_dir) / "portraits"
    days = sorted(dt.date.fromisoformat(p.name.split("=", 1)[1]) for p in root.glob("as_of=*") if p.is_dir()) \
        if root.is_dir() else []
    if not days:
        raise LookupError(f"no portraits under {root}: run `fieldbank portrait --as-of ...` first")
    return days[-1]


def score_party(settings, party_id: str, as_of: dt.date | None = None, name: str | None = None,
                version: int | None = None, n_reasons: int = N_REASONS) -> ScoredParty:
    from fieldbank.risk.dataset import ensure_portraits

    folder = resolve_model(settings.models_dir, name, version)
    models = load_models(str(folder))
    day = as_of or newest_portrait_date(settings.data_dir)
    (path,) = ensure_portraits(settings.data_dir, settings.lake_dir, [day])
    row = pq.read_table(path, filters=[("party_id", "=", party_id)]).to_pandas()
    if row.empty:
        raise LookupError(f"party {party_id!r} is not in the portrait as of {day} ({path})")
    champion = models.models[models.champion]
    if isinstance(champion, LgbmPD):
        pd_, points, (why,) = FastScorer(champion).score(row, n_reasons)
    else:
        pd_, points = score_frame(models, row)
        (why,) = reasons(champion, row, n_reasons)
    return ScoredParty(party_id, day, float(pd_[0]), float(points[0]), models.champion, folder, why)
