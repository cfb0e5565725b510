"""Invariants of the simulated economy: money is conserved, loans and invoices are coherent."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow.compute as pc

from fieldbank.simulate.credit import DEFAULT_DPD


def _sql(run, query: str):
    con = duckdb.connect()
    for name in ("parties", "payments", "invoices", "bills", "loans"):
        con.execute(f"create view {name} as select * from read_parquet('{run.raw / name}/*.parquet')")
    for name in ("cash_monthly", "pd_monthly", "counterfactual", "traits"):
        con.execute(f"create view {name} as select * from read_parquet('{run.truth / name}.parquet')")
    return con.execute(query).fetchall()


def test_no_invoice_is_paid_before_it_is_issued_or_due_before_issue(small_run):
    bad = _sql(small_run, "select count(*) from invoices where paid_at < issued_at or due_at < issued_at")
    assert bad == [(0,)]
    paid = _sql(small_run, "select count(*) filter (where paid_at is not null), count(*) from invoices")[0]
    assert 0 < paid[0] <= paid[1]


def test_every_paid_invoice_is_a_transfer_in_the_payments(small_run):
    # invoice settlements are bank transfers: same parties, same amount, same time
    missing = _sql(small_run, """
        select count(*) from invoices i where paid_at is not null and not exists (
          select 1 from payments p where p.payer_id = i.buyer_id and p.payee_id = i.supplier_id
            and p.amount_minor = i.amount_minor and p.ts = i.paid_at and p.kind = 'transfer')""")
    assert missing == [(0,)]


def test_loans_default_and_dpd_agree(small_run):
    rows = _sql(small_run, f"""
        select count(*) filter (where (max_dpd >= {DEFAULT_DPD}) != (defaulted_at is not null)),
               count(*) filter (where defaulted_at < opened_at or defaulted_at > coalesce(closed_at, defaulted_at)),
               count(*) filter (where written_off and (closed_at is null or defaulted_at is null)),
               count(*) filter (where closed_at is not null and closed_at < opened_at),
               count(*) filter (where defaulted_at is not null),
               count(*)
        from loans""")[0]
    assert rows[:4] == (0, 0, 0, 0)
    assert rows[5] > 0 and rows[4] > 0, "the run should have loans and some defaults to check"


def test_cash_identity_holds_from_the_events(small_run):
    """start + payments in - payments out - bills paid + loan flows + external = end, per party-month.

    Payments and bills come from the event tables; loan and external flows (not events) from truth.
    """
    rows = _sql(small_run, """
        with pin as (select payee_id party_id, date_trunc('month', ts) m, sum(amount_minor) a from payments group by all),
             pout as (select payer_id party_id, date_trunc('month', ts) m, sum(amount_minor) a from payments group by all),
             bp as (select party_id, date_trunc('month', paid_at) m, sum(amount_minor) a from bills
                    where paid_at is not null group by all)
        select count(*) filter (where coalesce(pin.a, 0) != c.payments_in_minor),
               count(*) filter (where coalesce(pout.a, 0) != c.payments_out_minor),
               count(*) filter (where coalesce(bp.a, 0) != c.bills_paid_minor),
               count(*) filter (where c.cash_start_minor + coalesce(pin.a, 0) - coalesce(pout.a, 0) - coalesce(bp.a, 0)
                                + c.loan_in_minor - c.loan_out_minor + c.external_in_minor - c.external_out_minor
                                != c.cash_end_minor),
               count(*) filter (where c.cash_end_minor < 0),
               count(*)
        from cash_monthly c
        left join pin on pin.party_id = c.party_id and pin.m = c.month_start
        left join pout on pout.party_id = c.party_id and pout.m = c.month_start
        left join bp on bp.party_id = c.party_id and bp.m = c.month_start""")[0]
    assert rows[:5] == (0, 0, 0, 0, 0), rows
    assert rows[5] == small_run.params.parties * small_run.params.months


def test_cash_carries_over_from_month_to_month(small_run):
    gaps = _sql(small_run, """
        select count(*) from cash_monthly a join cash_monthly b
          on a.party_id = b.party_id and b.month_start = a.month_start + interval 1 month
        where a.cash_end_minor != b.cash_start_minor""")
    assert gaps == [(0,)]


def test_households_pay_businesses_and_businesses_pay_wages(small_run):
    rows = dict(_sql(small_run, """
        select p.kind || '->' || q.kind || ':' || pay.kind, count(*) from payments pay
        join parties p on p.party_id = pay.payer_id join parties q on q.party_id = pay.payee_id group by 1"""))
    assert rows.get("household->business:purchase", 0) > 0
    assert rows.get("business->household:wage", 0) > 0
    assert rows.get("business->household:harvest_sale", 0) > 0
    assert rows.get("business->business:transfer", 0) > 0
    # a purchase always goes from a household or a borrowing business to a business
    assert not any(k.startswith("household->household") for k in rows)
    # households make roughly 20-40 payments a month
    per_month = _sql(small_run, f"""
        select count(*) / (select count(*) from parties where kind = 'household') / {small_run.params.months}
        from payments p join parties q on q.party_id = p.payer_id where q.kind = 'household'""")[0][0]
    assert 15 <= per_month <= 45, per_month


def test_fraud_rings_share_devices(small_run):
    traits = small_run.truth_table("traits").to_pandas()
    parties = small_run.table("parties").to_pandas().set_index("party_id")
    members = traits[traits.fraud_ring.notna()]
    assert len(members) > 0
    for _, ring in members.groupby("fraud_ring"):
        assert parties.loc[ring.party_id, "device_hash"].nunique() == 1


def test_stress_shows_before_default(small_run):
    """Defaulters pay bills late more often than others in the months before they default."""
    rows = _sql(small_run, """
        with d as (select party_id, defaulted_at from loans where defaulted_at is not null),
             late as (select b.party_id, avg((b.paid_at is null or b.paid_at > b.due_at)::int) r from bills b
                      left join d using (party_id) where d.defaulted_at is null or b.due_at < d.defaulted_at group by 1)
        select avg(r) filter (where party_id in (select party_id from d)),
               avg(r) filter (where party_id in (select party_id from loans) and party_id not in (select party_id from d))
        from late""")[0]
    defaulters, others = rows
    assert defaulters > others


def test_counterfactual_and_true_pd_agree(small_run):
    rows = _sql(small_run, """
        select avg(true_pd_12m) filter (where would_default_12m), avg(true_pd_12m) filter (where not would_default_12m)
        from pd_monthly join counterfactual using (party_id, month_start)""")[0]
    assert rows[0] > rows[1] + 0.2  # the estimated PD separates the realized counterfactual outcomes


def test_truth_is_consistent_with_party_kinds(small_run):
    kinds = small_run.table("parties").column("kind")
    traits_kinds = small_run.truth_table("traits").column("kind")
    assert pc.all(pc.equal(kinds, traits_kinds)).as_py()
    assert np.isclose(small_run.report.realism["credit_history_share"],
                      _sql(small_run, "select count(distinct party_id) from loans")[0][0] / small_run.params.parties)
