"""The two model families: a LightGBM champion and an optbinning scorecard challenger.

Both follow scikit-learn's shape: no work in __init__, `fit` learns, learned state ends in
`_`, `predict_pd` returns calibrated probabilities of default (1 = bad).
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from fieldbank.risk.calibration import Calibrator
from fieldbank.risk.features import FeatureSpec

# Scorecard scaling: 600 points at 50:1 good:bad odds, 20 points to double the odds.
SCORECARD_POINTS = 600
SCORECARD_ODDS = 50
SCORECARD_PDO = 20
MAX_FOLDS = 10  # cross-fitted boosters per model
SINGLE_THREAD_ROWS = 50_000


@dataclass(frozen=True)
class LgbmParams:
    """Defaults chosen to be safe on small and large credit tables alike (no per-data-set tuning):
    shallow trees, strong regularisation, and early stopping decides the number of trees."""

    learning_rate: float = 0.02
    num_leaves: int = 7
    min_child_samples: int = 20
    subsample: float = 0.8
    colsample_bytree: float = 0.6
    reg_lambda: float = 5.0
    max_trees: int = 3000
    early_stopping_rounds: int = 200
    cat_smooth: float = 20.0
    num_threads: int = 0  # 0 = automatic: 1 thread for small tables, where OpenMP overhead dominates


class LgbmPD:
    """LightGBM with monotone constraints, early stopping on a validation fold, then calibration."""

    def __init__(self, spec: FeatureSpec, params: LgbmParams = LgbmParams(), seed: int = 0) -> None:
        self.spec = spec
        self.params = params
        self.seed = seed

    def _lgb_params(self) -> dict:
        p = self.params
        return {
            "objective": "binary",
            "learning_rate": p.learning_rate,
            "num_leaves": p.num_leaves,
            "min_child_samples": p.min_child_samples,
            "bagging_fraction": p.subsample,
            "bagging_freq": 1,
            "feature_fraction": p.colsample_bytree,
            "lambda_l2": p.reg_lambda,
            "cat_smooth": p.cat_smooth,
            "min_data_per_group": p.min_child_samples,
            "monotone_constraints": [self.spec.monotone.get(c, 0) for c in self.spec.columns],
            # "advanced" was measured to break a constraint (LightGBM 4.7, portrait data, a
            # -0.00035 step caught by check_monotone); "intermediate" holds and is nearly as tight.
            "monotone_constraints_method": "intermediate",
            "num_threads": p.num_threads,
            "seed": self.seed,
            "deterministic": True,
            "verbosity": -1,
        }

    def fit(self, x_train: pd.DataFrame, y_train: np.ndarray, x_valid: pd.DataFrame, y_valid: np.ndarray) -> "LgbmPD":
        """Train on x_train; stop early and calibrate on x_valid (rows the trees never saw)."""
        return self.fit_folds([(x_train, y_train, x_valid, y_valid)])

    def fit_folds(self, folds: list[tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]]) -> "LgbmPD":
        """One booster per (train, valid) fold, each stopped early on its own valid rows; the
        model's raw score is the boosters' mean, and the calibrator learns from the pooled
        valid-row scores, so every calibration row is one its booster never saw (cross-fitting)."""
        assert 1 <= len(folds) <= MAX_FOLDS
        self.boosters_, self.n_trees_ = [], []
        valid_scores, valid_labels = [], []
        for x_tr, y_tr, x_va, y_va in folds:
            train = lgb.Dataset(self.spec.frame(x_tr), label=y_tr, free_raw_data=False)
            valid = lgb.Dataset(self.spec.frame(x_va), label=y_va, reference=train)
            threads = self.params.num_threads or (1 if len(x_tr) < SINGLE_THREAD_ROWS else os.cpu_count())
            booster = lgb.train(
                {**self._lgb_params(), "num_threads": threads},
                train,
                num_boost_round=self.params.max_trees,
                valid_sets=[valid],
                callbacks=[lgb.early_stopping(self.params.early_stopping_rounds, verbose=False)],
            )
            n_trees = int(booster.best_iteration or booster.current_iteration())
            self.boosters_.append(booster)
            self.n_trees_.append(n_trees)
            valid_scores.append(booster.predict(self.spec.frame(x_va), num_iteration=n_trees))
            valid_labels.append(np.asarray(y_va))
        self.check_monotone(folds[0][0])
        self.calibrator_ = Calibrator().fit(np.concatenate(valid_scores), np.concatenate(valid_labels), seed=self.seed)
        return self

    def predict_raw(self, x: pd.DataFrame) -> np.ndarray:
        frame = self.spec.frame(x)
        return np.mean([b.predict(frame, num_iteration=n) for b, n in zip(self.boosters_, self.n_trees_)], axis=0)

    def predict_pd(self, x: pd.DataFrame) -> np.ndarray:
        return self.calibrator_.predict(self.predict_raw(x))

    def contributions(self, x: pd.DataFrame) -> pd.DataFrame:
        """TreeSHAP contributions to the log-odds of default, one column per feature."""
        frame = self.spec.frame(x)
        contrib = np.mean([b.predict(frame, num_iteration=n, pred_contrib=True)
                           for b, n in zip(self.boosters_, self.n_trees_)], axis=0)
        return pd.DataFrame(contrib[:, :-1], columns=self.spec.columns, index=x.index)

    def check_monotone(self, x: pd.DataFrame, n_rows: int = 200, n_steps: int = 12) -> None:
        """Raise if any monotone constraint is violated: sweep each constrained feature over its
        range on sample rows and check the raw score moves only in the promised direction."""
        if not self.spec.monotone:
            return
        sample = x.sample(min(n_rows, len(x)), random_state=self.seed)
        for col, direction in self.spec.monotone.items():
            grid = np.nanquantile(pd.to_numeric(x[col], errors="coerce"), np.linspace(0, 1, n_steps))
            scores = []
            for value in grid:
                probe = sample.copy()
                probe[col] = value
                scores.append(self.predict_raw(probe))
            steps = np.diff(np.vstack(scores), axis=0) * direction
            if np.any(steps < -1e-12):
                raise AssertionError(f"monotone constraint on {col} ({direction:+d}) violated")

    def save(self, folder: Path) -> None:
        for i, (booster, n_trees) in enumerate(zip(self.boosters_, self.n_trees_)):
            booster.save_model(str(folder / f"lgbm_{i}.txt"), num_iteration=n_trees)
        (folder / "lgbm_calibrator.json").write_text(json.dumps(self.calibrator_.to_json(), indent=1))
        (folder / "lgbm_params.json").write_text(json.dumps({**asdict(self.params), "seed": self.seed,
                                                              "n_trees": self.n_trees_}, indent=1))

    @classmethod
    def load(cls, folder: Path, spec: FeatureSpec) -> "LgbmPD":
        meta = json.loads((folder / "lgbm_params.json").read_text())
        n_trees, seed = meta.pop("n_trees"), meta.pop("seed")
        model = cls(spec, LgbmParams(**meta), seed)
        model.boosters_ = [lgb.Booster(model_file=str(folder / f"lgbm_{i}.txt")) for i in range(len(n_trees))]
        model.n_trees_ = n_trees
        model.calibrator_ = Calibrator.from_json(json.loads((folder / "lgbm_calibrator.json").read_text()))
        return model


class ScorecardPD:
    """optbinning WoE binning + logistic regression, scaled to points (higher = safer)."""

    def __init__(self, spec: FeatureSpec, seed: int = 0) -> None:
        self.spec = spec
        self.seed = seed

    def _frame(self, x: pd.DataFrame) -> pd.DataFrame:
        # optbinning wants plain object columns for categoricals.
        frame = self.spec.frame(x)
        for col in self.spec.categorical:
            frame[col] = frame[col].astype(object).where(frame[col].notna(), "__missing__")
        return frame

    def fit(self, x_train: pd.DataFrame, y_train: np.ndarray, x_valid: pd.DataFrame, y_valid: np.ndarray) -> "ScorecardPD":
        from optbinning import BinningProcess, Scorecard
        from sklearn.linear_model import LogisticRegression

        monotonic = {c: {"monotonic_trend": "ascending" if d > 0 else "descending"} for c, d in self.spec.monotone.items()}
        binning = BinningProcess(
            self.spec.columns,
            categorical_variables=list(self.spec.categorical),
            binning_fit_params=monotonic or None,
        )
        self.scorecard_ = Scorecard(
            binning_process=binning,
            estimator=LogisticRegression(max_iter=2000, random_state=self.seed),
            scaling_method="pdo_odds",
            scaling_method_params={"pdo": SCORECARD_PDO, "odds": SCORECARD_ODDS, "scorecard_points": SCORECARD_POINTS},
        )
        self.scorecard_.fit(self._frame(x_train), np.asarray(y_train))
        self.calibrator_ = Calibrator().fit(self.predict_raw(x_valid), y_valid, seed=self.seed)
        return self

    def points(self, x: pd.DataFrame) -> np.ndarray:
        return self.scorecard_.score(self._frame(x))

    def predict_raw(self, x: pd.DataFrame) -> np.ndarray:
        return self.scorecard_.predict_proba(self._frame(x))[:, 1]

    def predict_pd(self, x: pd.DataFrame) -> np.ndarray:
        return self.calibrator_.predict(self.predict_raw(x))

    def save(self, folder: Path) -> None:
        with open(folder / "scorecard.pkl", "wb") as f:
            pickle.dump(self.scorecard_, f)
        (folder / "scorecard_calibrator.json").write_text(json.dumps(self.calibrator_.to_json(), indent=1))
        self.scorecard_.table(style="detailed").to_csv(folder / "scorecard_table.csv", index=False)

    @classmethod
    def load(cls, folder: Path, spec: FeatureSpec) -> "ScorecardPD":
        model = cls(spec)
        with open(folder / "scorecard.pkl", "rb") as f:
            model.scorecard_ = pickle.load(f)  # noqa: S301 - our own registry file
        model.calibrator_ = Calibrator.from_json(json.loads((folder / "scorecard_calibrator.json").read_text()))
        return model
