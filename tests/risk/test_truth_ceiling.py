"""The ceiling reads the simulator's truth PD of the label event, on exactly the model's rows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fieldbank.risk.portrait_training import truth_pd
from fieldbank.simulate.loan_truth import SCHEMA


def _write_truth(folder, rows: list[tuple[str, dt.date, float]]) -> None:
    n = len(rows)
    pq.write_table(pa.table({
        "party_id": [r[0] for r in rows], "loan_id": [f"L{i}" for i in range(n)],
        "month_start": pa.array([pd.Timestamp(r[1], tz="UTC") for r in rows], SCHEMA.field("month_start").type),
        "installments_paid": pa.array(np.zeros(n, np.int16)), "installments_due": pa.array(np.zeros(n, np.int16)),
        "true_pd_90d": pa.array([r[2] / 4 for r in rows], pa.float32()),
        "true_pd_180d": pa.array([r[2] / 2 for r in rows], pa.float32()),
        "true_pd_365d": pa.array([r[2] for r in rows], pa.float32()),
    }, schema=SCHEMA), folder / "loan_pd_monthly.parquet")


def test_values_follow_the_rows_and_the_horizon(tmp_path):
    d1, d2 = dt.date(2024, 1, 1), dt.date(2024, 2, 1)
    _write_truth(tmp_path, [("P1", d1, 0.5), ("P2", d1, 0.25), ("P1", d2, 0.75)])
    rows = pd.DataFrame({"party_id": ["P1", "P1", "P2"], "as_of": [d2, d1, d1]})
    assert np.allclose(truth_pd(tmp_path, rows, 365), [0.75, 0.5, 0.25])
    assert np.allclose(truth_pd(tmp_path, rows, 180), [0.375, 0.25, 0.125])


def test_no_ceiling_for_another_horizon_or_a_row_without_truth(tmp_path):
    d1 = dt.date(2024, 1, 1)
    _write_truth(tmp_path, [("P1", d1, 0.5)])
    assert truth_pd(tmp_path, pd.DataFrame({"party_id": ["P1"], "as_of": [d1]}), 200) is None
    assert truth_pd(tmp_path, pd.DataFrame({"party_id": ["P1", "P9"], "as_of": [d1, d1]}), 365) is None
    assert truth_pd(None, pd.DataFrame({"party_id": ["P1"], "as_of": [d1]}), 365) is None
    assert truth_pd(tmp_path / "missing", pd.DataFrame({"party_id": ["P1"], "as_of": [d1]}), 365) is None
