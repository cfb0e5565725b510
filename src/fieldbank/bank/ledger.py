"""The double-entry ledger: chart of accounts, posting, reversal, replay checks, trial balance.

Guarantees (each enforced in code AND by the database, see migrations/versions/0001):
- every entry balances: lines are inserted first, then the header; the database checks on
  the header (a trigger on SQLite, a deferred constraint trigger on PostgreSQL) that the
  entry's lines sum to zero and number exactly `line_count`; a line without a header fails
  the deferred foreign key at commit, so an unbalanced entry cannot commit;
- entries are immutable: lines cannot be added to a posted entry, and UPDATE/DELETE of
  entries or lines is rejected by triggers; corrections are reversal entries;
- stored balances (on `loans`, `allowance_balances`) equal a replay of the lines
  (`check_books`).
Amounts are signed minor units: debit > 0, credit < 0.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select, text

from fieldbank.bank.domain import BUCKETS
from fieldbank.bank.models import Account, AllowanceBalance, JournalEntry, JournalLine, Loan

MAX_LINES_PER_OPERATION_ENTRY = 64  # service-layer entries are small; batch entries are set-based

# account_code -> (name, kind, per_loan)
CLEARING = "CLEARING"
LOANS_PRINCIPAL = "LOANS_PRINCIPAL"
INTEREST_RECEIVABLE = "INTEREST_RECEIVABLE"
FEES_RECEIVABLE = "FEES_RECEIVABLE"
BORROWER_PAYMENT = "BORROWER_PAYMENT"
OVERPAYMENT = "OVERPAYMENT"
SUSPENSE = "SUSPENSE"
INTEREST_INCOME = "INTEREST_INCOME"
FEE_INCOME = "FEE_INCOME"
RECOVERIES = "RECOVERIES"
WRITE_OFF_EXPENSE = "WRITE_OFF_EXPENSE"
PROVISION_EXPENSE = "PROVISION_EXPENSE"


def allowance_account(bucket: str) -> str:
    return f"LOSS_ALLOWANCE_{bucket}"


CHART_OF_ACCOUNTS: dict[str, tuple[str, str, bool]] = {
    CLEARING: ("1000 Clearing (payment rails in flight)", "asset", False),
    LOANS_PRINCIPAL: ("1100 Loans receivable - principal", "asset", True),
    INTEREST_RECEIVABLE: ("1110 Interest receivable", "asset", True),
    FEES_RECEIVABLE: ("1120 Fees and penalties receivable", "asset", True),
    **{
        allowance_account(b): (f"119{i} Loss allowance - bucket {b}", "contra_asset", False)
        for i, (b, _, _) in enumerate(BUCKETS)
    },
    BORROWER_PAYMENT: ("2000 Borrower payment accounts", "liability", True),
    OVERPAYMENT: ("2100 Overpayments (borrower credit balances)", "liability", True),
    SUSPENSE: ("2200 Suspense (unallocated receipts)", "liability", False),
    INTEREST_INCOME: ("4000 Interest income", "income", False),
    FEE_INCOME: ("4100 Fee and penalty income", "income", False),
    RECOVERIES: ("4200 Recoveries on written-off loans", "income", False),
    WRITE_OFF_EXPENSE: ("5000 Write-off expense", "expense", False),
    PROVISION_EXPENSE: ("5100 Loss provision expense", "expense", False),
}

# Per-loan account -> (stored column on loans, sign): stored = sign * sum(lines).
LOAN_BALANCE_COLUMNS: dict[str, tuple[str, int]] = {
    LOANS_PRINCIPAL: ("principal_minor", 1),
    INTEREST_RECEIVABLE: ("interest_minor", 1),
    FEES_RECEIVABLE: ("fees_minor", 1),
    BORROWER_PAYMENT: ("payment_account_minor", -1),
    OVERPAYMENT: ("credit_minor", -1),
}


class UnbalancedEntry(ValueError):
    pass


@dataclass(frozen=True)
class Line:
    account_code: str
    amount_minor: int  # debit > 0, credit < 0
    loan_id: int | None = None


def post_entry(
    conn: Connection,
    *,
    entry_id: str,
    business_date: dt.date,
    kind: str,
    lines: list[Line],
    loan_id: int | None = None,
    reverses_entry_id: str | None = None,
    memo: str = "",
) -> str:
    """Post one balanced entry (lines first, header last) and update the loan's stored balances."""
    lines = [ln for ln in lines if ln.amount_minor != 0]
    if len(lines) < 2 or sum(ln.amount_minor for ln in lines) != 0:
        raise UnbalancedEntry(f"entry {entry_id}: lines must be >= 2 and sum to 0, got {lines}")
    assert len(lines) <= MAX_LINES_PER_OPERATION_ENTRY, len(lines)
    for ln in lines:
        assert ln.account_code in CHART_OF_ACCOUNTS, ln.account_code
        per_loan = CHART_OF_ACCOUNTS[ln.account_code][2]
        assert (ln.loan_id is not None) == per_loan, f"{ln.account_code}: loan_id {'required' if per_loan else 'not allowed'}"
    conn.execute(
        insert(JournalLine),
        [
            {"entry_id": entry_id, "line_no": i, "account_code": ln.account_code, "loan_id": ln.loan_id,
             "amount_minor": ln.amount_minor}
            for i, ln in enumerate(lines, start=1)
        ],
    )
    conn.execute(
        insert(JournalEntry).values(
            entry_id=entry_id, business_date=business_date, kind=kind, loan_id=loan_id,
            line_count=len(lines), reverses_entry_id=reverses_entry_id, memo=memo[:200],
        )
    )
    _apply_to_loan_balances(conn, lines)
    return entry_id


