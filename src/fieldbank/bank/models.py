"""SQLAlchemy 2 models of the bank database (the schema Alembic migrates).

The ledger (journal_entries + journal_lines) is the source of truth; the balance columns
on `loans` and `allowance_balances` are stored balances that `ledger.check_books` proves
equal to a replay of the lines. Amounts are signed integer minor units: debit > 0, credit < 0.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments "INTEGER PRIMARY KEY"; PostgreSQL gets a bigint identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Account(Base):
    """The chart of accounts. `per_loan` accounts carry a loan_id on every line (sub-ledger)."""

    __tablename__ = "accounts"
    account_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(16))  # asset | contra_asset | liability | income | expense
    per_loan: Mapped[bool] = mapped_column(Boolean)


class Product(Base):
    __tablename__ = "products"
    product_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    schedule_type: Mapped[str] = mapped_column(String(20))
    apr_bps: Mapped[int] = mapped_column(Integer)
    term_months: Mapped[int] = mapped_column(Integer)
    day_count: Mapped[str] = mapped_column(String(8))
    penalty_bps: Mapped[int] = mapped_column(Integer)
    late_fee_minor: Mapped[int] = mapped_column(BigInteger)
    late_fee_grace_days: Mapped[int] = mapped_column(Integer)
    grace_periods: Mapped[int] = mapped_column(Integer)
    harvest_months: Mapped[str] = mapped_column(String(80))  # comma-separated period numbers
    cycle_days: Mapped[int] = mapped_column(Integer)
    payment_due_days: Mapped[int] = mapped_column(Integer)
    min_payment_bps: Mapped[int] = mapped_column(Integer)
    allocation_order: Mapped[str] = mapped_column(String(40))  # e.g. "fees,interest,principal"


class Loan(Base):
    """A credit line or an installment loan. Contract terms are copied from the product at
    opening so a later product change never alters a signed contract (and close-day needs
    no join)."""

    __tablename__ = "loans"
    loan_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    offer_id: Mapped[str] = mapped_column(String(80), unique=True)
    party_id: Mapped[str] = mapped_column(String(80), index=True)
    product_code: Mapped[str] = mapped_column(ForeignKey("products.product_code"))
    kind: Mapped[str] = mapped_column(String(16))
    apr_bps: Mapped[int] = mapped_column(Integer)
    penalty_bps: Mapped[int] = mapped_column(Integer)
    day_count: Mapped[str] = mapped_column(String(8))
    late_fee_minor: Mapped[int] = mapped_column(BigInteger)
    late_fee_grace_days: Mapped[int] = mapped_column(Integer)
    cycle_days: Mapped[int] = mapped_column(Integer)
    payment_due_days: Mapped[int] = mapped_column(Integer)
    min_payment_bps: Mapped[int] = mapped_column(Integer)
    allocation_order: Mapped[str] = mapped_column(String(40))
    limit_minor: Mapped[int] = mapped_column(BigInteger)
    opened_on: Mapped[dt.date] = mapped_column(Date)
    maturity_on: Mapped[dt.date] = mapped_column(Date)
    term_days: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active|closed|written_off
    # Stored balances (proved against the ledger by check_books).
    principal_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # LOANS_PRINCIPAL (debit)
    interest_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # INTEREST_RECEIVABLE
    fees_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # FEES_RECEIVABLE
    credit_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # OVERPAYMENT (credit)
    payment_account_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # BORROWER_PAYMENT
    pending_disbursement_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    disbursed_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # cumulative, settled
    recovered_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # Accrual state: sub-minor remainders in minor x bps x day units, carried day to day.
    interest_carry: Mapped[int] = mapped_column(BigInteger, default=0)
    penalty_carry: Mapped[int] = mapped_column(BigInteger, default=0)
    last_accrual_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # the last day's
    # Delinquency state.
    billed_interest_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # revolving: billed, unpaid
    billed_principal_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    overdue_principal_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    oldest_unpaid_due_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    dpd: Mapped[int] = mapped_column(Integer, default=0)
    max_dpd: Mapped[int] = mapped_column(Integer, default=0)
    bucket: Mapped[str] = mapped_column(String(8), default="current")
    defaulted_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    closed_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    written_off_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)

    __table_args__ = (Index("ix_loans_status_kind", "status", "kind"),)


class Installment(Base):
    """One due amount: a scheduled installment, or a revolving line's statement."""

    __tablename__ = "installments"
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.loan_id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_on: Mapped[dt.date] = mapped_column(Date)  # interest period (start_on, due_on]
    due_on: Mapped[dt.date] = mapped_column(Date)
    principal_due_minor: Mapped[int] = mapped_column(BigInteger)
    interest_due_minor: Mapped[int] = mapped_column(BigInteger)
    interest_accrued_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    last_accrual_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    principal_paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    interest_paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    late_fee_charged: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_installments_due_on", "due_on"), Index("ix_installments_start_on", "start_on"))


class JournalEntry(Base):
    """An entry header. Inserted AFTER its lines: the database then checks the lines balance
    (see the migration's triggers); once the header exists no line can be added."""

    __tablename__ = "journal_entries"
    entry_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    business_date: Mapped[dt.date] = mapped_column(Date, index=True)
    kind: Mapped[str] = mapped_column(String(24))
    loan_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    line_count: Mapped[int] = mapped_column(Integer)
    reverses_entry_id: Mapped[str | None] = mapped_column(String(120), unique=True, nullable=True)
    memo: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class JournalLine(Base):
    __tablename__ = "journal_lines"
    entry_id: Mapped[str] = mapped_column(
        ForeignKey("journal_entries.entry_id", deferrable=True, initially="DEFERRED"), primary_key=True
    )
    line_no: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # batch entries: derived from loan_id
    account_code: Mapped[str] = mapped_column(ForeignKey("accounts.account_code"))
    loan_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # debit > 0, credit < 0, never 0

    __table_args__ = (Index("ix_journal_lines_loan", "loan_id"),)


class PaymentApplication(Base):
    """How a payment entry was applied to installments, so a reversal can undo it exactly."""

    __tablename__ = "payment_applications"
    entry_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    loan_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_minor: Mapped[int] = mapped_column(BigInteger)
    interest_minor: Mapped[int] = mapped_column(BigInteger)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    operation: Mapped[str] = mapped_column(String(40))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Disbursement(Base):
    """A draw in flight: reserved in the ledger, then settled or reversed by the rail outcome."""

    __tablename__ = "disbursements"
    disbursement_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    loan_id: Mapped[int] = mapped_column(BigInteger, index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # pending | settled | reversed
    business_date: Mapped[dt.date] = mapped_column(Date)
    reserve_entry_id: Mapped[str] = mapped_column(String(120))
    final_entry_id: Mapped[str | None] = mapped_column(String(120), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)


class AllowanceBalance(Base):
    """Stored loss allowance per delinquency bucket (credit balance, positive)."""

    __tablename__ = "allowance_balances"
    bucket: Mapped[str] = mapped_column(String(8), primary_key=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class CloseDayStep(Base):
    """A committed close-day step: resuming a crashed run skips these."""

    __tablename__ = "close_day_steps"
    business_date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    step: Mapped[str] = mapped_column(String(24), primary_key=True)
    rows_affected: Mapped[int] = mapped_column(BigInteger)
    done_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CloseDayRun(Base):
    __tablename__ = "close_day_runs"
    business_date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # running | done
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
