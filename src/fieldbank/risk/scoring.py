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
from fieldbank.risk.explain import N_REASONS, Reason, reasons
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
    pd_, points = score_frame(models, row)
    (why,) = reasons(models.models[models.champion], row, n_reasons)
    return ScoredParty(party_id, day, float(pd_[0]), float(points[0]), models.champion, folder, why)
