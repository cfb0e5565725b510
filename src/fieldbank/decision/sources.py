"""What a decision reads besides the request, kept in memory: the newest portrait, the lake's
parties (identity graph), and the champion model (+ the challenger scored in shadow).

`Sources.current()` hands out one immutable `Snapshot`; `maybe_refresh()` (called on the
request path, throttled to one stat of the folders every `check_seconds`) notices a newer
portrait or a newly promoted champion and loads it on a background thread, then swaps the
snapshot in one assignment, so requests never wait for a reload and never see half of one.
A load that fails leaves the snapshot's `problems` saying why: the service then refers.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

import numpy as np

from fieldbank.risk import registry

if TYPE_CHECKING:
    import pandas as pd

    from fieldbank.risk.explain import Reason
    from fieldbank.risk.scoring import FastScorer

# Heavy libraries (pandas, pyarrow, ibis via the portrait stage, LightGBM and scikit-learn via
# risk) are imported when there is a portrait or a model to load, not at import: `fieldbank
# serve` on an empty folder starts in seconds, even on a busy machine.

log = logging.getLogger("fieldbank.decision")
DAYS_PER_MONTH = 30
MAX_MONTHS_OBSERVED = 120


@dataclass(frozen=True)
class PortraitFacts:
    """One party's portrait-derived facts (integers in minor units, as the policy reads them)."""

    kind: str
    age_years: int | None
    months_observed: int
    monthly_revenue_minor: int
    monthly_income_minor: int
    observed_inflow_minor_365d: int
    thin_file: bool


