"""Portrait mode of `fieldbank train`: credit models on portraits, with the uplift measured.

Models, all trained on the same training rows and judged on the same out-of-time rows:

* `lgbm_both` (the champion): LightGBM on every portrait feature, traditional and alternative.
* `lgbm_portrait`: LightGBM on the alternative data only (everything but the traditional set).
* `lgbm_traditional`: LightGBM on what a conventional bank sees: declared income, declared
  assets, age and the credit file.
* `scorecard_both`: the optbinning scorecard on every feature, the interpretable challenger.

Early stopping and calibration use a time-based fold: the newest training as_of date (the
trees never see it). Monotone constraints (`MONOTONE`) are set only where the direction is
beyond doubt, and `LgbmPD.check_monotone` verifies them after training.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fieldbank.risk import registry
from fieldbank.risk.dataset import DEFAULT_HORIZON_DAYS, ModellingTable, build_table
from fieldbank.risk.features import FeatureSpec
from fieldbank.risk.metrics import score_metrics
from fieldbank.risk.models import SCORECARD_ODDS, SCORECARD_PDO, SCORECARD_POINTS, LgbmPD, ScorecardPD

# What a conventional lender sees: declared income and assets, age, and the credit file.
TRADITIONAL_FEATURES: tuple[str, ...] = (
    "party_declared_income_minor", "party_declared_assets_minor", "party_age_years",
    "credit_loans_n", "credit_loans_n_365d", "credit_principal_minor_365d", "credit_open_loans_n",
    "credit_open_principal_minor", "credit_lenders_n", "credit_defaults_n", "credit_written_off_n",
    "credit_max_dpd_known_days", "credit_days_since_last_default", "credit_file_age_days",
    "thin_has_credit_file", "thin_new_to_credit",
)

# +1: a higher value can only mean more risk; -1: only less. Only where we are sure; the rest
# (loan sizes, spend levels, growth, network position) the model learns freely.
MONOTONE: dict[str, int] = {
    # paying late, now or before, is never a good sign
    "sc_buyer_days_late_mean_365d": +1, "sc_buyer_days_late_p90_365d": +1, "sc_buyer_late_share_365d": +1,
    "sc_overdue_unpaid_minor": +1,
    "bills_late_share_365d": +1, "bills_days_late_mean_365d": +1, "bills_days_late_max_365d": +1,
    "bills_unpaid_overdue_n": +1, "bills_late_share_90d": +1,
    "credit_defaults_n": +1, "credit_written_off_n": +1, "credit_max_dpd_known_days": +1,
    "hh_income_drop_flag_90d": +1,
    # more income, more regular income, longer history: safer
    "party_tenure_days": -1, "hh_income_minor_365d": -1, "hh_income_months_n_360d": -1,
    "biz_revenue_minor_365d": -1, "biz_active_days_365d": -1,
    "credit_days_since_last_default": -1,
}

MODEL_SETS = {"lgbm_traditional": "traditional", "lgbm_portrait": "portrait", "lgbm_both": "both"}
CHAMPION = "lgbm_both"
CHALLENGER = "scorecard_both"
MODEL_KEYS = ("lgbm_both", "lgbm_portrait", "lgbm_traditional", "scorecard_both")


def feature_sets(features: list[str]) -> dict[str, list[str]]:
    traditional = [f for f in features if f in TRADITIONAL_FEATURES]
    assert len(traditional) == len(TRADITIONAL_FEATURES), "the portrait lacks traditional features"
    return {"traditional": traditional, "portrait": [f for f in features if f not in TRADITIONAL_FEATURES],
            "both": list(features)}


def spec_for(frame: pd.DataFrame, columns: list[str]) -> FeatureSpec:
    return FeatureSpec.infer(frame[columns], {c: d for c, d in MONOTONE.items() if c in columns})


def pd_to_points(pd_: np.ndarray) -> np.ndarray:
    """The scorecard's scale for any PD: 600 points at 50:1 good:bad odds, 20 points per doubling."""
    pd_ = np.clip(np.asarray(pd_, dtype=np.float64), 1e-6, 1 - 1e-6)
    return SCORECARD_POINTS + SCORECARD_PDO / np.log(2) * np.log((1 - pd_) / pd_ / SCORECARD_ODDS)


@dataclass
class PortraitModels:
    """The fitted models of one registry version; `load` reads them back."""

    specs: dict[str, FeatureSpec]
    models: dict[str, LgbmPD | ScorecardPD]
    champion: str = CHAMPION

    def predict_pd(self, frame: pd.DataFrame, key: str | None = None) -> np.ndarray:
        return self.models[key or self.champion].predict_pd(frame)

    def save(self, folder: Path) -> None:
        for key, model in self.models.items():
            sub = folder / key
            sub.mkdir()
            (sub / "features.json").write_text(json.dumps(self.specs[key].to_json(), indent=1))
            model.save(sub)
        (folder / "portrait_models.json").write_text(json.dumps(
            {"champion": self.champion, "models": {k: type(m).__name__ for k, m in self.models.items()}}, indent=1))

    @classmethod
    def load(cls, folder: Path) -> "PortraitModels":
        index = json.loads((Path(folder) / "portrait_models.json").read_text())
        specs, models = {}, {}
        for key, kind in index["models"].items():
            sub = Path(folder) / key
            specs[key] = FeatureSpec.from_json(json.loads((sub / "features.json").read_text()))
            models[key] = (LgbmPD if kind == "LgbmPD" else ScorecardPD).load(sub, specs[key])
        return cls(specs, models, index["champion"])


