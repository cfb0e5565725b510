from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def make_credit_table(n_rows: int = 1200, seed: int = 0) -> pd.DataFrame:
    """Applicants whose risk rises with days_late, falls with income, and depends on region."""
    rng = np.random.default_rng(seed)
    days_late = rng.gamma(1.5, 6.0, n_rows)
    income = rng.lognormal(10, 0.5, n_rows)
    region = rng.choice(["north", "south", "east"], n_rows, p=[0.5, 0.3, 0.2])
    noise = rng.normal(size=n_rows)
    logit = -2.0 + 0.12 * days_late - 0.9 * (np.log(income) - 10) + np.where(region == "east", 0.8, 0.0)
    bad = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    applied = pd.Timestamp("2023-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.integers(0, 700, n_rows)), unit="D")
    return pd.DataFrame({"applicant_id": [f"A{i:05d}" for i in range(n_rows)], "days_late": days_late,
                         "income": income, "region": region, "noise": noise, "applied_at": applied.astype(str),
                         "outcome": np.where(bad == 1, "bad", "good")})


@pytest.fixture
def credit_csv(tmp_path: Path) -> Path:
    path = tmp_path / "applicants.csv"
    make_credit_table().to_csv(path, index=False)
    return path