class Portrait:
    """One portrait file in memory: the frame (for the model) and an index by party_id."""

    def __init__(self, as_of: dt.date, path: Path, frame: pd.DataFrame) -> None:
        self.as_of, self.path, self.frame = as_of, path, frame
        ids = frame["party_id"].astype(str).tolist()
        self.index = {p: i for i, p in enumerate(ids)}
        assert len(self.index) == len(ids), f"{path}: duplicate party_id rows"

        def col(name: str) -> np.ndarray:
            if name not in frame.columns:
                return np.zeros(len(frame), dtype=np.int64)
            return frame[name].fillna(0).to_numpy(dtype=np.float64).astype(np.int64)

        self._kind = frame["party_kind"].astype(str).tolist() if "party_kind" in frame else ["household"] * len(ids)
        self._age = frame["party_age_years"].to_numpy(dtype=np.float64, na_value=np.nan) \
            if "party_age_years" in frame else np.full(len(ids), np.nan)
        self._revenue_90d, self._income_90d = col("biz_revenue_minor_90d"), col("hh_income_minor_90d")
        self._inflow_365d = col("biz_revenue_minor_365d") + col("hh_income_minor_365d")
        self._tenure_days, self._families = col("party_tenure_days"), col("thin_families_with_data_n")
        self._credit_file = col("thin_has_credit_file")

    @classmethod
    def load(cls, data_dir: Path, as_of: dt.date) -> "Portrait":
        import pyarrow.parquet as pq

        from fieldbank.portrait.pipeline import portrait_path

        path = portrait_path(data_dir, as_of)
        return cls(as_of, path, pq.read_table(path).to_pandas())

    def __len__(self) -> int:
        return len(self.index)

    def facts(self, i: int) -> PortraitFacts:
        age = self._age[i]
        months = 0 if self._families[i] == 0 else min(int(self._tenure_days[i]) // DAYS_PER_MONTH, MAX_MONTHS_OBSERVED)
        return PortraitFacts(
            kind=self._kind[i], age_years=None if np.isnan(age) else int(age), months_observed=max(months, 0),
            monthly_revenue_minor=max(int(self._revenue_90d[i]) // 3, 0),
            monthly_income_minor=max(int(self._income_90d[i]) // 3, 0),
            observed_inflow_minor_365d=max(int(self._inflow_365d[i]), 0),
            thin_file=not bool(self._credit_file[i]),
        )

    def row(self, i: int) -> pd.DataFrame:
        return self.frame.iloc[[i]]


class Parties:
    """The lake's parties table: kind, birth year, declared income, phone and device hashes,
    and how many parties share each phone and device (the identity graph's degree)."""

    COLUMNS = ["party_id", "kind", "birth_year", "declared_income_minor", "phone_hash", "device_hash"]

    def __init__(self, rows: dict[str, list[Any]]) -> None:
        self.rows = rows
        self.index = {p: i for i, p in enumerate(rows["party_id"])}
        self.phone_parties = Counter(h for h in rows["phone_hash"] if h)
        self.device_parties = Counter(h for h in rows["device_hash"] if h)

    @classmethod
    def load(cls, lake_dir: Path) -> "Parties":
        from fieldbank.lake.read import read_lake_table

        table = read_lake_table(lake_dir, "parties", cls.COLUMNS)
        return cls({c: table[c].to_pylist() for c in cls.COLUMNS})

    def get(self, party_id: str) -> dict[str, Any] | None:
        i = self.index.get(party_id)
        return None if i is None else {c: self.rows[c][i] for c in self.COLUMNS}


@dataclass(frozen=True)
class Models:
    ref: str  # e.g. "portrait/0003:lgbm_both"
    folder: Path
    scorer: FastScorer
    challenger_ref: str | None
    challenger: Any  # LgbmPD (scored with a FastScorer) or ScorecardPD
    challenger_scorer: FastScorer | None

    @classmethod
    def load(cls, models_dir: Path, challenger_key: str | None) -> "Models":
        if not Path(models_dir).is_dir():
            raise LookupError(f"no model registry at {models_dir}: run `fieldbank train` and `fieldbank models promote`")
        from fieldbank.risk.models import LgbmPD
        from fieldbank.risk.scoring import FastScorer, load_models, resolve_model

        folder = resolve_model(models_dir)
        bundle = load_models(str(folder))
        champion = bundle.models[bundle.champion]
        if not isinstance(champion, LgbmPD):
            raise ValueError(f"champion {bundle.champion} of {folder} is not a LightGBM model: "
                             "the decision path scores with FastScorer")
        base = f"{folder.parent.name}/{folder.name}"
        challenger = bundle.models.get(challenger_key) if challenger_key else None
        if challenger_key and challenger is None:
            raise ValueError(f"challenger {challenger_key!r} is not in {folder} (it has {sorted(bundle.models)})")
        return cls(f"{base}:{bundle.champion}", folder, FastScorer(champion),
                   f"{base}:{challenger_key}" if challenger is not None else None, challenger,
                   FastScorer(challenger) if isinstance(challenger, LgbmPD) else None)


MAX_PRECOMPUTED_CELLS = 50_000_000  # 400 MB of float64; larger portraits build the row's matrix per request


MAX_SCORED_REASONS = 8  # top reasons kept per row when the champion is scored in batch


class RowScorer:
    """The champion and the challenger on one portrait.

    Champion: the PD and the top reasons of every row are computed here, in one batch per
    chunk, when the snapshot loads: a PD depends only on the portrait row and the model, both
    fixed for the snapshot's life, so a request's scoring is an array lookup (a new portrait or
    a new champion makes a new snapshot). PD = calibrator(mean over boosters of
    sigmoid(sum of contributions)), exactly what `predict` returns for a binary objective, and
    the reasons are the largest positive contributions: the same numbers as FastScorer.score
    (tested). A portrait too large to hold as a matrix (MAX_PRECOMPUTED_CELLS) is scored per
    request instead, the same way, on one row.

    Challenger (shadow): its PD for every row, also computed here. A challenger that cannot
    score the portrait leaves `challenger_pds` None (logged): the shadow never blocks a decision."""

    def __init__(self, scorer: FastScorer, portrait: Portrait, models: Models | None = None) -> None:
        from fieldbank.risk.explain import Reason, reason_text
        from fieldbank.risk.scoring import FastScorer

        self._reason, self._reason_text = Reason, reason_text
        self.scorer, self.portrait = scorer, portrait
        self.challenger_pds = _challenger_pds(models, portrait) if models is not None else None
        n, p = len(portrait), len(scorer.columns)
        self.matrix: np.ndarray | None = None
        self.pds: np.ndarray | None = None
        if n * p <= MAX_PRECOMPUTED_CELLS:
            k = min(MAX_SCORED_REASONS, p)
            self.matrix = np.empty((n, p), dtype=np.float64)
            self.pds, self.reason_columns = np.empty(n), np.empty((n, k), dtype=np.int32)
            self.reason_impacts = np.empty((n, k))
            for start in range(0, n, FastScorer.MAX_ROWS):  # one chunk: its matrix, then its scores
                rows = slice(start, min(n, start + FastScorer.MAX_ROWS))
                self.matrix[rows] = scorer.matrix(portrait.frame.iloc[rows])
                self.pds[rows], contrib = self._contributions(self.matrix[rows], num_threads=0)
                order = np.argsort(-contrib, axis=1, kind="stable")[:, :k]
                self.reason_columns[rows] = order
                self.reason_impacts[rows] = np.take_along_axis(contrib, order, axis=1)
        # numpy columns, not Python lists: millions of small objects would slow every GC pass
        self._values = {c: portrait.frame[c].to_numpy() for c in scorer.columns}

    def _contributions(self, x: np.ndarray, num_threads: int) -> tuple[np.ndarray, np.ndarray]:
        """PDs and per-feature contributions (mean over boosters, log-odds) of the rows of x."""
        m = self.scorer.model
        contribs = [b.predict(x, num_iteration=k, num_threads=num_threads, pred_contrib=True)
                    for b, k in zip(m.boosters_, m.n_trees_)]
        raw = np.mean([1.0 / (1.0 + np.exp(-c.sum(axis=1))) for c in contribs], axis=0)
        return m.calibrator_.predict(raw), np.mean(contribs, axis=0)[:, :-1]

    def score(self, i: int, n_reasons: int = 4) -> tuple[float, list[Reason]]:
        if self.pds is not None and n_reasons <= self.reason_columns.shape[1]:
            pd_, columns, impacts = float(self.pds[i]), self.reason_columns[i], self.reason_impacts[i]
        else:
            x = self.matrix[i:i + 1] if self.matrix is not None else self.scorer.matrix(self.portrait.row(i))
            pds, contrib = self._contributions(x, num_threads=1)
            columns = np.argsort(-contrib[0], kind="stable")
            pd_, impacts = float(pds[0]), contrib[0][columns]
        cols = self.scorer.columns
        why = []
        for j, impact in zip(columns[:n_reasons], impacts[:n_reasons]):
            if impact > 0:
                value = self._values[cols[j]][i]
                value = value.item() if isinstance(value, np.generic) else value
                why.append(self._reason(cols[j], value, float(impact), "log-odds", self._reason_text(cols[j], value)))
        return pd_, why


def _challenger_pds(models: Models, portrait: Portrait) -> np.ndarray | None:
    if models.challenger is None:
        return None
    from fieldbank.risk.scoring import FastScorer

    frame = portrait.frame
    try:
        if models.challenger_scorer is not None:  # LightGBM: FastScorer's chunks
            chunks = [models.challenger_scorer.predict_pd(frame.iloc[s:s + FastScorer.MAX_ROWS])
                      for s in range(0, len(frame), FastScorer.MAX_ROWS)]
            pds = np.concatenate(chunks) if chunks else np.empty(0)
        else:
            pds = np.asarray(models.challenger.predict_pd(frame), dtype=np.float64)
    except Exception:
        log.exception("decision sources: the challenger %s cannot score the portrait as of %s; no shadow scores",
                      models.challenger_ref, portrait.as_of)
        return None
    assert len(pds) == len(portrait), (len(pds), len(portrait))
    return pds


@dataclass(frozen=True)
class Snapshot:
    portrait: Portrait | None
    parties: Parties | None
    models: Models | None
    champion_pointer: tuple[str, int] | None
    row_scorer: RowScorer | None = None
    problems: dict[str, str] = field(default_factory=dict)  # source -> what is wrong


def _freeze_gc() -> None:
    """Move what is alive now (the snapshot: portrait, parties, models) out of the garbage
    collector's sight: it lives for the process, and a full collection walking millions of
    its objects is a tail-latency pause on every decision in flight."""
    gc.collect()
    gc.freeze()


class Sources:
    def __init__(self, data_dir: Path, lake_dir: Path, models_dir: Path, challenger_key: str | None,
                 check_seconds: float = 5.0) -> None:
        self.data_dir, self.lake_dir, self.models_dir = Path(data_dir), Path(lake_dir), Path(models_dir)
        self.challenger_key = challenger_key
        self.check_seconds = check_seconds
        self._lock = threading.Lock()
        self._loading = False
        self._next_check = 0.0
        self._snapshot = self._load(None)
        _freeze_gc()

    def current(self) -> Snapshot:
        return self._snapshot

    def _newest(self) -> tuple[dt.date | None, tuple[str, int] | None]:
        day = None
        if (self.data_dir / "portraits").is_dir():
            from fieldbank.risk.scoring import newest_portrait_date

            try:
                day = newest_portrait_date(self.data_dir)
            except LookupError:
                day = None
        try:
            pointer = registry.get_champion(self.models_dir)
        except (OSError, ValueError, KeyError):
            pointer = None
        return day, pointer

    def _load(self, previous: Snapshot | None) -> Snapshot:
        problems: dict[str, str] = {}
        day, pointer = self._newest()
        portrait = previous.portrait if previous else None
        parties = previous.parties if previous else None
        if day is None:
            portrait = None
            problems["portrait"] = f"no portraits under {self.data_dir / 'portraits'}"
        elif portrait is None or portrait.as_of != day:
            try:
                portrait = Portrait.load(self.data_dir, day)
                parties = None  # a new portrait means new lake data: reload the parties too
            except Exception as e:  # a broken file must not take the service down
                problems["portrait"] = f"cannot load the portrait as of {day}: {e}"
                portrait = None
        if parties is None:
            try:
                parties = Parties.load(self.lake_dir)
            except Exception as e:
                problems["parties"] = f"cannot read the lake's parties table: {e}"
        models = previous.models if previous and previous.champion_pointer == pointer and previous.models else None
        if models is None:
            try:
                models = Models.load(self.models_dir, self.challenger_key)
            except Exception as e:  # missing or corrupt model files
                problems["model"] = f"cannot load the champion model from {self.models_dir}: {type(e).__name__}: {e}"
        row_scorer = None
        if portrait is not None and models is not None:
            reuse = previous is not None and previous.row_scorer is not None \
                and previous.row_scorer.portrait is portrait and previous.models is models
            try:
                row_scorer = previous.row_scorer if reuse else RowScorer(models.scorer, portrait, models)
            except Exception as e:  # a portrait that lacks the model's columns
                problems["model"] = f"the champion cannot score the portrait as of {portrait.as_of}: {type(e).__name__}: {e}"
        for source, message in problems.items():
            log.error("decision sources: %s: %s", source, message)
        return Snapshot(portrait, parties, models, pointer, row_scorer, problems)

    def maybe_refresh(self) -> None:
        """Throttled: at most one look at the folders every check_seconds, reload off-thread."""
        now = time.monotonic()
        if now < self._next_check:
            return
        with self._lock:
            if now < self._next_check or self._loading:
                return
            self._next_check = now + self.check_seconds
            snap = self._snapshot
            day, pointer = self._newest()
            stale = (day != (snap.portrait.as_of if snap.portrait else None) or pointer != snap.champion_pointer
                     or bool(snap.problems))
            if not stale:
                return
            self._loading = True
        threading.Thread(target=self._reload, name="decision-sources-reload", daemon=True).start()

    def _reload(self) -> None:
        try:
            self._snapshot = self._load(self._snapshot)
            _freeze_gc()
        finally:
            with self._lock:
                self._loading = False

    def reload_now(self) -> Snapshot:
        """Synchronous reload (tests, CLI)."""
        self._snapshot = self._load(self._snapshot)
        return self._snapshot
