"""The modelling table: portraits at several as_of dates x the 12-month default label.

One row per (party, as_of D) for the parties in the population at D:

* Population (`open_at_d`, the default): the party had a loan *open at D*: opened before D
  and not closed before D, from any lender (fieldbank or past lenders in the lake). Parties
  already in default at D (a loan with defaulted_at < D that is still open at D) are left
  out: their outcome is known, there is nothing to predict. The alternative `exposed` is the
  feature-quality report's rule (a loan open at some time in [D, D + horizon)), which also
  covers parties who borrow after D, as applicants do.
* Label: 1 if any loan of the party reached 90+ days past due (`defaulted_at`) in
  [D, D + horizon_days), else 0.
* Censoring: a date D is labelled only when D + horizon_days <= the end of the observed
  period (the day after the lake's last payment, or `observed_until`). Later dates have
  unlabelled rows; they are excluded from training and validation, and listed as such.
* Time split: the newest labelled date is the out-of-time (OOT) validation set; training
  uses the dates whose outcome window closed by then (D + horizon <= D_oot, see `split`).
  A party can appear at several dates (one row per date).

Features are the portrait's columns exactly as written by the portrait stage (point-in-time:
only events before D). Missing portraits are computed with the portrait stage's API.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fieldbank.lake.read import payment_days
from fieldbank.labels import DEFAULT_HORIZON_DAYS, POPULATIONS, default_labels
from fieldbank.portrait.pipeline import portrait_path

MAX_AS_OF_DATES = 120  # ten years of monthly dates; more is a mistake
KEY_COLUMNS = ("party_id", "as_of")


@dataclass
class ModellingTable:
    frame: pd.DataFrame  # party_id, as_of (date), label, then the portrait's feature columns
    features: list[str]
    labelled_dates: list[dt.date]
    unlabelled_dates: list[dt.date]  # D + horizon beyond the observed period: excluded
    observed_until: dt.date
    horizon_days: int
    population: str
    fingerprint: str  # sha256 over the portrait files used (name + bytes)
    portrait_files: list[str] = field(default_factory=list)

    @property
    def oot_date(self) -> dt.date:
        return self.labelled_dates[-1]

    def split(self) -> tuple[pd.DataFrame, pd.DataFrame, str]:
        """(train, oot, method). OOT is the newest labelled date D_oot; training uses only the
        dates D with D + horizon <= D_oot (an embargo), so every training outcome was known
        before the OOT date, as it would be for a bank training at D_oot. Labelled dates in
        between are left unused. Why not simply "all older dates": the same party appears at
        several dates and its label windows overlap, so a model can memorise a party's coming
        default from a training row and "predict" it on the OOT row (measured: OOT AUC above
        the simulator's true-PD ceiling without the embargo)."""
        if len(self.labelled_dates) < 2:
            raise ValueError(f"need at least 2 labelled as_of dates for an out-of-time split, have "
                             f"{[d.isoformat() for d in self.labelled_dates]}")
        embargo_end = self.oot_date - dt.timedelta(days=self.horizon_days)
        train = self.frame[self.frame["as_of"] <= embargo_end]
        oot = self.frame[self.frame["as_of"] == self.oot_date]
        if train.empty:
            raise ValueError(
                f"out-of-time date {self.oot_date} with a {self.horizon_days}-day label needs training dates on or "
                f"before {embargo_end} (their outcomes must be known by {self.oot_date}); add earlier as_of dates, "
                f"a longer history, or use a shorter --horizon-days")
        unused = sorted({d for d in self.frame["as_of"] if embargo_end < d < self.oot_date})
        method = (f"embargo: training as_of <= {embargo_end} (outcome windows closed by the OOT date {self.oot_date})"
                  + (f"; {len(unused)} labelled date(s) in between unused" if unused else ""))
        assert train["as_of"].max() + dt.timedelta(days=self.horizon_days) <= self.oot_date
        return train.reset_index(drop=True), oot.reset_index(drop=True), method

    def describe(self) -> str:
        bad = int(self.frame["label"].sum())
        return (f"{len(self.frame):,} rows ({bad:,} defaults, {bad / max(len(self.frame), 1):.1%}) over "
                f"{len(self.labelled_dates)} labelled as_of dates {self.labelled_dates[0]}..{self.labelled_dates[-1]}; "
                f"population {self.population}, label 90+ DPD within {self.horizon_days} d, observed until "
                f"{self.observed_until}"
                + (f"; unlabelled (excluded): {', '.join(map(str, self.unlabelled_dates))}" if self.unlabelled_dates else ""))


def observed_until_of(lake_dir: Path) -> dt.date:
    """The end of the observed period: the day after the lake's last payment."""
    return payment_days(lake_dir)[1] + dt.timedelta(days=1)


def labels_at(lake_dir: Path, as_of: dt.date, horizon_days: int = DEFAULT_HORIZON_DAYS,
              population: str = "open_at_d") -> pd.DataFrame:
    """(party_id, label) for the population at `as_of` (fieldbank.labels), parties already in
    default at D left out."""
    return default_labels(lake_dir, as_of, horizon_days, population, exclude_in_default=True).to_pandas()


def plan_as_of_dates(lake_dir: Path, horizon_days: int = DEFAULT_HORIZON_DAYS, max_train_dates: int = 10,
                     observed_until: dt.date | None = None) -> list[dt.date]:
    """Default dates for `fieldbank train` without --as-of: the newest month whose outcome
    window is observed (OOT), and up to `max_train_dates` monthly dates up to its embargo,
    starting no earlier than 3 months into the history (the 90-day features need them)."""
    first, last = payment_days(lake_dir)
    observed_until = observed_until or last + dt.timedelta(days=1)
    last_labelled = observed_until - dt.timedelta(days=horizon_days)
    oot = dt.date(last_labelled.year, last_labelled.month, 1)
    embargo = oot - dt.timedelta(days=horizon_days)
    start = monthly_dates(first, first + dt.timedelta(days=120))[-1]  # the 1st of the month ~4 months in
    train = monthly_dates(start, embargo)[-max_train_dates:]
    if not train:
        raise ValueError(f"history {first}..{observed_until} is too short for a {horizon_days}-day label with an "
                         f"embargo (needs about {2 * horizon_days + 120} days); use a shorter --horizon-days")
    return [*train, oot]


def ensure_portraits(data_dir: Path, lake_dir: Path, dates: list[dt.date],
                     progress: Callable[[str], None] | None = None) -> list[Path]:
    """Portrait files for every date; computes the missing ones with the portrait stage's API."""
    missing = [d for d in dates if not portrait_path(data_dir, d).exists()]
    if missing:
        from fieldbank.portrait import connect, execute_portrait, load_inputs, write_portrait

        inp = load_inputs(connect("duckdb"), lake_dir)
        for day in missing:
            if progress:
                progress(f"portrait as of {day}")
            write_portrait(data_dir, day, execute_portrait(inp, day))
    return [portrait_path(data_dir, d) for d in dates]


def fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.parent.name).encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def build_table(data_dir: Path, lake_dir: Path, as_of_dates: list[dt.date],
                horizon_days: int = DEFAULT_HORIZON_DAYS, population: str = "open_at_d",
                observed_until: dt.date | None = None,
                progress: Callable[[str], None] | None = None) -> ModellingTable:
    """The modelling table for `as_of_dates` (see the module docstring for every rule)."""
    dates = sorted(set(as_of_dates))
    if not dates or len(dates) > MAX_AS_OF_DATES:
        raise ValueError(f"as_of dates: give 1..{MAX_AS_OF_DATES}, got {len(dates)}")
    observed_until = observed_until or observed_until_of(lake_dir)
    labelled = [d for d in dates if d + dt.timedelta(days=horizon_days) <= observed_until]
    unlabelled = [d for d in dates if d not in labelled]
    if not labelled:
        raise ValueError(f"no as_of date has its {horizon_days}-day outcome window inside the observed period "
                         f"(ends {observed_until}); the latest usable date is "
                         f"{observed_until - dt.timedelta(days=horizon_days)}")
    paths = ensure_portraits(data_dir, lake_dir, labelled, progress)
    parts = []
    for day, path in zip(labelled, paths):
        if progress:
            progress(f"labels as of {day}")
        portrait = pq.read_table(path).to_pandas()
        lab = labels_at(lake_dir, day, horizon_days, population)
        part = portrait.merge(lab, on="party_id", how="inner", validate="one_to_one")
        part["as_of"] = day
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    features = [c for c in frame.columns if c not in (*KEY_COLUMNS, "label")]
    frame = frame[[*KEY_COLUMNS, "label", *features]]
    frame["label"] = frame["label"].astype(np.int8)
    return ModellingTable(frame, features, labelled, unlabelled, observed_until, horizon_days, population,
                          fingerprint(paths), [str(p) for p in paths])


def monthly_dates(first: dt.date, last: dt.date) -> list[dt.date]:
    """First days of the months from `first` to `last` (both rounded to the 1st)."""
    out, day = [], dt.date(first.year, first.month, 1)
    while day <= last:
        out.append(day)
        day = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return out
