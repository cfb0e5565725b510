"""The monitor: month-end states rebuilt from the ledger equal what close-day recorded on those
days; roll rates, vintages and KPIs from them; PSI against hand-computed values."""

from __future__ import annotations

import datetime as dt
import math
import os

import numpy as np
import pytest
from sqlalchemy import select

from fieldbank.bank.close_day import close_days_through
from fieldbank.bank.db import make_engine, migrate, scratch_schema_engine
from fieldbank.bank.service import LOANS, BankService, owed_components
from fieldbank.monitor import drift
from fieldbank.monitor.portfolio import (
    BUCKET_NAMES,
    month_ends,
    portfolio_view,
    read_book,
    states_at,
)

PG_URL = os.environ.get("FIELDBANK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
OPEN = dt.date(2025, 1, 1)


def _make_engine(request: pytest.FixtureRequest, folder):  # noqa: ANN001, ANN202
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{folder / 'bank.db'}")
        request.addfinalizer(eng.dispose)
    else:
        eng, drop = scratch_schema_engine(PG_URL, "fbm")
        request.addfinalizer(drop)
    migrate(eng)
    return eng


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def engine(request: pytest.FixtureRequest, tmp_path):  # noqa: ANN001, ANN201
    return _make_engine(request, tmp_path)


def _recorded_state(engine) -> dict[int, tuple[str, int]]:  # noqa: ANN001
    with engine.connect() as conn:
        rows = conn.execute(select(LOANS.c.loan_id, LOANS.c.status, LOANS.c.bucket, LOANS.c.dpd,
                                   LOANS.c.principal_minor)).all()
    return {r.loan_id: (r.bucket if r.status == "active" else r.status, r.principal_minor) for r in rows}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def book_history(request: pytest.FixtureRequest, tmp_path_factory):  # noqa: ANN001, ANN201
    """Twelve loans with three habits (pay on time, pay every other month, never pay), closed
    through 230 days; the loans' states recorded at every month end on the way. Built once
    per database for the module's tests, which only read it."""
    engine = _make_engine(request, tmp_path_factory.mktemp("monitor"))
    bank = BankService(engine)
    bank.ensure_products()
    habits = {}
    for i in range(12):
        product = ("annuity-12m", "equal-principal-6m", "line-revolving")[i % 3]
        loan = bank.open_line(offer_id=f"o{i}", party_id=f"P{i % 5}", product_code=product, amount_minor=120_000 + i,
                              idempotency_key=f"open-{i}", on=OPEN if i < 8 else dt.date(2025, 3, 10))
        if product == "line-revolving":
            bank.draw(loan_id=loan["loan_id"], amount_minor=50_000, idempotency_key=f"draw-{i}",
                      on=OPEN if i < 8 else dt.date(2025, 3, 10))
        habits[loan["loan_id"]] = ("on_time", "every_other", "never")[i % 4 % 3]
    recorded: dict[dt.date, dict[int, tuple[str, int]]] = {}
    ends = month_ends(OPEN, dt.date(2025, 8, 18))
    for month, end in enumerate(ends):
        close_days_through(engine, end - dt.timedelta(days=1))
        pay_day = end
        with engine.connect() as conn:
            loans = conn.execute(select(LOANS).where(LOANS.c.status == "active")).all()
            owed = {ln.loan_id: sum(owed_components(conn, ln, pay_day).values()) for ln in loans}
        for loan_id, amount in owed.items():
            habit = habits[loan_id]
            if amount > 0 and (habit == "on_time" or (habit == "every_other" and month % 2 == 1)):
                bank.repay(loan_id=loan_id, amount_minor=amount, on=pay_day, idempotency_key=f"pay-{loan_id}-{month}")
        close_days_through(engine, end)
        recorded[end] = _recorded_state(engine)
    return engine, recorded


def test_month_end_states_rebuilt_from_the_ledger_match_close_day(book_history) -> None:  # noqa: ANN001
    engine, recorded = book_history
    with engine.connect() as conn:
        book = read_book(conn)
    seen = set()
    for day, expected in recorded.items():
        got = states_at(book, day)
        rebuilt = {int(r.loan_id): (r.state, int(r.principal_minor)) for r in got.itertuples()}
        opened = {k: v for k, v in expected.items() if k in rebuilt}
        assert rebuilt == opened, day
        seen |= {state for state, _ in rebuilt.values()}
    # The history went through late buckets and write-offs, not only "current".
    assert {"current", "1-30", "31-60", "61-90", "90+", "written_off"} <= seen, seen


def test_dashboard_view_roll_rates_vintages_and_kpis(book_history) -> None:  # noqa: ANN001
    engine, recorded = book_history
    with engine.connect() as conn:
        view = portfolio_view(conn, {"approval_rate": 0.5, "decisions": 10})
    kpis = view["kpis"]
    last = recorded[max(recorded)]
    assert kpis["active_loans"] == sum(1 for s, _ in last.values() if s in BUCKET_NAMES)
    assert kpis["approval_rate"] == 0.5 and kpis["expected_loss_minor"] > 0
    assert 1_000 <= kpis["avg_apr_bps"] <= 1_800
    # The history's last month end equals the loans' recorded state.
    h = view["history"][-1]
    for state in ("current", "written_off"):
        assert h[f"{state}_loans"] == sum(1 for s, _ in last.values() if s == state)
    roll = view["roll_rates"]
    for rates, total in zip(roll["rates"], roll["from_totals"]):
        assert total == 0 or math.isclose(sum(rates), 1.0, abs_tol=1e-3)
    # Loans that never pay roll 61-90 -> 90+ every time.
    assert roll["rates"][roll["from"].index("61-90")][roll["to"].index("90+")] == 1.0
    vintages = {v["vintage"]: v for v in view["vintages"]}
    assert set(vintages) == {"2025-01", "2025-03"} and vintages["2025-01"]["loans"] == 8
    curve = vintages["2025-01"]["cumulative_default_rate"]
    assert curve == sorted(curve) and curve[-1] > 0 and curve[0] == 0.0


def test_empty_book_gives_an_empty_view(engine) -> None:  # noqa: ANN001
    with engine.connect() as conn:
        view = portfolio_view(conn)
    assert view["kpis"]["active_loans"] == 0 and view["history"] == [] and view["vintages"] == []


def test_psi_hand_computed() -> None:
    assert drift.psi(np.array([10, 20, 30]), np.array([10, 20, 30])) == 0.0
    # (0.5-0.25) ln(0.5/0.25) + (0.5-0.75) ln(0.5/0.75)
    assert math.isclose(drift.psi(np.array([25, 75]), np.array([50, 50])),
                        0.25 * math.log(2) - 0.25 * math.log(0.5 / 0.75))
    # An empty bin is floored, not infinite.
    assert math.isfinite(drift.psi(np.array([0, 10]), np.array([5, 5])))


def test_psi_on_reference_deciles() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(600, 50, 20_000)
    same = drift.psi_on_reference_bins(ref, rng.normal(600, 50, 20_000))
    shifted = drift.psi_on_reference_bins(ref, rng.normal(640, 50, 20_000))
    assert len(same["edges"]) == 9
    assert all(abs(c - 2_000) <= 1 for c in same["reference_counts"][:10])  # deciles: 10 % each
    assert same["psi"] < 0.01 and drift.status(same["psi"]) == "stable"
    assert shifted["psi"] > 0.25 and drift.status(shifted["psi"]) == "shifted"
    # Missing values are a bin of their own.
    with_missing = drift.psi_on_reference_bins(ref, np.append(rng.normal(600, 50, 9_000), [np.nan] * 1_000))
    assert with_missing["current_counts"][-1] == 1_000 and with_missing["psi"] > 0.25
    # A lumpy feature gets fewer bins, not empty ones.
    lumpy = drift.psi_on_reference_bins(np.array([0.0] * 900 + [1.0] * 100), np.array([0.0] * 500 + [1.0] * 500))
    assert len(lumpy["edges"]) == 1 and lumpy["psi"] > 0.25
