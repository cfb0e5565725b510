"""Every file the simulator writes is exactly the contract's schema and obeys its rules."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from fieldbank import contract
from fieldbank.simulate.params import PAYMENT_TERMS_DAYS, period_end


@pytest.mark.parametrize("name", contract.TABLE_ORDER)
def test_every_file_has_the_contract_schema(small_run, name):
    files = sorted((small_run.raw / name).glob("part-*.parquet"))
    assert files, f"no files for {name}"
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(len(files))]
    for f in files:
        assert pq.read_schema(f).equals(contract.TABLES[name].schema), f"{f}: schema differs from the contract"


@pytest.mark.parametrize("name", contract.TABLE_ORDER)
def test_every_column_obeys_its_rules(small_run, name):
    t = small_run.table(name)
    spec = contract.TABLES[name]
    assert t.num_rows > 0
    keys = t.column(spec.primary_key)
    assert pc.count_distinct(keys).as_py() == t.num_rows, "primary key not unique"
    parties = small_run.table("parties").column("party_id")
    end = dt.datetime.combine(period_end(small_run.params.start, small_run.params.months), dt.time(),
                              tzinfo=dt.timezone.utc)
    for col in spec.columns:
        values = t.column(col.name)
        if not col.nullable:
            assert values.null_count == 0, f"{name}.{col.name} has nulls"
        if col.allowed is not None:
            assert set(pc.unique(values.drop_null()).to_pylist()) <= set(col.allowed), f"{name}.{col.name}"
        if col.min_value is not None and len(values.drop_null()):
            assert pc.min(values).as_py() >= col.min_value, f"{name}.{col.name} below {col.min_value}"
        if col.references is not None:
            assert pc.all(pc.is_in(values.drop_null(), value_set=parties)).as_py(), f"{name}.{col.name} orphan"
        if col.not_before is not None:
            other = t.column(col.not_before)
            ok = pc.greater_equal(values, other).drop_null()
            assert pc.all(ok).as_py() in (True, None), f"{name}.{col.name} < {col.not_before}"
        if col.type == contract.TIMESTAMP and len(values.drop_null()):
            # an invoice issued near the end may fall due after it (a contractual date, <= 60 days)
            limit = end + dt.timedelta(days=max(PAYMENT_TERMS_DAYS)) if (name, col.name) == ("invoices", "due_at") else end
            assert pc.max(values).as_py() < limit, f"{name}.{col.name} after the simulated period"
            assert pc.min(values).as_py().year >= contract.MIN_EVENT_YEAR


def test_event_timestamps_are_inside_the_period(small_run):
    start = dt.datetime.combine(small_run.params.start, dt.time(), tzinfo=dt.timezone.utc)
    for name, col in (("payments", "ts"), ("invoices", "issued_at"), ("bills", "due_at"), ("loans", "opened_at")):
        values = small_run.table(name).column(col)
        assert pc.min(values).as_py() >= start, f"{name}.{col} before the period"


def test_truth_tables_have_their_documented_shape(small_run):
    n, months = small_run.params.parties, small_run.params.months
    pd_monthly = small_run.truth_table("pd_monthly")
    assert pd_monthly.num_rows == n * months
    assert pc.min(pd_monthly.column("true_pd_12m")).as_py() >= 0
    assert pc.max(pd_monthly.column("true_pd_12m")).as_py() <= 1
    cf = small_run.truth_table("counterfactual")
    assert cf.num_rows == n * months  # every party and every month start has a label
    assert cf.column("would_default_12m").null_count == 0
    traits = small_run.truth_table("traits")
    assert traits.num_rows == n
    assert set(traits.column_names) >= {"party_id", "discipline", "volatility", "management_quality"}
    assert pa.compute.count_distinct(pd_monthly.column("month_start")).as_py() == months
