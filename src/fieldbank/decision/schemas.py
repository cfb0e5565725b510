"""The application and decision shapes (pydantic): the API's bodies and the service's types."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

MAX_REQUESTED_MINOR = 1_000_000_000  # 10 million major units: far above any automatic decision
MIN_TERM_DAYS, MAX_TERM_DAYS = 30, 730
Hash = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{16,64}$", description="hex hash (16-64 digits), never the raw value")]
PartyId = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.:-]+$")]
Purpose = Literal["working_capital", "inventory", "equipment", "agri_inputs", "household", "education",
                  "health", "other"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewApplicantIn(_Body):
    """A new applicant (not yet a party in the lake): identity and what they declare."""

    kind: Literal["household", "business"]
    national_id: str = Field(min_length=1, max_length=40, description="18-character resident ID number")
    declared_income_minor: Annotated[StrictInt, Field(ge=0, le=MAX_REQUESTED_MINOR * 100)] | None = Field(
        None, description="self-declared yearly income, minor units")


class ApplicationIn(_Body):
    """Exactly one of `party_id` (an existing party) or `applicant` (a new applicant)."""

    party_id: PartyId | None = None
    applicant: NewApplicantIn | None = None
    national_id: str | None = Field(None, min_length=1, max_length=40,
                                    description="an existing party's ID number, checked when given")
    phone_hash: Hash | None = Field(None, description="hash of the phone the application came from")
    device_hash: Hash | None = Field(None, description="hash of the device the application came from")
    consent: StrictBool = Field(description="consent to use the applicant's data for this decision: must be true")
    requested_amount_minor: Annotated[StrictInt, Field(ge=1, le=MAX_REQUESTED_MINOR)]
    term_days: Annotated[StrictInt, Field(ge=MIN_TERM_DAYS, le=MAX_TERM_DAYS)]
    purpose: Purpose
    product_code: str | None = Field(None, min_length=1, max_length=40,
                                     description="the bank product; default: a credit line (line-revolving)")


class PolicyRef(BaseModel):
    name: str
    version: str


class DecisionOut(BaseModel):
    decision_id: str
    outcome: Literal["approve", "decline", "refer"]
    party_id: str | None
    grade: str
    limit_minor: int = Field(description="the offered credit limit; 0 unless approved")
    apr_bps: int | None
    daily_rate_ppm: int | None = Field(description="simple daily rate, parts per million (APR / 365)")
    product_code: str
    term_days: int
    expires_at: dt.datetime | None
    reasons: list[str] = Field(description="plain language; for a decline, the adverse-action reasons")
    pd_12m: float | None
    portrait_as_of: dt.date | None
    model: str | None
    policy: PolicyRef | None
    decided_at: dt.datetime
    replayed: bool = False


class AcceptIn(_Body):
    amount_minor: Annotated[StrictInt, Field(ge=1, le=MAX_REQUESTED_MINOR)] | None = Field(
        None, description="for an installment product, the principal to take (≤ the limit); default: the limit")


class AcceptOut(BaseModel):
    decision_id: str
    loan_id: int
    product_code: str
    amount_minor: int
    apr_bps: int
    accepted_at: dt.datetime
    replayed: bool = False
