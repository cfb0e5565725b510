"""The decision log as the dashboard sees it: approval rate, approval and bad rate by risk
grade, and the newest decisions. Reads the decision service's tables (`decisions`,
`decision_acceptances`) in the bank database, joined to the loans they opened; returns None
when the decision stage's tables are not there."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, inspect, text

MAX_LOG_ROWS = 200  # one page of the log


def has_decisions(conn: Connection) -> bool:
    return inspect(conn).has_table("decisions") and inspect(conn).has_table("decision_acceptances")


def decision_summary(conn: Connection) -> dict[str, Any] | None:
    """Decisions, approval rate, and per grade: decisions, approvals, loans booked from them
    and their bad rate (share of those loans that reached 90+ DPD: `defaulted_on` set)."""
    if not has_decisions(conn):
        return None
    rows = conn.execute(text(
        "SELECT d.grade, count(*) AS decisions, "
        "sum(CASE WHEN d.outcome = 'approve' THEN 1 ELSE 0 END) AS approved, "
        "count(l.loan_id) AS loans, "
        "sum(CASE WHEN l.defaulted_on IS NOT NULL THEN 1 ELSE 0 END) AS bad "
        "FROM decisions d LEFT JOIN decision_acceptances a ON a.decision_id = d.decision_id "
        "LEFT JOIN loans l ON l.loan_id = a.loan_id GROUP BY d.grade")).all()
    grades = []
    for r in sorted(rows, key=lambda r: (r.grade == "unrated", r.grade)):
        decisions, approved, loans, bad = int(r.decisions), int(r.approved or 0), int(r.loans), int(r.bad or 0)
        assert approved <= decisions and bad <= loans <= approved, r
        grades.append({"grade": r.grade, "decisions": decisions, "approved": approved,
                       "approval_rate": approved / decisions, "loans": loans,
                       "bad_rate": (bad / loans) if loans else None})
    total = sum(g["decisions"] for g in grades)
    approved = sum(g["approved"] for g in grades)
    return {"decisions": total, "approved": approved, "approval_rate": (approved / total) if total else None,
            "grades": grades}


def decision_log(conn: Connection, limit: int = 50, before: str | None = None) -> list[dict[str, Any]]:
    """The newest decisions (before the `before` created_at, for paging), each with its
    reasons and the loan it opened, if accepted."""
    assert 1 <= limit <= MAX_LOG_ROWS, limit
    if not has_decisions(conn):
        return []
    where = "WHERE d.created_at < :before " if before else ""
    rows = conn.execute(text(
        "SELECT d.decision_id, d.created_at, d.party_id, d.outcome, d.grade, d.pd_12m, d.limit_minor, d.apr_bps, "
        "d.model_ref, d.policy_name, d.policy_version, d.response_json, a.loan_id "
        "FROM decisions d LEFT JOIN decision_acceptances a ON a.decision_id = d.decision_id "
        f"{where}ORDER BY d.created_at DESC, d.decision_id DESC LIMIT :limit"),
        {"limit": limit, **({"before": before} if before else {})}).mappings().all()
    out = []
    for r in rows:
        response = json.loads(r["response_json"])
        out.append({**{k: v for k, v in r.items() if k != "response_json"}, "reasons": response.get("reasons", [])})
    return out