@dataclass
class TrainingResult:
    folder: Path
    table: ModellingTable
    metrics: dict  # model -> {"train": {...}, "oot": {...}}
    uplift: list[dict]
    truth_auc_oot: float | None
    seconds: float
    report_path: Path | None = None
    extras: dict = field(default_factory=dict)
    models: PortraitModels | None = None


def truth_pd(truth_dir: Path | None, rows: pd.DataFrame, horizon_days: int) -> np.ndarray | None:
    """The simulator's true PD of each (party, as_of) row's label event, if the ground truth has it.

    `loan_pd_monthly.parquet` holds, for every loan open at a month start, the probability that
    it reaches 90+ DPD in [month start, month start + h days): the label's event, for the label's
    population (labels.py; the past lender gives a party at most one loan). The ceiling needs
    the same horizon and every row: None when the horizon is not one the truth was written for
    or a row has no truth. Used only to measure the ceiling, never as a feature."""
    path = Path(truth_dir) / "loan_pd_monthly.parquet" if truth_dir else None
    column = f"true_pd_{horizon_days}d"
    if path is None or not path.exists() or column not in pq.read_schema(path).names:
        return None
    truth = pd.read_parquet(path, columns=["party_id", "month_start", column])
    truth["as_of"] = pd.to_datetime(truth["month_start"], utc=True).dt.date
    assert not truth.duplicated(["party_id", "as_of"]).any(), "one open loan per party and month start"
    joined = rows[["party_id", "as_of"]].merge(truth[["party_id", "as_of", column]],
                                               on=["party_id", "as_of"], how="left")
    values = joined[column].to_numpy(dtype=np.float64)
    return None if np.isnan(values).any() else values


def _safe_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    if len(np.unique(y)) < 2:
        return {"rows": int(len(y)), "bad_rate": float(np.mean(y)) if len(y) else 0.0, "mean_pd": float(np.mean(p)) if len(p) else 0.0}
    return score_metrics(y, p)


VALID_PARTY_SHARE = 0.25  # parties held out for early stopping and calibration


def inner_split(train: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit, valid) inside the training rows, for early stopping and calibration.

    Party-disjoint first (a random quarter of the parties is held out; the same party's rows
    at neighbouring dates share outcomes, so any overlap would reward memorising parties),
    then time-leaning: of the held-out parties, only the rows of the newer half of the
    training dates are used, so the valid rows look like the next, unseen period."""
    dates = np.sort(train["as_of"].unique())
    newer_half = dates[len(dates) // 2:]
    parties = np.sort(train["party_id"].unique())
    held = set(np.random.default_rng(seed).permutation(parties)[: max(1, int(len(parties) * VALID_PARTY_SHARE))])
    in_held = train["party_id"].isin(held)
    return train[~in_held], train[in_held & train["as_of"].isin(newer_half)]


def fit_models(train: pd.DataFrame, features: list[str], seed: int = 0,
               progress: Callable[[str], None] | None = None) -> PortraitModels:
    """Fit every model; early stopping and calibration on `inner_split`'s valid rows."""
    fit_rows, valid_rows = inner_split(train, seed)
    if fit_rows.empty or len(np.unique(valid_rows["label"])) < 2 or len(np.unique(fit_rows["label"])) < 2:
        raise ValueError(f"too few defaults to train: {int(fit_rows['label'].sum())} in the fitting rows, "
                         f"{int(valid_rows['label'].sum())} in the early-stopping rows; add as_of dates or parties")
    y_fit, y_valid = fit_rows["label"].to_numpy(), valid_rows["label"].to_numpy()
    # A column with no value in the fitting rows carries nothing and breaks binning: left out.
    empty = {f for f in features if fit_rows[f].isna().all()}
    sets = {k: [f for f in v if f not in empty] for k, v in feature_sets(features).items()}
    specs, models = {}, {}
    for key, set_name in MODEL_SETS.items():
        if progress:
            progress(f"LightGBM on {set_name} features")
        specs[key] = spec_for(train, sets[set_name])
        models[key] = LgbmPD(specs[key], seed=seed).fit(fit_rows, y_fit, valid_rows, y_valid)
    if progress:
        progress("scorecard on all features")
    specs[CHALLENGER] = spec_for(train, sets["both"])
    models[CHALLENGER] = ScorecardPD(specs[CHALLENGER], seed=seed).fit(fit_rows, y_fit, valid_rows, y_valid)
    return PortraitModels(specs, models)