def _apply_to_loan_balances(conn: Connection, lines: list[Line]) -> None:
    deltas: dict[int, dict[str, int]] = {}
    for ln in lines:
        if ln.account_code in LOAN_BALANCE_COLUMNS:
            column, sign = LOAN_BALANCE_COLUMNS[ln.account_code]
            per_loan = deltas.setdefault(ln.loan_id, {})
            per_loan[column] = per_loan.get(column, 0) + sign * ln.amount_minor
    table = Loan.__table__
    for loan_id, changes in deltas.items():
        conn.execute(
            table.update().where(table.c.loan_id == loan_id).values(
                **{col: table.c[col] + delta for col, delta in changes.items()}
            )
        )


def entry_lines(conn: Connection, entry_id: str) -> list[Line]:
    rows = conn.execute(
        select(JournalLine.account_code, JournalLine.amount_minor, JournalLine.loan_id)
        .where(JournalLine.entry_id == entry_id)
        .order_by(JournalLine.line_no)
    ).all()
    return [Line(r.account_code, r.amount_minor, r.loan_id) for r in rows]


def reverse_entry(conn: Connection, entry_id: str, *, business_date: dt.date, kind: str = "reversal") -> str:
    """Post the mirror image of `entry_id` (each line negated). One reversal per entry."""
    original = conn.execute(select(JournalEntry.__table__).where(JournalEntry.entry_id == entry_id)).one()
    lines = entry_lines(conn, entry_id)
    assert lines, entry_id
    return post_entry(
        conn,
        entry_id=f"rev:{entry_id}",
        business_date=business_date,
        kind=kind,
        lines=[Line(ln.account_code, -ln.amount_minor, ln.loan_id) for ln in lines],
        loan_id=original.loan_id,
        reverses_entry_id=entry_id,
        memo=f"reversal of {entry_id}",
    )


def trial_balance(conn: Connection) -> list[dict]:
    """Balance per account from the lines (debit > 0). The total is zero by construction."""
    sums = dict(
        conn.execute(
            select(JournalLine.account_code, func.sum(JournalLine.amount_minor)).group_by(JournalLine.account_code)
        ).all()
    )
    rows = []
    for code, (name, kind, _) in CHART_OF_ACCOUNTS.items():
        balance = int(sums.get(code) or 0)
        rows.append({"account_code": code, "name": name, "kind": kind, "debit_minor": max(balance, 0),
                     "credit_minor": max(-balance, 0), "balance_minor": balance})
    return rows


