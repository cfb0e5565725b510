"""Each family's values on the hand-made lake (conftest.py) against hand-computed numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fieldbank.portrait import catalog, connect, execute_portrait, load_inputs
from portrait_handmade import AS_OF, hand_tables, write_lake_table


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    lake = tmp_path_factory.mktemp("hand") / "lake"
    for name, table in hand_tables().items():
        write_lake_table(lake, name, table)
    table = execute_portrait(load_inputs(connect("duckdb"), lake, use_rollups=True), AS_OF)
    return {r["party_id"]: r for r in table.to_pylist()}


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-12, abs=1e-12)


def test_row_set_is_parties_created_before_as_of(rows: dict[str, dict]) -> None:
    assert sorted(rows) == ["E1", "F1", "H1", "H2", "M1", "S1", "X1"]  # N1 is created after D
    assert all(r["as_of"] == AS_OF for r in rows.values())
    assert list(rows["M1"]) == ["party_id", "as_of"] + [f.name for f in catalog()]


def test_party(rows: dict[str, dict]) -> None:
    m1 = rows["M1"]
    assert (m1["party_kind"], m1["party_sector"], m1["party_region_id"]) == ("business", "grocery", "R1")
    assert m1["party_age_years"] == 2025 - 1980
    assert m1["party_tenure_days"] == 517  # 2024-01-01 -> 2025-06-01
    assert m1["party_declared_income_minor"] == 1_000_000


def test_business(rows: dict[str, dict]) -> None:
    m1 = rows["M1"]
    # t1 (23:59:59 the day before D) is in, t7 (00:00:00 of D) and t8 (after D) are out.
    assert (m1["biz_revenue_minor_30d"], m1["biz_revenue_minor_90d"], m1["biz_revenue_minor_365d"]) == (
        3000, 6000, 10000)
    assert (m1["biz_sales_n_30d"], m1["biz_sales_n_90d"], m1["biz_sales_n_365d"]) == (2, 3, 4)
    assert (m1["biz_active_days_30d"], m1["biz_active_days_90d"], m1["biz_active_days_365d"]) == (2, 3, 4)
    assert m1["biz_revenue_growth_90d"] == approx(6000 / 4000 - 1)  # t4 is in the 90 days before
    # 30-day months back from D: m0 = t1 + t2, m2 = t3 (61 days back), m4 = t4 (137 days back).
    months = np.array([3000, 0, 3000, 0, 4000] + [0] * 7, dtype=float)
    assert m1["biz_revenue_cv_360d"] == approx(months.std() / months.mean())
    assert m1["biz_peak_month_share_360d"] == approx(0.4)
    assert (m1["biz_customers_n_90d"], m1["biz_customers_n_365d"]) == (2, 2)
    assert m1["biz_repeat_customer_share_365d"] == approx(0.5)  # H1 on 3 days, H2 on 1
    assert m1["biz_top_customer_share_365d"] == approx(0.7)  # H1: 7000 of 10000
    assert m1["biz_ticket_mean_minor_90d"] == approx(2000.0)
    assert m1["biz_refund_share_90d"] == approx(500 / 6000)
    h1 = rows["H1"]
    assert h1["biz_revenue_minor_365d"] == 0 and h1["biz_sales_n_365d"] == 0
    assert h1["biz_revenue_growth_90d"] is None and h1["biz_ticket_mean_minor_90d"] is None


def test_household(rows: dict[str, dict]) -> None:
    h1 = rows["H1"]
    assert (h1["hh_spend_minor_30d"], h1["hh_spend_minor_90d"], h1["hh_spend_minor_365d"]) == (3000, 3000, 7000)
    assert h1["hh_spend_growth_90d"] == approx(3000 / 4000 - 1)
    assert h1["hh_essentials_share_90d"] == approx(1000 / 3000)  # food yes, durables no
    spend_months = np.array([3000, 0, 0, 0, 4000] + [0] * 7, dtype=float)
    assert h1["hh_spend_month_mean_minor_360d"] == approx(7000 / 12)
    assert h1["hh_spend_cv_360d"] == approx(spend_months.std() / spend_months.mean())
    assert h1["hh_merchants_n_90d"] == 1
    assert (h1["hh_income_minor_90d"], h1["hh_income_minor_365d"]) == (10000, 10000)
    assert h1["hh_income_months_n_360d"] == 1
    income_months = np.array([10000] + [0] * 11, dtype=float)
    assert h1["hh_income_cv_360d"] == approx(income_months.std() / income_months.mean())
    assert (h1["hh_net_inflow_minor_90d"], h1["hh_net_inflow_minor_365d"]) == (7000, 3000)
    assert h1["hh_income_drop_flag_90d"] == 0 and h1["hh_spend_change_after_income_drop_90d"] is None
    h2 = rows["H2"]
    assert h2["hh_net_inflow_minor_90d"] == 500 - 3000  # refund in, purchase out
    assert h2["hh_income_minor_365d"] == 0 and h2["hh_income_cv_360d"] is None
    m1 = rows["M1"]
    assert m1["hh_net_inflow_minor_365d"] == 10000 - 500 - 10000


def test_household_income_shock() -> None:
    """A wage earner whose wages stop: shock flag 1 and the spend change is reported."""
    import tempfile

    from portrait_handmade import rows_to_table, ts

    t = hand_tables()
    extra = [
        {"txn_id": "w1", "ts": ts(2025, 1, 10), "payer_id": "M1", "payee_id": "H2", "amount_minor": 8000,
         "channel": "payroll", "kind": "wage"},
        {"txn_id": "w2", "ts": ts(2025, 3, 20), "payer_id": "M1", "payee_id": "H2", "amount_minor": 1000,
         "channel": "payroll", "kind": "wage"},
        {"txn_id": "s1", "ts": ts(2025, 2, 1), "payer_id": "H2", "payee_id": "M1", "amount_minor": 6000,
         "channel": "qr", "kind": "purchase", "category": "food"},
    ]
    with tempfile.TemporaryDirectory() as d:
        lake = Path(d) / "lake"
        for name, table in t.items():
            write_lake_table(lake, name, table)
        write_lake_table(lake, "payments", rows_to_table("payments", extra))
        h2 = {r["party_id"]: r for r in execute_portrait(
            load_inputs(connect("duckdb"), lake, use_rollups=False), AS_OF).to_pylist()}["H2"]
    # income: last 90 days 1000, the 90 before 8000 -> shock; spend: 3000 vs 6000 -> -50%.
    assert h2["hh_income_drop_flag_90d"] == 1
    assert h2["hh_spend_change_after_income_drop_90d"] == approx(3000 / 6000 - 1)


def _pagerank_two_nodes(damping: float = 0.85, iterations: int = 30) -> tuple[float, float]:
    """Independent numpy power iteration for the graph M1 -> S1 (S1 dangling)."""
    r = np.array([0.5, 0.5])
    for _ in range(iterations):
        dangling = r[1]
        r = np.array([(1 - damping) / 2 + damping * dangling / 2,
                      (1 - damping) / 2 + damping * (r[0] + dangling / 2)])
    return r[0] * 2, r[1] * 2


def test_supply_chain(rows: dict[str, dict]) -> None:
    m1, s1 = rows["M1"], rows["S1"]
    assert (m1["sc_suppliers_n_365d"], m1["sc_buyers_n_365d"]) == (1, 0)
    assert (s1["sc_suppliers_n_365d"], s1["sc_buyers_n_365d"]) == (0, 1)
    assert m1["sc_supplier_tenure_days_mean_365d"] == approx(92)  # first invoice 2025-03-01
    assert m1["sc_supplier_hhi_365d"] == approx(1.0) and m1["sc_buyer_hhi_365d"] is None
    # I1 paid 10 days late; I2 paid after D, so 17 days late and unpaid as of D; I3 not yet due.
    assert m1["sc_buyer_days_late_mean_365d"] == approx(13.5)
    assert m1["sc_buyer_days_late_p90_365d"] == approx(10 + 0.9 * 7)
    assert m1["sc_buyer_late_share_365d"] == approx(1.0)
    assert s1["sc_supplier_days_late_mean_365d"] == approx(13.5)
    assert m1["sc_overdue_unpaid_minor"] == 30000 and s1["sc_overdue_unpaid_minor"] == 0
    assert m1["sc_weighted_degree_minor_365d"] == 100000  # I4 is issued after D
    # S1 defaulted on a loan before D: M1's only counterparty is in distress; M1 is not (17 days).
    assert m1["sc_counterparty_distress_share_365d"] == approx(1.0)
    assert s1["sc_counterparty_distress_share_365d"] == approx(0.0)
    pr_m1, pr_s1 = _pagerank_two_nodes()
    assert m1["sc_pagerank_365d"] == pytest.approx(pr_m1, rel=1e-9)
    assert s1["sc_pagerank_365d"] == pytest.approx(pr_s1, rel=1e-9)
    assert rows["H1"]["sc_pagerank_365d"] is None and rows["H1"]["sc_suppliers_n_365d"] == 0


def test_bills(rows: dict[str, dict]) -> None:
    h1 = rows["H1"]
    assert (h1["bills_n_365d"], h1["bills_biller_kinds_n_365d"], h1["bills_amount_minor_365d"]) == (3, 3, 6000)
    # B1 early (0), B2 5 days late, B3 paid after D: unpaid and 7 days late as of D; B4 due after D.
    assert h1["bills_late_share_365d"] == approx(2 / 3)
    assert h1["bills_days_late_mean_365d"] == approx(4.0)
    assert h1["bills_days_late_max_365d"] == 7
    assert h1["bills_unpaid_overdue_n"] == 1
    assert h1["bills_late_share_90d"] == approx(2 / 3)
    x1 = rows["X1"]  # single event: due one second before D, unpaid -> 0 whole days late
    assert (x1["bills_n_365d"], x1["bills_unpaid_overdue_n"], x1["bills_days_late_max_365d"]) == (1, 1, 0)
    assert x1["bills_late_share_365d"] == approx(0.0)


def test_credit(rows: dict[str, dict]) -> None:
    h1, s1 = rows["H1"], rows["S1"]
    assert (h1["credit_loans_n"], h1["credit_loans_n_365d"], h1["credit_principal_minor_365d"]) == (2, 1, 50000)
    assert (h1["credit_open_loans_n"], h1["credit_open_principal_minor"]) == (1, 50000)  # L2 closes after D
    assert h1["credit_lenders_n"] == 2
    assert h1["credit_defaults_n"] == 0  # L2 defaults after D
    assert h1["credit_max_dpd_known_days"] == 12  # L3 closed with 12; L2's 95 is not known at D
    assert h1["credit_days_since_last_default"] is None
    assert h1["credit_file_age_days"] == 517
    assert (s1["credit_loans_n"], s1["credit_loans_n_365d"], s1["credit_open_loans_n"]) == (1, 1, 0)
    assert (s1["credit_defaults_n"], s1["credit_written_off_n"]) == (1, 1)
    assert s1["credit_max_dpd_known_days"] == 120
    assert s1["credit_days_since_last_default"] == 243  # 2024-10-01 -> 2025-06-01
    assert rows["M1"]["credit_loans_n"] == 0 and rows["M1"]["credit_max_dpd_known_days"] is None


def test_region(rows: dict[str, dict]) -> None:
    m1, s1 = rows["M1"], rows["S1"]
    assert (m1["region_parties_n"], m1["region_borrowers_n"]) == (3, 1)
    assert m1["region_default_rate_365d"] == approx(0.0)  # H1's default is after D
    assert m1["region_income_fell_share_90d"] == approx(0.0)  # M1 grew; H1 had no earlier inflow
    assert (s1["region_parties_n"], s1["region_borrowers_n"]) == (4, 1)  # N1 created after D
    assert s1["region_default_rate_365d"] == approx(1.0)
    assert s1["region_income_fell_share_90d"] is None


def test_thin_file(rows: dict[str, dict]) -> None:
    def flags(pid: str) -> tuple[int, ...]:
        r = rows[pid]
        return tuple(r[n] for n in ("thin_has_business_activity", "thin_has_household_flows",
                                    "thin_has_supply_chain", "thin_has_bills", "thin_has_credit_file",
                                    "thin_new_to_credit", "thin_families_with_data_n"))

    assert flags("M1") == (1, 0, 1, 0, 0, 1, 2)
    assert flags("H1") == (0, 1, 0, 1, 1, 0, 3)
    assert flags("S1") == (0, 0, 1, 0, 1, 0, 2)
    assert flags("E1") == (0, 0, 0, 0, 0, 1, 0)


@pytest.mark.parametrize("pid", ["E1", "F1"])
def test_empty_and_after_as_of_parties(rows: dict[str, dict], pid: str) -> None:
    """No events before D: counts and sums are 0, ratios and means are null."""
    r = rows[pid]
    for f in catalog():
        if f.family in ("party", "region", "thin_file"):
            continue
        expected = 0 if f.fill_zero else None
        assert r[f.name] == expected, f.name
