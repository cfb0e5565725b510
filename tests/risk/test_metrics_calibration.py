from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldbank.risk.calibration import PD_CEILING, PD_FLOOR, Calibrator
from fieldbank.risk.metrics import calibration_table, expected_calibration_error, ks_statistic, score_metrics


def test_ks_is_one_for_perfect_separation_and_zero_for_no_signal() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    assert ks_statistic(y, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])) == pytest.approx(1.0)
    assert ks_statistic(y, np.full(6, 0.5)) == pytest.approx(0.0)


def test_ece_by_hand() -> None:
    # Two equal-frequency bins: PD 0.1 with 1 bad in 4 (gap 0.15), PD 0.5 with 2 bads in 4 (gap 0).
    y = np.array([0, 0, 0, 1, 1, 1, 0, 0])
    p = np.array([0.1] * 4 + [0.5] * 4)
    assert [r["count"] for r in calibration_table(y, p, 2)] == [4, 4]
    assert expected_calibration_error(y, p, 2) == pytest.approx((4 * 0.15 + 4 * 0.0) / 8)


def test_score_metrics_rejects_non_binary_labels() -> None:
    with pytest.raises(AssertionError):
        score_metrics(np.array([0, 2, 1]), np.array([0.1, 0.2, 0.3]))


def test_calibration_repairs_a_distorted_score() -> None:
    rng = np.random.default_rng(1)
    true_pd = rng.beta(1, 12, 20_000)
    y = (rng.random(true_pd.size) < true_pd).astype(int)
    distorted = np.sqrt(true_pd)  # right order, wrong scale: PDs far too high
    before = expected_calibration_error(y, distorted)
    cal = Calibrator().fit(distorted, y)
    after = expected_calibration_error(y, cal.predict(distorted))
    assert before > 0.1 and after < 0.01
    assert cal.method_ in ("isotonic", "platt") and set(cal.holdout_log_loss_) == {"isotonic", "platt"}
    again = Calibrator.from_json(cal.to_json())
    np.testing.assert_array_equal(again.predict(distorted), cal.predict(distorted))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(40, 400))
def test_calibrated_pd_is_a_monotone_probability(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    y = (rng.random(n) < score).astype(int)
    y[:2] = [0, 1]  # both classes present
    cal = Calibrator().fit(score, y, seed=seed)
    grid = np.linspace(0, 1, 101)
    pd_ = cal.predict(grid)
    assert np.all((pd_ >= PD_FLOOR) & (pd_ <= PD_CEILING))
    assert np.all(np.diff(pd_) >= -1e-12), "calibration must not reorder borrowers"
