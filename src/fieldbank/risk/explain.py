"""Reason codes: the features that pushed a party's risk up, in plain language.

* LightGBM: TreeSHAP contributions to the log-odds of default (LightGBM's own `pred_contrib`).
  The contributions plus the bias add up to the model's raw log-odds, so the reasons are an
  exact split of the score, not an approximation.
* Scorecard: points. Per feature, the points the party lost against the best bin of that
  feature (the classic adverse-action rule); the most points lost come first.

The text comes from the feature catalog, so a reason reads the same in the model report,
the decision letter and the ops screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from fieldbank.risk.models import SCORECARD_PDO, LgbmPD, ScorecardPD

N_REASONS = 4
MAX_BATCH_ROWS = 100_000  # explanations are per decision, not a batch job


@dataclass(frozen=True)
class Reason:
    feature: str
    value: object
    impact: float  # LightGBM: + log-odds of default; scorecard: points lost (both > 0 = riskier)
    unit: str  # "log-odds" or "points"
    text: str


@lru_cache(maxsize=1)
def _catalog() -> dict:
    from fieldbank.portrait.catalog import catalog

    return {f.name: f for f in catalog()}


def format_value(feature: str, value: object) -> str:
    f = _catalog().get(feature)
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "no data"
    if f is None:
        return str(value)
    if f.unit.startswith("minor units") and isinstance(value, (int, float, np.integer, np.floating)):
        return f"{float(value) / 100:,.2f}"
    if f.unit in ("ratio",) and isinstance(value, (float, np.floating)):
        return f"{float(value):.2f}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):,.1f}"
    return str(value)


def reason_text(feature: str, value: object) -> str:
    f = _catalog().get(feature)
    meaning = f.description if f is not None else feature.replace("_", " ")
    unit = "" if f is None or f.unit in ("ratio", "category", "flag (0/1)", "count") or f.unit.startswith("minor") else f" {f.unit}"
    return f"{meaning}: {format_value(feature, value)}{unit if format_value(feature, value) != 'no data' else ''}"


def lgbm_contributions(model: LgbmPD, rows: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """(per-feature log-odds contributions, bias) averaged over the model's boosters."""
    assert len(rows) <= MAX_BATCH_ROWS
    frame = model.spec.frame(rows)
    contrib = np.mean([b.predict(frame, num_iteration=n, pred_contrib=True)
                       for b, n in zip(model.boosters_, model.n_trees_)], axis=0)
    return pd.DataFrame(contrib[:, :-1], columns=model.spec.columns, index=rows.index), contrib[:, -1]


def lgbm_reasons(model: LgbmPD, rows: pd.DataFrame, n: int = N_REASONS) -> list[list[Reason]]:
    contrib, _ = lgbm_contributions(model, rows)
    out = []
    for i, idx in enumerate(rows.index):
        c = contrib.loc[idx]
        top = c[c > 0].sort_values(ascending=False).head(n)
        out.append([Reason(f, rows.at[idx, f], float(v), "log-odds", reason_text(f, rows.at[idx, f]))
                    for f, v in top.items()])
    return out


def scorecard_points_lost(model: ScorecardPD, rows: pd.DataFrame) -> pd.DataFrame:
    """Per feature, points below the feature's best bin (>= 0); one column per feature."""
    sc = model.scorecard_
    bp = sc.binning_process_
    frame = model._frame(rows)
    woe = bp.transform(frame, metric="woe")
    coef = dict(zip(woe.columns, sc.estimator_.coef_[0]))
    factor = SCORECARD_PDO / math.log(2)
    lost = {}
    for var in woe.columns:
        table = bp.get_binned_variable(var).binning_table.build()
        bin_woe = pd.to_numeric(table["WoE"].iloc[:-1], errors="coerce").fillna(0.0).to_numpy()  # drop Totals
        # Contribution to the log-odds of bad is coef * woe; the best bin has the smallest.
        best = float(np.min(coef[var] * np.append(bin_woe, 0.0)))
        lost[var] = factor * (coef[var] * woe[var].to_numpy() - best)
    return pd.DataFrame(lost, index=rows.index)


def scorecard_reasons(model: ScorecardPD, rows: pd.DataFrame, n: int = N_REASONS) -> list[list[Reason]]:
    lost = scorecard_points_lost(model, rows)
    out = []
    for idx in rows.index:
        c = lost.loc[idx]
        top = c[c > 1e-9].sort_values(ascending=False).head(n)
        out.append([Reason(f, rows.at[idx, f], float(v), "points", reason_text(f, rows.at[idx, f]))
                    for f, v in top.items()])
    return out


def reasons(model: LgbmPD | ScorecardPD, rows: pd.DataFrame, n: int = N_REASONS) -> list[list[Reason]]:
    """The top `n` reasons per row for either model family."""
    if isinstance(model, LgbmPD):
        return lgbm_reasons(model, rows, n)
    return scorecard_reasons(model, rows, n)
