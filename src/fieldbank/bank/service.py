"""The service layer: one method per operation, each a unit of work (one transaction) on the
bank database. Framework-free apart from SQLAlchemy Core; the API and the CLI call these.

Every operation carries an idempotency key: the same key with the same request returns the
stored result; the same key with a different request raises `IdempotencyConflict`. A
rejected request (DomainError) rolls back and changes no state, the key included.

Concurrency: the loan row is locked (SELECT ... FOR UPDATE on PostgreSQL; SQLite serialises
writers with BEGIN IMMEDIATE) before any balance is read, so concurrent draws and repayments
on one line never overdraw it or lose an update.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from fieldbank.bank import domain, ledger
from fieldbank.bank.domain import DomainError
from fieldbank.bank.models import (
    CloseDayRun,
    Disbursement,
    IdempotencyKey,
    Installment,
    JournalEntry,
    Loan,
    PaymentApplication,
    Product,
)
from fieldbank.bank.rails import InternalRail, PaymentRail, RailTimeout

MAX_KEY_LENGTH = 200
MAX_RAIL_STATUS_CHECKS = 3
MAX_KEY_RACE_RETRIES = 3

LOANS = Loan.__table__
INSTALLMENTS = Installment.__table__

DEFAULT_PRODUCTS: tuple[domain.Product, ...] = (
    domain.Product("line-revolving", "revolving", "revolving", apr_bps=1_800, term_months=12,
                   day_count="ACT/365", penalty_bps=900, late_fee_minor=2_000, late_fee_grace_days=3),
    domain.Product("annuity-12m", "installment", "annuity", apr_bps=1_500, term_months=12,
                   day_count="ACT/365", penalty_bps=600, late_fee_minor=5_000, late_fee_grace_days=5),
    domain.Product("equal-principal-6m", "installment", "equal_principal", apr_bps=1_200, term_months=6,
                   day_count="30/360", penalty_bps=600, late_fee_minor=3_000, late_fee_grace_days=5),
    domain.Product("seasonal-9m", "installment", "seasonal", apr_bps=1_000, term_months=9,
                   day_count="ACT/360", penalty_bps=600, late_fee_minor=3_000, late_fee_grace_days=10,
                   harvest_months=(9,)),
)


class IdempotencyConflict(Exception):
    """A used idempotency key came with a different request."""

    def __init__(self, key: str, operation: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used for a different {operation} request")
        self.key = key
        self.operation = operation


class NotFound(LookupError):
    pass


def product_to_row(p: domain.Product) -> dict[str, Any]:
    row = asdict(p)
    row["product_code"] = row.pop("code")
    row["harvest_months"] = ",".join(str(m) for m in p.harvest_months)
    row["allocation_order"] = ",".join(p.allocation_order)
    return row


def product_from_row(r: Any) -> domain.Product:
    return domain.Product(
        code=r.product_code, kind=r.kind, schedule_type=r.schedule_type, apr_bps=r.apr_bps,
        term_months=r.term_months, day_count=r.day_count, penalty_bps=r.penalty_bps,
        late_fee_minor=r.late_fee_minor, late_fee_grace_days=r.late_fee_grace_days,
        grace_periods=r.grace_periods,
        harvest_months=tuple(int(m) for m in r.harvest_months.split(",") if m),
        cycle_days=r.cycle_days, payment_due_days=r.payment_due_days, min_payment_bps=r.min_payment_bps,
        allocation_order=tuple(r.allocation_order.split(",")),
    )


def _hash(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def _key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _check_amount(field_name: str, amount_minor: int) -> None:
    if not isinstance(amount_minor, int) or not 1 <= amount_minor <= domain.MAX_AMOUNT_MINOR:
        raise DomainError(field_name, amount_minor, f"an integer between 1 and {domain.MAX_AMOUNT_MINOR} minor units")


# --------------------------------------------------------------------------------------------
# Payment application: shared by repay, prepay and close-day's credit-balance step.


def owed_components(conn: Connection, loan: Any, on: dt.date, *, prepay: bool = False) -> dict[str, int]:
    """What a payment on `on` may pay, per component. Revolving: everything outstanding.
    Installment: fees + interest and principal of installments due by `on` (prepay: all
    accrued interest and all principal)."""
    if loan.kind == "revolving" or prepay:
        return {"fees": loan.fees_minor, "interest": loan.interest_minor, "principal": loan.principal_minor}
    due = conn.execute(
        select(
            func.coalesce(func.sum(Installment.interest_accrued_minor - Installment.interest_paid_minor), 0),
            func.coalesce(func.sum(Installment.principal_due_minor - Installment.principal_paid_minor), 0),
        ).where(Installment.loan_id == loan.loan_id, Installment.due_on <= on)
    ).one()
    return {
        "fees": loan.fees_minor,
        "interest": min(int(due[0]), loan.interest_minor),
        "principal": min(int(due[1]), loan.principal_minor),
    }


def apply_payment(
    conn: Connection,
    loan: Any,
    amount_minor: int,
    on: dt.date,
    *,
    entry_id: str,
    kind: str,
    debit_account: str,
    prepay: bool = False,
    keep_excess: bool = False,
) -> dict[str, Any]:
    """Allocate `amount_minor` over what is owed, post the entry, apply it to installments.

    debit_account is CLEARING for money coming in, OVERPAYMENT when a credit balance is used.
    The excess goes to the borrower's credit balance (OVERPAYMENT) unless keep_excess (the
    credit balance is the source: the excess simply stays there).
    """
    order = tuple(loan.allocation_order.split(","))
    owed = owed_components(conn, loan, on, prepay=prepay)
    paid, excess_minor = domain.allocate(amount_minor, owed, order)
    applied_minor = amount_minor - excess_minor if keep_excess else amount_minor
    if applied_minor == 0:
        return {"entry_id": None, "paid": paid, "excess_minor": excess_minor}
    lines = [
        ledger.Line(debit_account, applied_minor, loan.loan_id if debit_account == ledger.OVERPAYMENT else None),
        ledger.Line(ledger.FEES_RECEIVABLE, -paid["fees"], loan.loan_id),
        ledger.Line(ledger.INTEREST_RECEIVABLE, -paid["interest"], loan.loan_id),
        ledger.Line(ledger.LOANS_PRINCIPAL, -paid["principal"], loan.loan_id),
    ]
    if not keep_excess:
        lines.append(ledger.Line(ledger.OVERPAYMENT, -excess_minor, loan.loan_id))
    ledger.post_entry(conn, entry_id=entry_id, business_date=on, kind=kind, lines=lines, loan_id=loan.loan_id)
    _apply_to_installments(conn, loan, paid["interest"], paid["principal"], on, entry_id=entry_id, prepay=prepay)
    refresh_delinquency_state(conn, loan.loan_id, on)
    _close_if_repaid(conn, loan.loan_id, on)
    return {"entry_id": entry_id, "paid": paid, "excess_minor": excess_minor}


def _apply_to_installments(
    conn: Connection, loan: Any, interest_minor: int, principal_minor: int, on: dt.date, *, entry_id: str, prepay: bool
) -> None:
    rows = conn.execute(
        select(INSTALLMENTS).where(INSTALLMENTS.c.loan_id == loan.loan_id).order_by(INSTALLMENTS.c.seq)
    ).all()
    applied: dict[int, list[int]] = {}
    interest_left, principal_left = interest_minor, principal_minor
    for r in rows:  # interest: oldest first, up to what has accrued on each installment
        take = min(interest_left, r.interest_accrued_minor - r.interest_paid_minor)
        if take > 0:
            applied.setdefault(r.seq, [0, 0])[0] += take
            interest_left -= take
    due_rows = [r for r in rows if r.due_on <= on]
    future_rows = [r for r in rows if r.due_on > on]
    # Principal: due installments oldest first; beyond that (revolving extra principal or a
    # prepayment) the last installments first, so a prepayment shortens the term.
    for r in due_rows + (list(reversed(future_rows)) if loan.kind == "installment" else future_rows):
        take = min(principal_left, r.principal_due_minor - r.principal_paid_minor)
        if take > 0:
            applied.setdefault(r.seq, [0, 0])[1] += take
            principal_left -= take
    # Revolving lines: interest accrued since the last statement is paid without a statement.
    assert interest_left == 0 or loan.kind == "revolving", f"loan {loan.loan_id}: interest {interest_left} left"
    # Revolving principal beyond what was billed reduces the balance without a statement.
    assert principal_left == 0 or loan.kind == "revolving", f"loan {loan.loan_id}: principal {principal_left} left"
    for seq, (interest, principal) in applied.items():
        conn.execute(
            update(INSTALLMENTS)
            .where(INSTALLMENTS.c.loan_id == loan.loan_id, INSTALLMENTS.c.seq == seq)
            .values(interest_paid_minor=INSTALLMENTS.c.interest_paid_minor + interest,
                    principal_paid_minor=INSTALLMENTS.c.principal_paid_minor + principal)
        )
        conn.execute(insert(PaymentApplication).values(
            entry_id=entry_id, loan_id=loan.loan_id, seq=seq, principal_minor=principal, interest_minor=interest))
    if loan.kind == "revolving":
        billed_interest = sum(v[0] for v in applied.values())
        billed_principal = sum(v[1] for v in applied.values())
        conn.execute(update(LOANS).where(LOANS.c.loan_id == loan.loan_id).values(
            billed_interest_minor=LOANS.c.billed_interest_minor - billed_interest,
            billed_principal_minor=LOANS.c.billed_principal_minor - billed_principal))
    if prepay and loan.kind == "installment":
        _reprice_future_installments(conn, loan, on)


def _reprice_future_installments(conn: Connection, loan: Any, on: dt.date) -> None:
    """After a prepayment: interest of periods not yet started is recomputed on the new
    outstanding principal path (the contract's rate and day count)."""
    rows = conn.execute(
        select(INSTALLMENTS).where(INSTALLMENTS.c.loan_id == loan.loan_id).order_by(INSTALLMENTS.c.seq)
    ).all()
    remaining = [r.principal_due_minor - r.principal_paid_minor for r in rows]
    for i, r in enumerate(rows):
        if r.start_on < on:
            continue
        outstanding = sum(remaining[i:])
        days = domain.period_days(loan.day_count, r.start_on, r.due_on)
        interest = domain.period_interest_minor(outstanding, loan.apr_bps, days, loan.day_count)
        assert r.interest_accrued_minor == 0 and r.interest_paid_minor == 0
        conn.execute(update(INSTALLMENTS).where(INSTALLMENTS.c.loan_id == loan.loan_id, INSTALLMENTS.c.seq == r.seq)
                     .values(interest_due_minor=interest))


def refresh_delinquency_state(conn: Connection, loan_id: int, on: dt.date) -> None:
    """Recompute one loan's oldest unpaid due date and overdue principal from its installments."""
    unpaid = (Installment.principal_paid_minor < Installment.principal_due_minor) | (
        Installment.interest_paid_minor < Installment.interest_due_minor)
    oldest = conn.execute(
        select(func.min(Installment.due_on)).where(Installment.loan_id == loan_id, unpaid)
    ).scalar_one()
    overdue = conn.execute(
        select(func.coalesce(func.sum(Installment.principal_due_minor - Installment.principal_paid_minor), 0))
        .where(Installment.loan_id == loan_id, Installment.due_on < on)
    ).scalar_one()
    conn.execute(update(LOANS).where(LOANS.c.loan_id == loan_id).values(
        oldest_unpaid_due_on=oldest, overdue_principal_minor=int(overdue)))


def _close_if_repaid(conn: Connection, loan_id: int, on: dt.date) -> None:
    loan = conn.execute(select(LOANS).where(LOANS.c.loan_id == loan_id)).one()
    if loan.kind != "installment" or loan.status != "active":
        return
    if loan.principal_minor == 0 and loan.interest_minor == 0 and loan.fees_minor == 0 and loan.disbursed_minor > 0:
        # Interest not yet accrued is not owed: the schedule is settled as paid.
        conn.execute(update(INSTALLMENTS).where(INSTALLMENTS.c.loan_id == loan_id).values(
            interest_due_minor=INSTALLMENTS.c.interest_paid_minor,
            interest_accrued_minor=INSTALLMENTS.c.interest_paid_minor,
            principal_due_minor=INSTALLMENTS.c.principal_paid_minor))
        conn.execute(update(LOANS).where(LOANS.c.loan_id == loan_id).values(
            status="closed", closed_on=on, oldest_unpaid_due_on=None, overdue_principal_minor=0, dpd=0,
            bucket="current"))


# --------------------------------------------------------------------------------------------


class BankService:
    """Operations on the bank database. `rail` moves disbursed money; default: internal book transfer."""

    def __init__(self, engine: Engine, rail: PaymentRail | None = None) -> None:
        self.engine = engine
        self.rail: PaymentRail = rail or InternalRail()
        self.is_postgres = engine.dialect.name == "postgresql"

    # ---- helpers -------------------------------------------------------------------------

    def business_date(self, conn: Connection) -> dt.date:
        """The open business date: the day after the last closed one (today if none closed)."""
        last = conn.execute(select(func.max(CloseDayRun.business_date)).where(CloseDayRun.status == "done")).scalar()
        return last + dt.timedelta(days=1) if last else dt.datetime.now(dt.UTC).date()

    def _day(self, conn: Connection, on: dt.date | None) -> dt.date:
        """The operation's value date: `on`, or the open business date; never a closed date."""
        last = conn.execute(select(func.max(CloseDayRun.business_date)).where(CloseDayRun.status == "done")).scalar()
        day = on or (last + dt.timedelta(days=1) if last else dt.datetime.now(dt.UTC).date())
        if last is not None and day <= last:
            raise DomainError("on", day.isoformat(), f"must be after the last closed business date {last}")
        return day

    def _lock_loan(self, conn: Connection, loan_id: int) -> Any:
        query = select(LOANS).where(LOANS.c.loan_id == loan_id)
        if self.is_postgres:
            query = query.with_for_update()
        loan = conn.execute(query).one_or_none()
        if loan is None:
            raise NotFound(f"loan {loan_id} not found")
        return loan

    def _idempotent(self, key: str, operation: str, request: dict[str, Any], work) -> dict[str, Any]:  # noqa: ANN001
        """Run `work(conn)` once per key, inside one transaction with the key's record."""
        if not key or len(key) > MAX_KEY_LENGTH:
            raise DomainError("Idempotency-Key", key, f"required, 1..{MAX_KEY_LENGTH} characters")
        request_hash = _hash({"operation": operation, **request})
        for _attempt in range(MAX_KEY_RACE_RETRIES):
            try:
                with self.engine.begin() as conn:
                    row = conn.execute(select(IdempotencyKey).where(IdempotencyKey.key == key)).one_or_none()
                    if row is not None:
                        if row.request_hash != request_hash:
                            raise IdempotencyConflict(key, row.operation)
                        return {**json.loads(row.response_json), "replayed": True}
                    conn.execute(insert(IdempotencyKey).values(key=key, operation=operation, request_hash=request_hash))
                    response = work(conn)
                    conn.execute(update(IdempotencyKey).where(IdempotencyKey.key == key)
                                 .values(response_json=json.dumps(response, default=str)))
                    return {**response, "replayed": False}
            except IntegrityError:
                # A concurrent request with the same key committed first: read its result.
                continue
        raise RuntimeError(f"idempotency key {key!r}: gave up after {MAX_KEY_RACE_RETRIES} races")

    # ---- setup ---------------------------------------------------------------------------

    def ensure_products(self, products: tuple[domain.Product, ...] = DEFAULT_PRODUCTS) -> None:
        with self.engine.begin() as conn:
            existing = set(conn.execute(select(Product.product_code)).scalars())
            rows = [product_to_row(p) for p in products if p.code not in existing]
            if rows:
                conn.execute(insert(Product), rows)

    def product(self, conn: Connection, product_code: str) -> domain.Product:
        row = conn.execute(select(Product.__table__).where(Product.product_code == product_code)).one_or_none()
        if row is None:
            raise DomainError("product_code", product_code, "must name an existing product")
        return product_from_row(row)

    # ---- operations ----------------------------------------------------------------------

    def open_line(
        self,
        *,
        offer_id: str,
        party_id: str,
        product_code: str,
        amount_minor: int,
        idempotency_key: str,
        apr_bps: int | None = None,
        on: dt.date | None = None,
    ) -> dict[str, Any]:
        """Open a credit line (limit = amount) or an installment loan (principal = amount,
        disbursed at once) from an accepted offer. The offer's priced APR overrides the product's."""
        _check_amount("amount_minor", amount_minor)
        if not offer_id or len(offer_id) > 80:
            raise DomainError("offer_id", offer_id, "required, 1..80 characters")
        if not party_id or len(party_id) > 80:
            raise DomainError("party_id", party_id, "required, 1..80 characters")
        request = {"offer_id": offer_id, "party_id": party_id, "product_code": product_code,
                   "amount_minor": amount_minor, "apr_bps": apr_bps, "on": on}

        def work(conn: Connection) -> dict[str, Any]:
            product = self.product(conn, product_code)
            apr = product.apr_bps if apr_bps is None else apr_bps
            if not 0 <= apr <= domain.MAX_APR_BPS:
                raise DomainError("apr_bps", apr, f"between 0 and {domain.MAX_APR_BPS}")
            if conn.execute(select(Loan.loan_id).where(Loan.offer_id == offer_id)).first() is not None:
                raise DomainError("offer_id", offer_id, "an offer can be accepted only once")
            opened_on = self._day(conn, on)
            maturity_on = domain.add_months(opened_on, product.term_months)
            schedule = (domain.build_schedule(domain.Product(**{**asdict(product), "apr_bps": apr}), amount_minor, opened_on)
                        if product.kind == "installment" else [])
            loan_id = conn.execute(insert(Loan).values(
                offer_id=offer_id, party_id=party_id, product_code=product_code, kind=product.kind,
                apr_bps=apr, penalty_bps=product.penalty_bps, day_count=product.day_count,
                late_fee_minor=product.late_fee_minor, late_fee_grace_days=product.late_fee_grace_days,
                cycle_days=product.cycle_days, payment_due_days=product.payment_due_days,
                min_payment_bps=product.min_payment_bps, allocation_order=",".join(product.allocation_order),
                limit_minor=amount_minor, opened_on=opened_on, maturity_on=maturity_on,
                term_days=(maturity_on - opened_on).days, status="active",
            ).returning(Loan.loan_id)).scalar_one()
            if schedule:
                conn.execute(insert(Installment), [
                    {"loan_id": loan_id, "seq": i.seq, "start_on": i.start_on, "due_on": i.due_on,
                     "principal_due_minor": i.principal_minor, "interest_due_minor": i.interest_minor}
                    for i in schedule
                ])
                first_due = next((i.due_on for i in schedule if i.total_minor > 0), None)
                conn.execute(update(LOANS).where(LOANS.c.loan_id == loan_id).values(oldest_unpaid_due_on=first_due))
            return {"loan_id": loan_id, "kind": product.kind, "limit_minor": amount_minor, "apr_bps": apr,
                    "opened_on": opened_on.isoformat(), "maturity_on": maturity_on.isoformat()}

        opened = self._idempotent(idempotency_key, "open", request, work)
        if opened["kind"] == "installment":
            disbursement = self.draw(loan_id=opened["loan_id"], amount_minor=amount_minor,
                                     idempotency_key=f"{idempotency_key}:disburse", on=on, _initial=True)
            opened = {**opened, "disbursement": disbursement}
        return opened

    def draw(
        self, *, loan_id: int, amount_minor: int, idempotency_key: str, on: dt.date | None = None,
        _initial: bool = False,
    ) -> dict[str, Any]:
        """Disburse from a credit line: reserve (ledger) -> rail -> settle or reverse.

        Phase 1 (one transaction): lock the line, check the limit, post Dr principal / Cr
        clearing, record a pending disbursement. Phase 2: the rail, outside any transaction.
        Phase 3 (one transaction): settled -> Dr clearing / Cr borrower payment account;
        failed -> reversal of the reservation. A retry with the same key resumes a pending
        disbursement (asking the rail what happened) and never pays twice.
        """
        _check_amount("amount_minor", amount_minor)
        request = {"loan_id": loan_id, "amount_minor": amount_minor, "on": on}

        def reserve(conn: Connection) -> dict[str, Any]:
            loan = self._lock_loan(conn, loan_id)
            if loan.status != "active":
                raise DomainError("loan_id", loan_id, f"loan must be active (is {loan.status})")
            if loan.kind != "revolving" and not _initial:
                raise DomainError("loan_id", loan_id, "draws are for credit lines; installment loans disburse at opening")
            day = self._day(conn, on)
            if day > loan.maturity_on:
                raise DomainError("on", day.isoformat(), f"credit line matured on {loan.maturity_on}")
            available_minor = loan.limit_minor - loan.principal_minor
            if amount_minor > available_minor:
                raise DomainError("amount_minor", amount_minor, f"<= available limit {available_minor}")
            disbursement_id = f"disb-{_key_id(idempotency_key)}"
            entry_id = ledger.post_entry(
                conn, entry_id=f"{disbursement_id}:reserve", business_date=day, kind="draw_reserve",
                loan_id=loan_id,
                lines=[ledger.Line(ledger.LOANS_PRINCIPAL, amount_minor, loan_id),
                       ledger.Line(ledger.CLEARING, -amount_minor)],
            )
            conn.execute(insert(Disbursement).values(
                disbursement_id=disbursement_id, loan_id=loan_id, amount_minor=amount_minor, status="pending",
                business_date=day, reserve_entry_id=entry_id))
            conn.execute(update(LOANS).where(LOANS.c.loan_id == loan_id).values(
                pending_disbursement_minor=LOANS.c.pending_disbursement_minor + amount_minor))
            assert loan.principal_minor + amount_minor <= loan.limit_minor
            return {"disbursement_id": disbursement_id, "loan_id": loan_id, "amount_minor": amount_minor,
                    "status": "pending"}

        reserved = self._idempotent(idempotency_key, "draw", request, reserve)
        finished = self._finish_disbursement(reserved["disbursement_id"], idempotency_key)
        return {**finished, "replayed": reserved["replayed"]}

    def _finish_disbursement(self, disbursement_id: str, idempotency_key: str | None) -> dict[str, Any]:
        with self.engine.connect() as conn:
            d = conn.execute(select(Disbursement.__table__).where(
                Disbursement.disbursement_id == disbursement_id)).one()
            party_id = conn.execute(select(Loan.party_id).where(Loan.loan_id == d.loan_id)).scalar_one()
        if d.status == "pending":
            outcome, reason = self._ask_rail(disbursement_id, party_id, d.amount_minor)
            with self.engine.begin() as conn:
                self._lock_loan(conn, d.loan_id)
                d = conn.execute(select(Disbursement.__table__).where(
                    Disbursement.disbursement_id == disbursement_id)).one()
                if d.status == "pending":  # not finished by a concurrent retry meanwhile
                    self._settle_or_reverse(conn, d, outcome, reason)
                    d = conn.execute(select(Disbursement.__table__).where(
                        Disbursement.disbursement_id == disbursement_id)).one()
                response = {"disbursement_id": d.disbursement_id, "loan_id": d.loan_id,
                            "amount_minor": d.amount_minor, "status": d.status,
                            "failure_reason": d.failure_reason}
                if idempotency_key:
                    conn.execute(update(IdempotencyKey).where(IdempotencyKey.key == idempotency_key)
                                 .values(response_json=json.dumps(response)))
                return response
        return {"disbursement_id": d.disbursement_id, "loan_id": d.loan_id, "amount_minor": d.amount_minor,
                "status": d.status, "failure_reason": d.failure_reason}

    def _ask_rail(self, transfer_id: str, party_id: str, amount_minor: int) -> tuple[str, str | None]:
        try:
            outcome = self.rail.disburse(transfer_id, party_id, amount_minor)
            return outcome, None if outcome == "settled" else "rejected by the payment rail"
        except RailTimeout:
            # The transfer may have executed: ask, then cancel if it has not. Never guess.
            for _ in range(MAX_RAIL_STATUS_CHECKS):
                status = self.rail.status(transfer_id)
                if status == "settled":
                    return "settled", None
                if status == "failed":
                    return "failed", "payment rail reported failure after a timeout"
                if self.rail.cancel(transfer_id):
                    return "failed", "payment rail timed out; transfer cancelled"
            return "pending", None  # still unknown: stays reserved; a retry resumes it

    def _settle_or_reverse(self, conn: Connection, d: Any, outcome: str, reason: str | None) -> None:
        day = d.business_date
        if outcome == "settled":
            entry_id = ledger.post_entry(
                conn, entry_id=f"{d.disbursement_id}:settle", business_date=day, kind="draw_settle",
                loan_id=d.loan_id,
                lines=[ledger.Line(ledger.CLEARING, d.amount_minor),
                       ledger.Line(ledger.BORROWER_PAYMENT, -d.amount_minor, d.loan_id)],
            )
            conn.execute(update(LOANS).where(LOANS.c.loan_id == d.loan_id).values(
                disbursed_minor=LOANS.c.disbursed_minor + d.amount_minor))
            status = "settled"
        elif outcome == "failed":
            entry_id = ledger.reverse_entry(conn, d.reserve_entry_id, business_date=day, kind="draw_reversal")
            status = "reversed"
            loan = conn.execute(select(LOANS).where(LOANS.c.loan_id == d.loan_id)).one()
            if loan.kind == "installment" and loan.disbursed_minor == 0:
                conn.execute(update(LOANS).where(LOANS.c.loan_id == d.loan_id).values(
                    status="cancelled", closed_on=day, oldest_unpaid_due_on=None))
        else:
            return
        conn.execute(update(Disbursement).where(Disbursement.disbursement_id == d.disbursement_id).values(
            status=status, final_entry_id=entry_id, failure_reason=reason))
        conn.execute(update(LOANS).where(LOANS.c.loan_id == d.loan_id).values(
            pending_disbursement_minor=LOANS.c.pending_disbursement_minor - d.amount_minor))

    def resume_pending_disbursements(self, limit: int = 1000) -> int:
        """Finish disbursements left pending by a crash or an unknown rail outcome."""
        with self.engine.connect() as conn:
            ids = list(conn.execute(select(Disbursement.disbursement_id).where(
                Disbursement.status == "pending").limit(limit)).scalars())
        for disbursement_id in ids:
            self._finish_disbursement(disbursement_id, None)
        return len(ids)

    def repay(self, *, loan_id: int, amount_minor: int, idempotency_key: str, on: dt.date | None = None,
              prepay: bool = False) -> dict[str, Any]:
        """Money received from the borrower. Allocation in the contract's order (default fees ->
        interest -> principal) over what is due; the excess becomes a credit balance. On a
        written-off loan the money is a recovery. prepay=True also pays principal not yet due
        (shortening the term) and reprices the periods not yet started."""
        _check_amount("amount_minor", amount_minor)
        operation = "prepay" if prepay else "repay"
        request = {"loan_id": loan_id, "amount_minor": amount_minor, "on": on}

        def work(conn: Connection) -> dict[str, Any]:
            loan = self._lock_loan(conn, loan_id)
            day = self._day(conn, on)
            entry_id = f"{operation}-{_key_id(idempotency_key)}"
            if loan.status == "written_off":
                ledger.post_entry(conn, entry_id=entry_id, business_date=day, kind="recovery", loan_id=loan_id,
                                  lines=[ledger.Line(ledger.CLEARING, amount_minor),
                                         ledger.Line(ledger.RECOVERIES, -amount_minor)])
                conn.execute(update(LOANS).where(LOANS.c.loan_id == loan_id).values(
                    recovered_minor=LOANS.c.recovered_minor + amount_minor))
                return {"loan_id": loan_id, "entry_id": entry_id, "recovery_minor": amount_minor,
                        "paid": {"fees": 0, "interest": 0, "principal": 0}, "excess_minor": 0}
            if loan.status != "active":
                raise DomainError("loan_id", loan_id, f"loan must be active or written off (is {loan.status})")
            result = apply_payment(conn, loan, amount_minor, day, entry_id=entry_id, kind=operation,
                                   debit_account=ledger.CLEARING, prepay=prepay)
            return {"loan_id": loan_id, **result, "recovery_minor": 0}

        return self._idempotent(idempotency_key, operation, request, work)

    def prepay(self, *, loan_id: int, amount_minor: int, idempotency_key: str, on: dt.date | None = None) -> dict[str, Any]:
        return self.repay(loan_id=loan_id, amount_minor=amount_minor, idempotency_key=idempotency_key, on=on,
                          prepay=True)

    def reverse_payment(self, *, entry_id: str, idempotency_key: str, on: dt.date | None = None) -> dict[str, Any]:
        """Correct a repayment (or a recovery) posted in error: a reversal entry plus the exact
        undo of its application to installments. Prepayments are not reversible (they reprice)."""
        request = {"entry_id": entry_id, "on": on}

        def work(conn: Connection) -> dict[str, Any]:
            entry = conn.execute(select(JournalEntry.__table__).where(JournalEntry.entry_id == entry_id)).one_or_none()
            if entry is None or entry.kind not in ("repay", "recovery"):
                raise DomainError("entry_id", entry_id, "must name a repayment or recovery entry")
            if conn.execute(select(JournalEntry.entry_id).where(JournalEntry.reverses_entry_id == entry_id)).first():
                raise DomainError("entry_id", entry_id, "already reversed")
            loan = self._lock_loan(conn, entry.loan_id)
            day = self._day(conn, on)
            lines = ledger.entry_lines(conn, entry_id)
            credit_taken = -sum(ln.amount_minor for ln in lines if ln.account_code == ledger.OVERPAYMENT)
            if credit_taken > loan.credit_minor:
                raise DomainError("entry_id", entry_id, "its overpayment was already used; reverse is not possible")
            if entry.kind == "repay" and loan.status not in ("active", "closed"):
                raise DomainError("entry_id", entry_id, f"loan is {loan.status}")
            reversal_id = ledger.reverse_entry(conn, entry_id, business_date=day)
            if entry.kind == "recovery":
                conn.execute(update(LOANS).where(LOANS.c.loan_id == loan.loan_id).values(
                    recovered_minor=LOANS.c.recovered_minor + sum(
                        ln.amount_minor for ln in lines if ln.account_code == ledger.RECOVERIES)))
                return {"loan_id": loan.loan_id, "entry_id": reversal_id}
            applications = conn.execute(select(PaymentApplication.__table__).where(
                PaymentApplication.entry_id == entry_id)).all()
            for a in applications:
                conn.execute(update(INSTALLMENTS).where(INSTALLMENTS.c.loan_id == a.loan_id, INSTALLMENTS.c.seq == a.seq)
                             .values(interest_paid_minor=INSTALLMENTS.c.interest_paid_minor - a.interest_minor,
                                     principal_paid_minor=INSTALLMENTS.c.principal_paid_minor - a.principal_minor))
            if loan.kind == "revolving":
                conn.execute(update(LOANS).where(LOANS.c.loan_id == loan.loan_id).values(
                    billed_interest_minor=LOANS.c.billed_interest_minor + sum(a.interest_minor for a in applications),
                    billed_principal_minor=LOANS.c.billed_principal_minor + sum(a.principal_minor for a in applications)))
            if loan.status == "closed":
                assert loan.kind == "installment"
                raise DomainError("entry_id", entry_id, "the loan was closed by this payment; reopen is not supported")
            refresh_delinquency_state(conn, loan.loan_id, day)
            return {"loan_id": loan.loan_id, "entry_id": reversal_id}

        return self._idempotent(idempotency_key, "reverse", request, work)

    # ---- views ---------------------------------------------------------------------------

    def loan(self, loan_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(LOANS).where(LOANS.c.loan_id == loan_id)).mappings().one_or_none()
        if row is None:
            raise NotFound(f"loan {loan_id} not found")
        return dict(row)

    def schedule(self, loan_id: int) -> list[dict[str, Any]]:
        self.loan(loan_id)
        with self.engine.connect() as conn:
            rows = conn.execute(select(INSTALLMENTS).where(INSTALLMENTS.c.loan_id == loan_id)
                                .order_by(INSTALLMENTS.c.seq)).mappings().all()
        return [dict(r) for r in rows]

    def statement(self, loan_id: int, *, max_entries: int = 500) -> dict[str, Any]:
        """The loan's balances and its journal lines (newest last), bounded to max_entries."""
        loan = self.loan(loan_id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(JournalEntry.entry_id, JournalEntry.business_date, JournalEntry.kind,
                       ledger.JournalLine.account_code, ledger.JournalLine.amount_minor)
                .join(ledger.JournalLine, ledger.JournalLine.entry_id == JournalEntry.entry_id)
                .where(ledger.JournalLine.loan_id == loan_id)
                .order_by(JournalEntry.business_date, JournalEntry.created_at, JournalEntry.entry_id,
                          ledger.JournalLine.line_no)
                .limit(max_entries)
            ).mappings().all()
        return {"loan": loan, "lines": [dict(r) for r in rows]}
