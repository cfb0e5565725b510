"""Probability calibration: isotonic or Platt, chosen on a holdout by cross-fitted log-loss."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

PD_FLOOR = 1e-4  # no borrower is ever certain to repay or to default
PD_CEILING = 1 - 1e-4


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


@dataclass
class Calibrator:
    """Maps a raw model score in [0, 1] to a calibrated PD. `fit` picks the method.

    Learned state ends in `_` (scikit-learn style); `to_json`/`from_json` make it a plain file.
    """

    method_: str = ""
    platt_coef_: float = 0.0
    platt_intercept_: float = 0.0
    iso_x_: list[float] = field(default_factory=list)
    iso_y_: list[float] = field(default_factory=list)
    holdout_log_loss_: dict[str, float] = field(default_factory=dict)

    def fit(self, raw_score: np.ndarray, y_bad: np.ndarray, seed: int = 0) -> "Calibrator":
        raw_score = np.asarray(raw_score, dtype=np.float64)
        y_bad = np.asarray(y_bad, dtype=np.int8)
        assert len(raw_score) == len(y_bad) and len(np.unique(y_bad)) == 2, "holdout needs goods and bads"
        # Cross-fit on two halves so the choice is judged on rows the calibrator did not see.
        rng = np.random.default_rng(seed)
        half = rng.permutation(len(y_bad)) % 2 == 0
        losses: dict[str, list[float]] = {"isotonic": [], "platt": []}
        for a, b in ((half, ~half), (~half, half)):
            if len(np.unique(y_bad[a])) < 2 or len(np.unique(y_bad[b])) < 2:
                continue
            for method in losses:
                fitted = Calibrator()._fit_method(method, raw_score[a], y_bad[a])
                losses[method].append(log_loss(y_bad[b], fitted.predict(raw_score[b]), labels=[0, 1]))
        self.holdout_log_loss_ = {m: float(np.mean(v)) for m, v in losses.items() if v}
        best = min(self.holdout_log_loss_, key=self.holdout_log_loss_.get) if self.holdout_log_loss_ else "platt"
        self._fit_method(best, raw_score, y_bad)
        if self.method_ == "platt" and self.platt_coef_ <= 0:
            # A few bads in the holdout can tilt Platt's slope negative, which would turn the
            # model's ranking upside down; isotonic is non-decreasing by construction.
            self._fit_method("isotonic", raw_score, y_bad)
        return self

    def _fit_method(self, method: str, raw_score: np.ndarray, y_bad: np.ndarray) -> "Calibrator":
        self.method_ = method
        if method == "platt":
            lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw_score).reshape(-1, 1), y_bad)
            self.platt_coef_ = float(lr.coef_[0, 0])
            self.platt_intercept_ = float(lr.intercept_[0])
        else:
            iso = IsotonicRegression(y_min=PD_FLOOR, y_max=PD_CEILING, out_of_bounds="clip")
            iso.fit(raw_score, y_bad)
            self.iso_x_ = [float(v) for v in iso.X_thresholds_]
            self.iso_y_ = [float(v) for v in iso.y_thresholds_]
        return self

    def predict(self, raw_score: np.ndarray) -> np.ndarray:
        raw_score = np.asarray(raw_score, dtype=np.float64)
        if self.method_ == "platt":
            z = self.platt_coef_ * _logit(raw_score) + self.platt_intercept_
            pd_ = 1 / (1 + np.exp(-z))
        elif self.method_ == "isotonic":
            pd_ = np.interp(raw_score, self.iso_x_, self.iso_y_)
        else:
            raise RuntimeError("Calibrator.predict before fit")
        return np.clip(pd_, PD_FLOOR, PD_CEILING)

    def to_json(self) -> dict:
        return {
            "method": self.method_,
            "platt_coef": self.platt_coef_,
            "platt_intercept": self.platt_intercept_,
            "iso_x": self.iso_x_,
            "iso_y": self.iso_y_,
            "holdout_log_loss": self.holdout_log_loss_,
        }

    @classmethod
    def from_json(cls, d: dict) -> "Calibrator":
        return cls(d["method"], d["platt_coef"], d["platt_intercept"], d["iso_x"], d["iso_y"], d["holdout_log_loss"])
