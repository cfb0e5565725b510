"""The decision log: append-only tables in the bank database, on their own migration chain.

Why a separate Alembic chain (`decision/migrations`, version table `decision_alembic_version`)
instead of a revision in the bank's chain: the decision stage owns its tables, and stages
evolve in parallel; two stages adding "the next revision" to one chain would leave Alembic
with two heads. Both chains run against the same database at app start.

`decisions` holds one row per decision (what was asked, the facts, the portrait's as_of, the
model and policy versions, the score, every rule's outcome, the per-step timings and the exact
response); `decision_acceptances` one row per accepted offer; `decision_shadow_scores` the challenger's PD. Neither is ever updated or
deleted (database triggers refuse it): `GET /v1/decisions/{id}` replays why from the row.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class DecisionBase(DeclarativeBase):
    pass


class Decision(DecisionBase):
    __tablename__ = "decisions"
    decision_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    party_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    phone_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    device_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome: Mapped[str] = mapped_column(String(8))
    grade: Mapped[str] = mapped_column(String(16))
    pd_12m: Mapped[float | None] = mapped_column(Float, nullable=True)
    limit_minor: Mapped[int] = mapped_column(BigInteger)
    apr_bps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    daily_rate_ppm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    portrait_as_of: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    model_ref: Mapped[str | None] = mapped_column(String(160), nullable=True)
    challenger_ref: Mapped[str | None] = mapped_column(String(160), nullable=True)
    policy_name: Mapped[str | None] = mapped_column(String(120), nullable=True)
    policy_version: Mapped[str | None] = mapped_column(String(12), nullable=True)
    inputs_json: Mapped[str] = mapped_column(Text)
    facts_json: Mapped[str] = mapped_column(Text)
    rule_outcomes_json: Mapped[str] = mapped_column(Text)
    steps_json: Mapped[str] = mapped_column(Text)
    response_json: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        Index("ix_decisions_party_created", "party_id", "created_at"),
        Index("ix_decisions_phone_created", "phone_hash", "created_at"),
        Index("ix_decisions_device_created", "device_hash", "created_at"),
        Index("ix_decisions_created", "created_at"),
    )


class DecisionAcceptance(DecisionBase):
    __tablename__ = "decision_acceptances"
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.decision_id"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    accepted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    loan_id: Mapped[int] = mapped_column(BigInteger)
    response_json: Mapped[str] = mapped_column(Text)


class ShadowScore(DecisionBase):
    """The challenger's PD for a decision, scored off the request path (never used to decide)."""

    __tablename__ = "decision_shadow_scores"
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.decision_id"), primary_key=True)
    model_ref: Mapped[str] = mapped_column(String(160))
    pd_12m: Mapped[float] = mapped_column(Float)
    scored_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
