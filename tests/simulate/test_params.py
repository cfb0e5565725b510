"""Parameter validation: a bad size or period is refused with a message naming it."""

from __future__ import annotations

import datetime as dt

import pytest

from fieldbank.simulate.params import SimParams, month_of_year, month_starts_us, period_end


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"parties": 10}, "parties=10"),
    ({"months": 0}, "months=0"),
    ({"start": dt.date(2023, 1, 15)}, "start=2023-01-15"),
    ({"start": dt.date(2026, 1, 1), "months": 12}, "must be in the past"),
    ({"parties": 5_000_000, "months": 24}, "parties=5000000"),
    ({"pd_paths": 0}, "pd_paths=0"),
])
def test_bad_parameters_are_refused_by_name(kwargs, named):
    with pytest.raises(ValueError, match=named):
        SimParams(**kwargs)


def test_calendar():
    assert period_end(dt.date(2023, 11, 1), 3) == dt.date(2024, 2, 1)
    starts = month_starts_us(dt.date(2024, 1, 1), 2)
    assert len(starts) == 3 and (starts[1] - starts[0]) == 31 * 86_400_000_000
    assert list(month_of_year(dt.date(2023, 11, 1), 3)) == [10, 11, 0]
