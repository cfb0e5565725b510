"""Portfolio metrics from the bank database: KPIs, delinquency buckets over time, vintage
curves and roll rates.

The bank keeps today's state on each loan, not daily snapshots, so a past month end is
rebuilt from what the database never rewrites: the installments' due dates, the payments'
application to installments (dated by their journal entries; reversed payments left out), the
principal lines of the ledger and the loans' open / default / close / write-off dates. A
loan's state at the end of day D is the state close-day would have given it on D: written
off, closed, or the bucket of D minus its oldest installment unpaid at D.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, text

from fieldbank.bank import domain
from fieldbank.bank.ledger import LOANS_PRINCIPAL
from fieldbank.bank.reports import portfolio_snapshot

MAX_MONTHS = 60  # history shown: five years of month ends
MAX_LOANS = 2_000_000  # the monitor reads the book into memory; refuse a book far beyond that
BUCKET_NAMES: tuple[str, ...] = tuple(name for name, _, _ in domain.BUCKETS)
STATES: tuple[str, ...] = BUCKET_NAMES + ("written_off", "closed")


def last_closed_day(conn: Connection) -> dt.date | None:
    return _as_date(conn.execute(text("SELECT max(business_date) FROM close_day_runs WHERE status = 'done'")).scalar())


def _as_date(value: Any) -> dt.date | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def month_ends(first: dt.date, last: dt.date, max_months: int = MAX_MONTHS) -> list[dt.date]:
    """Every month end from `first`'s month through `last` (itself last if not a month end),
    at most `max_months` of them (the newest)."""
    assert first <= last, (first, last)
    ends: list[dt.date] = []
    month = first.replace(day=1)
    while month <= last:
        end = domain.add_months(month, 1) - dt.timedelta(days=1)
        ends.append(min(end, last))
        month = domain.add_months(month, 1)
    return ends[-max_months:]


@dataclass(frozen=True)
class Book:
    """The rows the monitor needs, read once per request."""

    loans: pd.DataFrame  # loan_id, party_id, kind, apr_bps, opened_on, defaulted_on, closed_on, written_off_on, ...
    installments: pd.DataFrame  # loan_id, seq, due_on, principal_due_minor, interest_due_minor
    applications: pd.DataFrame  # loan_id, seq, business_date, principal_minor, interest_minor
    principal_lines: pd.DataFrame  # loan_id, business_date, amount_minor
    last_closed: dt.date | None


def _dates(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for c in columns:
        frame[c] = pd.to_datetime(frame[c]).dt.normalize()
    return frame


def read_book(conn: Connection) -> Book:
    n = conn.execute(text("SELECT count(*) FROM loans")).scalar_one()
    if n > MAX_LOANS:
        raise ValueError(f"loans: {n} rows, more than the monitor's in-memory limit of {MAX_LOANS}")
    loans = _dates(pd.read_sql(text(
        "SELECT loan_id, party_id, product_code, kind, apr_bps, limit_minor, opened_on, status, bucket, dpd, "
        "max_dpd, defaulted_on, closed_on, written_off_on, principal_minor, interest_minor, fees_minor "
        "FROM loans"), conn), "opened_on", "defaulted_on", "closed_on", "written_off_on")
    installments = _dates(pd.read_sql(text(
        "SELECT loan_id, seq, due_on, principal_due_minor, interest_due_minor FROM installments"), conn), "due_on")
    applications = _dates(pd.read_sql(text(
        "SELECT a.loan_id, a.seq, e.business_date, a.principal_minor, a.interest_minor "
        "FROM payment_applications a JOIN journal_entries e ON e.entry_id = a.entry_id "
        "WHERE NOT EXISTS (SELECT 1 FROM journal_entries r WHERE r.reverses_entry_id = a.entry_id)"), conn),
        "business_date")
    principal_lines = _dates(pd.read_sql(text(
        "SELECT l.loan_id, e.business_date, sum(l.amount_minor) AS amount_minor FROM journal_lines l "
        "JOIN journal_entries e ON e.entry_id = l.entry_id WHERE l.account_code = :acct "
        "GROUP BY l.loan_id, e.business_date"), conn, params={"acct": LOANS_PRINCIPAL}), "business_date")
    return Book(loans, installments, applications, principal_lines, last_closed_day(conn))


def _bucket_of_dpd(dpd: np.ndarray) -> np.ndarray:
    out = np.full(dpd.shape, BUCKET_NAMES[0], dtype=object)
    for name, lower, _ in domain.BUCKETS:
        out[dpd >= lower] = name
    return out


def states_at(book: Book, day: dt.date) -> pd.DataFrame:
    """Each loan opened by `day`: its state and principal outstanding at the end of `day`."""
    d = pd.Timestamp(day)
    loans = book.loans[book.loans["opened_on"] <= d]
    if loans.empty:
        return pd.DataFrame({"loan_id": [], "state": [], "dpd": [], "principal_minor": []})
    paid = book.applications[book.applications["business_date"] <= d]
    paid = paid.groupby(["loan_id", "seq"], as_index=False)[["principal_minor", "interest_minor"]].sum()
    inst = book.installments[book.installments["due_on"] < d].merge(
        paid, on=["loan_id", "seq"], how="left", suffixes=("", "_paid")).fillna(
        {"principal_minor": 0, "interest_minor": 0})
    unpaid = inst[(inst["principal_minor"] < inst["principal_due_minor"])
                  | (inst["interest_minor"] < inst["interest_due_minor"])]
    oldest = unpaid.groupby("loan_id", as_index=False)["due_on"].min()
    oldest = loans[["loan_id"]].merge(oldest, on="loan_id", how="left")["due_on"]
    dpd = (d - oldest).dt.days.fillna(0).astype("int64").to_numpy()
    state = _bucket_of_dpd(dpd)
    closed = (loans["closed_on"] <= d).to_numpy()
    written_off = (loans["written_off_on"] <= d).to_numpy()
    state[closed] = "closed"
    state[written_off] = "written_off"
    lines = book.principal_lines[book.principal_lines["business_date"] <= d].groupby(
        "loan_id", as_index=False)["amount_minor"].sum()
    principal = loans[["loan_id"]].merge(lines, on="loan_id", how="left")["amount_minor"].fillna(0) \
        .astype("int64").to_numpy()
    assert (principal >= 0).all(), "a loan's principal balance is negative in the ledger"
    return pd.DataFrame({"loan_id": loans["loan_id"].to_numpy(), "state": state,
                         "dpd": np.where(closed | written_off, 0, dpd), "principal_minor": principal})


def bucket_history(states: dict[dt.date, pd.DataFrame]) -> list[dict[str, Any]]:
    """Per day: loans and principal outstanding in each bucket (active loans), plus the
    cumulative written-off and closed counts."""
    out = []
    for day, s in states.items():
        row: dict[str, Any] = {"day": day.isoformat()}
        for state in STATES:
            part = s[s["state"] == state]
            row[f"{state}_loans"] = int(len(part))
            row[f"{state}_principal_minor"] = int(part["principal_minor"].sum())
        out.append(row)
    return out


def roll_rates(states: dict[dt.date, pd.DataFrame]) -> dict[str, Any]:
    """Counts of loans moving from each state at one month end to each state at the next,
    summed over consecutive month ends; rates are shares of each from-state's row. Closed and
    written-off loans are absorbing and left out of the from-states."""
    from_states = BUCKET_NAMES
    counts = pd.DataFrame(0, index=list(from_states), columns=list(STATES), dtype="int64")
    frames = list(states.values())
    for sa, sb in zip(frames, frames[1:]):
        pair = sa.merge(sb, on="loan_id", suffixes=("_from", "_to"))
        pair = pair[pair["state_from"].isin(from_states)]
        tab = pd.crosstab(pair["state_from"], pair["state_to"])
        counts = counts.add(tab.reindex(index=counts.index, columns=counts.columns, fill_value=0), fill_value=0)
    counts = counts.astype("int64")
    totals = counts.sum(axis=1)
    rates = counts.div(totals.where(totals > 0, 1), axis=0)
    return {"from": list(from_states), "to": list(STATES), "counts": counts.to_numpy().tolist(),
            "rates": rates.round(4).to_numpy().tolist(), "from_totals": totals.tolist()}


def vintages(book: Book, max_mob: int = 24) -> list[dict[str, Any]]:
    """Per origination month: loans opened and the cumulative default rate (first day at 90+
    DPD) by months on book, up to the months observed so far (the last closed day)."""
    if book.loans.empty or book.last_closed is None:
        return []
    observed = pd.Timestamp(book.last_closed)
    loans = book.loans.assign(vintage=book.loans["opened_on"].dt.strftime("%Y-%m"))
    out = []
    for vintage, group in loans.groupby("vintage", sort=True):
        opened = group["opened_on"]
        # months on book at default (a default in the first month on book counts at MOB 1)
        mob_default = ((group["defaulted_on"] - opened).dt.days // 30 + 1)
        months_observed = int(((observed - opened.max()).days) // 30)
        curve = []
        for mob in range(1, min(max_mob, months_observed) + 1):
            curve.append(round(float((mob_default <= mob).sum()) / len(group), 4))
        out.append({"vintage": vintage, "loans": int(len(group)), "months_observed": months_observed,
                    "cumulative_default_rate": curve})
    return out


def kpis(conn: Connection, book: Book, decisions: dict[str, Any] | None = None) -> dict[str, Any]:
    """Headline numbers. Expected loss is the loss allowance the bank holds (bucket rates x
    exposure, booked nightly by close-day): what the book is expected to lose as it stands.
    Average APR is weighted by principal outstanding."""
    snap = portfolio_snapshot(conn)
    active = book.loans[book.loans["status"] == "active"]
    weight = active["principal_minor"].clip(lower=0)
    avg_apr_bps = float((active["apr_bps"] * weight).sum() / weight.sum()) if weight.sum() > 0 else None
    out = {
        "outstanding_minor": snap["outstanding_minor"],
        "active_loans": snap["active_loans"],
        "npl_ratio": snap["npl_ratio"],
        "avg_apr_bps": avg_apr_bps,
        "expected_loss_minor": snap["allowance_minor"],
        "written_off_minor": snap["written_off_minor"],
        "loans_by_status": snap["loans_by_status"],
        "buckets": snap["buckets"],
        "last_closed_day": book.last_closed.isoformat() if book.last_closed else None,
        "approval_rate": None,
        "decisions": 0,
    }
    if decisions:
        out.update(approval_rate=decisions.get("approval_rate"), decisions=decisions.get("decisions", 0))
    return out


def portfolio_view(conn: Connection, decisions: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the dashboard's portfolio section shows, from one read of the book."""
    book = read_book(conn)
    view: dict[str, Any] = {"kpis": kpis(conn, book, decisions), "history": [], "roll_rates": None, "vintages": []}
    if book.loans.empty or book.last_closed is None:
        return view
    first = _as_date(book.loans["opened_on"].min())
    assert first is not None
    days = month_ends(first, max(first, book.last_closed))
    states = {day: states_at(book, day) for day in days}
    view["history"] = bucket_history(states)
    view["roll_rates"] = roll_rates(states)
    view["vintages"] = vintages(book)
    return view