@dataclass(frozen=True)
class BooksCheck:
    unbalanced_entries: list[str]
    loan_mismatches: list[tuple[int, str, int, int]]  # loan_id, column, stored, replayed
    allowance_mismatches: list[tuple[str, int, int]]
    total_minor: int

    @property
    def ok(self) -> bool:
        return not self.unbalanced_entries and not self.loan_mismatches and not self.allowance_mismatches and self.total_minor == 0


def check_books(conn: Connection, *, limit: int = 100) -> BooksCheck:
    """Replay the ledger and compare with every stored balance (set-based, bounded output)."""
    unbalanced = [
        r[0]
        for r in conn.execute(
            text("SELECT entry_id FROM journal_lines GROUP BY entry_id HAVING sum(amount_minor) <> 0 LIMIT :n"),
            {"n": limit},
        )
    ]
    total = int(conn.execute(text("SELECT coalesce(sum(amount_minor), 0) FROM journal_lines")).scalar_one())
    cases = ", ".join(
        f"coalesce(sum(CASE WHEN account_code = '{acct}' THEN amount_minor END), 0) * {sign} AS {col}"
        for acct, (col, sign) in LOAN_BALANCE_COLUMNS.items()
    )
    columns = [col for col, _ in LOAN_BALANCE_COLUMNS.values()]
    mismatch_sql = " OR ".join(f"l.{c} <> coalesce(r.{c}, 0)" for c in columns)
    rows = conn.execute(
        text(
            f"SELECT l.loan_id, {', '.join(f'l.{c} AS s_{c}, coalesce(r.{c}, 0) AS r_{c}' for c in columns)} "
            f"FROM loans l LEFT JOIN (SELECT loan_id, {cases} FROM journal_lines WHERE loan_id IS NOT NULL "
            f"GROUP BY loan_id) r ON r.loan_id = l.loan_id WHERE {mismatch_sql} LIMIT :n"
        ),
        {"n": limit},
    ).mappings()
    loan_mismatches = []
    for r in rows:
        for c in columns:
            if r[f"s_{c}"] != r[f"r_{c}"]:
                loan_mismatches.append((r["loan_id"], c, int(r[f"s_{c}"]), int(r[f"r_{c}"])))
    stored_allowance = dict(conn.execute(select(AllowanceBalance.bucket, AllowanceBalance.amount_minor)).all())
    replayed = dict(
        conn.execute(
            select(JournalLine.account_code, func.sum(JournalLine.amount_minor))
            .where(JournalLine.account_code.like("LOSS_ALLOWANCE_%"))
            .group_by(JournalLine.account_code)
        ).all()
    )
    allowance_mismatches = []
    for bucket, _, _ in BUCKETS:
        stored = int(stored_allowance.get(bucket, 0))
        replay = -int(replayed.get(allowance_account(bucket)) or 0)
        if stored != replay:
            allowance_mismatches.append((bucket, stored, replay))
    return BooksCheck(unbalanced, loan_mismatches, allowance_mismatches, total)


def seed_rows() -> tuple[list[dict], list[dict]]:
    """Rows the initial migration inserts: the chart of accounts and zero allowances."""
    accounts = [
        {"account_code": code, "name": name, "kind": kind, "per_loan": per_loan}
        for code, (name, kind, per_loan) in CHART_OF_ACCOUNTS.items()
    ]
    allowances = [{"bucket": b, "amount_minor": 0} for b, _, _ in BUCKETS]
    return accounts, allowances


__all__ = [name for name in dir() if name.isupper()] + [
    "Line", "post_entry", "reverse_entry", "trial_balance", "check_books", "BooksCheck", "UnbalancedEntry",
    "allowance_account", "seed_rows", "Account",
]