def train_on_portraits(settings, as_of_dates: list[dt.date] | None = None, name: str = "portrait", seed: int = 0,
                       horizon_days: int = DEFAULT_HORIZON_DAYS, population: str = "open_at_d",
                       observed_until: dt.date | None = None,
                       progress: Callable[[str], None] | None = None) -> TrainingResult:
    """Build the modelling table, fit, validate out of time, write the report, register.
    Without `as_of_dates`, the dates are planned from the lake (`plan_as_of_dates`)."""
    from fieldbank.risk.dataset import plan_as_of_dates
    from fieldbank.risk.report import ReportInputs, render_report

    started = time.perf_counter()
    if not as_of_dates:
        as_of_dates = plan_as_of_dates(settings.lake_dir, horizon_days, observed_until=observed_until)
    table = build_table(settings.data_dir, settings.lake_dir, as_of_dates, horizon_days, population,
                        observed_until, progress)
    train, oot, split_method = table.split()
    if len(np.unique(oot["label"])) < 2:
        raise ValueError(f"the out-of-time date {table.oot_date} has {int(oot['label'].sum())} defaults among "
                         f"{len(oot)} rows: cannot validate; add or move as_of dates")
    fit_started = time.perf_counter()
    models = fit_models(train, table.features, seed, progress)
    fit_seconds = time.perf_counter() - fit_started
    if progress:
        progress("validating")
    y_train, y_oot = train["label"].to_numpy(), oot["label"].to_numpy()
    preds = {k: (models.predict_pd(train, k), models.predict_pd(oot, k)) for k in MODEL_KEYS}
    metrics = {k: {"train": _safe_metrics(y_train, p_tr), "oot": _safe_metrics(y_oot, p_oot)}
               for k, (p_tr, p_oot) in preds.items()}
    true_oot = truth_pd(settings.truth_dir, oot, horizon_days)
    truth_auc = score_metrics(y_oot, true_oot)["auc"] if true_oot is not None else None
    trad_auc = metrics["lgbm_traditional"]["oot"]["auc"]
    uplift = [{"model": k, "features": MODEL_SETS[k], "n_features": len(models.specs[k].columns),
               "oot_auc": metrics[k]["oot"]["auc"], "oot_ks": metrics[k]["oot"]["ks"],
               "oot_ece": metrics[k]["oot"]["ece"], "auc_minus_traditional": metrics[k]["oot"]["auc"] - trad_auc}
              for k in ("lgbm_traditional", "lgbm_portrait", "lgbm_both")]
    if truth_auc is not None:
        uplift.append({"model": "simulator_true_pd", "features": "ground truth (reference ceiling)", "n_features": 0,
                       "oot_auc": truth_auc, "oot_ks": score_metrics(y_oot, true_oot)["ks"],
                       "oot_ece": score_metrics(y_oot, true_oot)["ece"], "auc_minus_traditional": truth_auc - trad_auc})
    report_inputs = ReportInputs(name=name, train=train, oot=oot, preds=preds, metrics=metrics, uplift=uplift,
                                 truth_oot=true_oot, models=models, table=table, split=split_method)
    summary = {k: {m: {"mean": v, "sd": 0.0} for m, v in metrics[k]["oot"].items()} for k in MODEL_KEYS}
    metrics_json = {
        "validation": f"out-of-time: trained on as_of {train['as_of'].min()}..{train['as_of'].max()} "
                      f"({len(train):,} rows), validated on {table.oot_date} ({len(oot):,} rows); {split_method}",
        "split": split_method,
        "summary": summary, "train": {k: v["train"] for k, v in metrics.items()},
        "oot": {k: v["oot"] for k, v in metrics.items()}, "uplift": uplift, "truth_auc_oot": truth_auc,
        "rows": int(len(table.frame)), "bad_rate": float(table.frame["label"].mean()),
        "fit_seconds": fit_seconds,
    }
    metadata = {
        "mode": "portrait", "champion_model": CHAMPION, "challenger_model": CHALLENGER,
        "features": {k: models.specs[k].columns for k in MODEL_KEYS}, "monotone": MONOTONE,
        "traditional_features": list(TRADITIONAL_FEATURES),
        "split": split_method,
        "training_window": {"as_of": sorted({d.isoformat() for d in train["as_of"]}),
                            "oot_as_of": table.oot_date.isoformat(),
                            "unlabelled_excluded": [d.isoformat() for d in table.unlabelled_dates]},
        "label": f"any loan of the party reaches 90+ DPD in [as_of, as_of + {horizon_days} d)",
        "population": table.population, "observed_until": table.observed_until.isoformat(),
        "data_sha256": table.fingerprint, "portrait_files": table.portrait_files, "seed": seed,
    }
    report_name = "report.html"

    def write(folder: Path) -> None:
        models.save(folder)
        (folder / report_name).write_text(render_report(report_inputs), encoding="utf-8")

    if progress:
        progress("registering")
    folder = registry.register(settings.models_dir, name, write, metadata, metrics_json)
    return TrainingResult(folder, table, metrics, uplift, truth_auc, time.perf_counter() - started,
                          folder / report_name, {"fit_seconds": fit_seconds, "split": split_method,
                                                 "train_rows": len(train), "oot_rows": len(oot)}, models)
