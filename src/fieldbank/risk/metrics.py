"""Discrimination and calibration metrics for a PD model (1 = bad)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score, roc_curve

ECE_BINS = 10


def ks_statistic(y_bad: np.ndarray, pd_: np.ndarray) -> float:
    """Kolmogorov-Smirnov: the largest gap between the score distributions of bads and goods."""
    fpr, tpr, _ = roc_curve(y_bad, pd_)
    return float(np.max(tpr - fpr))


def expected_calibration_error(y_bad: np.ndarray, pd_: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Count-weighted mean |observed bad rate - mean predicted PD| over equal-frequency bins.

    Equal-frequency bins because credit PDs crowd near zero: equal-width bins would put
    almost every borrower in the first bin and hide miscalibration where it matters.
    """
    table = calibration_table(y_bad, pd_, n_bins)
    n = sum(row["count"] for row in table)
    return float(sum(row["count"] * abs(row["observed_bad_rate"] - row["mean_pd"]) for row in table) / n)


def calibration_table(y_bad: np.ndarray, pd_: np.ndarray, n_bins: int = ECE_BINS) -> list[dict]:
    """Per equal-frequency bin of predicted PD: count, mean PD, observed bad rate."""
    assert len(y_bad) == len(pd_) > 0
    order = np.argsort(pd_, kind="stable")
    rows = []
    for idx in np.array_split(order, min(n_bins, len(order))):
        if len(idx) == 0:
            continue
        rows.append(
            {
                "count": int(len(idx)),
                "mean_pd": float(np.mean(pd_[idx])),
                "observed_bad_rate": float(np.mean(y_bad[idx])),
            }
        )
    return rows


def score_metrics(y_bad: np.ndarray, pd_: np.ndarray) -> dict[str, float]:
    """AUC, Gini, KS, Brier, log-loss and ECE of predicted PDs against outcomes."""
    y_bad = np.asarray(y_bad, dtype=np.int8)
    pd_ = np.clip(np.asarray(pd_, dtype=np.float64), 1e-6, 1 - 1e-6)
    assert set(np.unique(y_bad)) <= {0, 1}
    auc = float(roc_auc_score(y_bad, pd_))
    return {
        "auc": auc,
        "gini": 2 * auc - 1,
        "ks": ks_statistic(y_bad, pd_),
        "brier": float(brier_score_loss(y_bad, pd_)),
        "log_loss": float(log_loss(y_bad, pd_, labels=[0, 1])),
        "ece": expected_calibration_error(y_bad, pd_),
        "bad_rate": float(np.mean(y_bad)),
        "mean_pd": float(np.mean(pd_)),
        "rows": int(len(y_bad)),
    }
