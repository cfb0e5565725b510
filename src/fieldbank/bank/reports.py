"""Reports for finance and risk: portfolio snapshot (outstanding, by bucket, NPL ratio)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from fieldbank.bank import domain


def portfolio_snapshot(conn: Connection) -> dict[str, Any]:
    """Active book by delinquency bucket. Outstanding = principal + interest + fees receivable.
    NPL ratio = outstanding in buckets 90+ / total outstanding (0 when the book is empty)."""
    rows = {r.bucket: r for r in conn.execute(text(
        "SELECT bucket, count(*) AS loans, coalesce(sum(principal_minor), 0) AS principal_minor, "
        "coalesce(sum(principal_minor + interest_minor + fees_minor), 0) AS outstanding_minor "
        "FROM loans WHERE status = 'active' GROUP BY bucket")).all()}
    allowance = dict(conn.execute(text("SELECT bucket, amount_minor FROM allowance_balances")).all())
    by_status = dict(conn.execute(text("SELECT status, count(*) FROM loans GROUP BY status")).all())
    written_off = conn.execute(text(
        "SELECT coalesce(sum(amount_minor), 0) FROM journal_lines WHERE account_code = 'WRITE_OFF_EXPENSE'"
    )).scalar_one()
    buckets = []
    for name, _, rate_bps in domain.BUCKETS:
        r = rows.get(name)
        buckets.append({"bucket": name, "loans": int(r.loans) if r else 0,
                        "principal_minor": int(r.principal_minor) if r else 0,
                        "outstanding_minor": int(r.outstanding_minor) if r else 0,
                        "allowance_rate_bps": rate_bps, "allowance_minor": int(allowance.get(name, 0))})
    total = sum(b["outstanding_minor"] for b in buckets)
    npl = sum(b["outstanding_minor"] for b in buckets if b["bucket"] in domain.NPL_BUCKETS)
    return {
        "active_loans": sum(b["loans"] for b in buckets),
        "loans_by_status": {k: int(v) for k, v in by_status.items()},
        "outstanding_minor": total,
        "npl_outstanding_minor": npl,
        "npl_ratio": (npl / total) if total else 0.0,
        "allowance_minor": sum(b["allowance_minor"] for b in buckets),
        "written_off_minor": int(written_off),
        "buckets": buckets,
    }
