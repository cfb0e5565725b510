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


NO_DAY = np.iinfo(np.int64).max  # "never" for a date column


def _days(series: pd.Series) -> np.ndarray:
    """Dates as int64 day numbers (NaT -> NO_DAY), for cheap comparisons in numpy."""
    values = series.to_numpy(dtype="datetime64[D]")
    out = values.astype("int64")
    out[np.isnat(values)] = NO_DAY
    return out


class BookArrays:
    """The book as numpy arrays indexed by loan position, built once per request: each month
    end's states are then a few bincounts, not a pandas merge per day."""

    def __init__(self, book: Book) -> None:
        loans = book.loans
        self.loan_id = loans["loan_id"].to_numpy(dtype="int64")
        position = pd.Series(np.arange(len(loans)), index=self.loan_id)
        self.opened, self.closed, self.written_off = (_days(loans[c]) for c in ("opened_on", "closed_on",
                                                                               "written_off_on"))
        inst = book.installments
        self.inst_loan = position.reindex(inst["loan_id"].to_numpy()).to_numpy()
        assert not np.isnan(self.inst_loan.astype("float64")).any(), "an installment names an unknown loan"
        self.inst_loan = self.inst_loan.astype("int64")
        self.inst_due = _days(inst["due_on"])
        self.inst_p_due = inst["principal_due_minor"].to_numpy(dtype="int64")
        self.inst_i_due = inst["interest_due_minor"].to_numpy(dtype="int64")
        inst_pos = pd.Series(np.arange(len(inst)), index=pd.MultiIndex.from_arrays([inst["loan_id"], inst["seq"]]))
        apps = book.applications
        app_inst = inst_pos.reindex(pd.MultiIndex.from_arrays([apps["loan_id"], apps["seq"]])).to_numpy()
        assert not np.isnan(app_inst.astype("float64")).any(), "a payment application names an unknown installment"
        self.app_inst = app_inst.astype("int64")
        self.app_day = _days(apps["business_date"])
        self.app_p = apps["principal_minor"].to_numpy(dtype="int64")
        self.app_i = apps["interest_minor"].to_numpy(dtype="int64")
        lines = book.principal_lines
        self.line_loan = position.reindex(lines["loan_id"].to_numpy()).to_numpy().astype("int64")
        self.line_day = _days(lines["business_date"])
        self.line_amount = lines["amount_minor"].to_numpy(dtype="int64")

    def at(self, day: dt.date) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(opened mask, state code into STATES, dpd, principal) of every loan at the end of `day`."""
        d = (np.datetime64(day, "D") - np.datetime64(0, "D")).astype("int64")
        n_inst, n_loans = len(self.inst_due), len(self.loan_id)
        paid = self.app_day <= d
        paid_p = np.bincount(self.app_inst[paid], weights=self.app_p[paid], minlength=n_inst)
        paid_i = np.bincount(self.app_inst[paid], weights=self.app_i[paid], minlength=n_inst)
        unpaid = (self.inst_due < d) & ((paid_p < self.inst_p_due) | (paid_i < self.inst_i_due))
        oldest = np.full(n_loans, NO_DAY, dtype="int64")
        np.minimum.at(oldest, self.inst_loan[unpaid], self.inst_due[unpaid])
        dpd = np.where(oldest == NO_DAY, 0, d - oldest)
        code = np.zeros(n_loans, dtype="int64")
        for k, (_name, lower, _rate) in enumerate(domain.BUCKETS):
            code[dpd >= lower] = k
        closed, written_off = self.closed <= d, self.written_off <= d
        code[closed] = STATES.index("closed")
        code[written_off] = STATES.index("written_off")
        dpd = np.where(closed | written_off, 0, dpd)
        booked = self.line_day <= d
        principal = np.bincount(self.line_loan[booked], weights=self.line_amount[booked],
                                minlength=n_loans).astype("int64")
        opened = self.opened <= d
        assert (principal[opened] >= 0).all(), f"a loan's principal balance is negative in the ledger on {day}"
        return opened, code, dpd, principal


def states_at(book: Book, day: dt.date, arrays: BookArrays | None = None) -> pd.DataFrame:
    """Each loan opened by `day`: its state and principal outstanding at the end of `day`."""
    arrays = arrays or BookArrays(book)
    opened, code, dpd, principal = arrays.at(day)
    return pd.DataFrame({"loan_id": arrays.loan_id[opened], "state": np.array(STATES, dtype=object)[code[opened]],
                         "dpd": dpd[opened], "principal_minor": principal[opened]})


StateCodes = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def bucket_history(days: list[dt.date], states: list[StateCodes]) -> list[dict[str, Any]]:
    """Per day: loans and principal outstanding in each bucket (active loans), plus the
    cumulative written-off and closed counts."""
    out = []
    for day, (opened, code, _dpd, principal) in zip(days, states):
        counts = np.bincount(code[opened], minlength=len(STATES))
        amounts = np.bincount(code[opened], weights=principal[opened], minlength=len(STATES))
        row: dict[str, Any] = {"day": day.isoformat()}
        for k, state in enumerate(STATES):
            row[f"{state}_loans"] = int(counts[k])
            row[f"{state}_principal_minor"] = int(amounts[k])
        out.append(row)
    return out


def roll_rates(states: list[StateCodes]) -> dict[str, Any]:
    """Counts of loans moving from each state at one month end to each state at the next,
    summed over consecutive month ends; rates are shares of each from-state's row. Closed and
    written-off loans are absorbing and left out of the from-states."""
    n_from = len(BUCKET_NAMES)
    counts = np.zeros((n_from, len(STATES)), dtype="int64")
    for (opened_a, code_a, _, _), (_, code_b, _, _) in zip(states, states[1:]):
        moving = opened_a & (code_a < n_from)
        np.add.at(counts, (code_a[moving], code_b[moving]), 1)
    totals = counts.sum(axis=1)
    rates = counts / np.where(totals > 0, totals, 1)[:, None]
    return {"from": list(BUCKET_NAMES), "to": list(STATES), "counts": counts.tolist(),
            "rates": np.round(rates, 4).tolist(), "from_totals": totals.tolist()}


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
    arrays = BookArrays(book)
    states = [arrays.at(day) for day in days]
    view["history"] = bucket_history(days, states)
    view["roll_rates"] = roll_rates(states)
    view["vintages"] = vintages(book)
    return view
