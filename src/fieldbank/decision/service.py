"""The decision pipeline: one `apply` per application, framework-free (the API and the demo
call it). Steps, each timed:

1. validation + identity: consent, party or new applicant, product, ID number (format, birth
   date, check digit), age; a broken rule is a DomainError (422 naming field, value, rule)
   and nothing is written;
2. fraud: velocity per party/phone/device (the decision log), the identity graph (parties
   sharing a phone or device, from the lake), declared vs observed income, ID vs birth year;
   and the sanctions/blocklist screen;
3. portrait: the party's row of the newest portrait (in memory);
4. scoring: the champion's PD with its top reasons (RowScorer: FastScorer on a matrix built
   once per portrait); the challenger's shadow PD was computed for every row when the
   portrait was loaded (sources.py), so shadow scoring costs the request an array lookup;
5. rules: the policy (zen-engine), then limit and price;
6. write: one append-only row (and its shadow score), keyed by the Idempotency-Key, committed
   by the group-commit writer (writer.py): the request returns once its row is committed.

Never a silent approve: a missing portrait, model, policy or blocklist makes the decision a
`refer` with the reason recorded (the `service` rules in rule_outcomes), not a crash.
Idempotency: the key is unique in the log; a concurrent duplicate loses the INSERT race and
returns the winner's stored response, so one key is one decision.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, DateTime, Engine, bindparam, create_engine, event, insert, or_, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.pool import QueuePool

from fieldbank.bank.db import SQLITE_BUSY_TIMEOUT_MS
from fieldbank.bank.domain import DomainError
from fieldbank.bank.models import Product
from fieldbank.bank.service import MAX_KEY_LENGTH, BankService, IdempotencyConflict, NotFound
from fieldbank.config import Settings
from fieldbank.decision.identity import Blocklist, age_years, check_national_id, hash_id
from fieldbank.decision.models import Decision, DecisionAcceptance, ShadowScore
from fieldbank.decision.policy import Policy, PolicyError, PolicyResult
from fieldbank.decision.pricing import LimitParams, PricingParams, credit_limit_minor, price
from fieldbank.decision.schemas import AcceptOut, ApplicationIn, DecisionOut, PolicyRef
from fieldbank.decision.loop_writer import LoopGroupCommit, SQLiteLoopWriter
from fieldbank.decision.pg_async import AsyncPostgres
from fieldbank.decision.writer import GroupCommitWriter
from fieldbank.decision.sources import Snapshot, Sources
from fieldbank.decision.store import migrate_decisions

log = logging.getLogger("fieldbank.decision")
T = TypeVar("T")
DEFAULT_PRODUCT = "line-revolving"
STEPS = ("lookup", "validation", "fraud", "portrait", "scoring", "rules", "write")
# Worker threads per process (anyio's limiter): they run the sync routes (the web pages, replay,
# accept). No more than the read pool holds, so a burst waits for a thread instead of for a
# connection. The decision route itself runs on the event loop (apply_async).
REQUEST_THREADS = 16
# PostgreSQL reads are one short round trip each (autocommit), so a few connections serve
# hundreds of decisions a second: the pool opens these at start and more only when that many
# reads run at once (at most REQUEST_THREADS, the threads that run them), and keeps every one
# it opens: an overflow connection closed after each use would start a PostgreSQL process per
# read under load.
PG_READ_POOL_WARM = 4
MAX_MODEL_REASONS = 4
REQUIRED_TERMS = ("limit_income_months", "max_limit_minor", "margin_bps", "lgd")  # an approval's limit and price
DECISIONS = Decision.__table__
ACCEPTANCES = DecisionAcceptance.__table__
SHADOW = ShadowScore.__table__
# The hot reads as plain SQL: SQLAlchemy's expression building and cache-key work cost more
# CPU than the queries themselves at hundreds of decisions per second.
LOOKUP_SQL = text("""
    SELECT 'key', 0, request_hash, response_json FROM decisions WHERE idempotency_key = :key
    UNION ALL SELECT 'party', count(*), NULL, NULL FROM decisions WHERE party_id = :party AND created_at >= :since
    UNION ALL SELECT 'phone', count(*), NULL, NULL FROM decisions WHERE phone_hash = :phone AND created_at >= :since
    UNION ALL SELECT 'device', count(*), NULL, NULL FROM decisions WHERE device_hash = :device AND created_at >= :since
    UNION ALL SELECT 'exposure', coalesce(sum(limit_minor), 0), NULL, NULL FROM loans
              WHERE party_id = :party AND status = 'active'
""").bindparams(bindparam("since", type_=DateTime(timezone=True)))
BY_KEY_SQL = text("SELECT request_hash, response_json FROM decisions WHERE idempotency_key = :key")


def _canonical_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def applicant_party_id(national_id: str) -> str:
    """A new applicant's party id: stable per ID number, no ID number in clear."""
    return "A-" + hash_id(national_id)[:16]


class Timer:
    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.steps[step] = round((now - self._t) * 1000, 3)
        self._t = now


@dataclass(frozen=True)
class _Draft:
    application: ApplicationIn
    idempotency_key: str
    timer: Timer
    national_id: str | None
    inputs: dict[str, Any]  # the application as stored (ID number hashed)
    request_hash: str
    now: dt.datetime
    snap: Snapshot
    party_id: str
    phone: str | None
    device: str | None


@dataclass(frozen=True)
class _Made:
    decision: DecisionOut
    record: dict[str, Any]
    shadow: dict[str, Any] | None
    timer: Timer


@dataclass(frozen=True)
class Applied:
    decision: DecisionOut
    steps_ms: dict[str, float]


def _service_rule(rule: str, effect: str, reason: str) -> dict[str, Any]:
    return {"node": "service", "rule": rule, "hit": True, "effect": effect, "reason": reason}


UNAVAILABLE_REASON = "We could not complete every automatic check; the application will be reviewed."


def _read_engine_and_write_lock(engine: Engine) -> tuple[Engine, Any]:
    """The engine the hot reads use, and the lock this process's writers take.

    SQLite: the bank's engine opens every transaction with BEGIN IMMEDIATE (writers serialise
    up front), which would make every read take the write lock too, and threads waiting on
    SQLite's lock sleep in the busy handler (up to 100 ms a nap). So reads go through a second
    engine with plain deferred transactions (WAL: readers never block), and this process's
    writers queue on a lock instead of in the busy handler.

    PostgreSQL: a second engine in autocommit without the pool's pre-ping. A read is then one
    round trip; in a transaction it would be four (the pre-ping, BEGIN, the query, the
    ROLLBACK when the connection goes back to the pool), and each round trip costs CPU in
    both processes and a wait for the GIL on the way back. The rollback would also drop
    psycopg's prepared statements, which autocommit keeps. A dropped connection is found on
    use instead (`_reading` retries once). No lock: row-level locking and the unique key do
    the work."""
    if engine.dialect.name == "postgresql":
        return create_engine(engine.url, isolation_level="AUTOCOMMIT", pool_size=REQUEST_THREADS,
                             max_overflow=0), contextlib.nullcontext()
    if engine.dialect.name != "sqlite" or ":memory:" in str(engine.url):
        return engine, contextlib.nullcontext()
    reader = create_engine(engine.url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                           pool_size=REQUEST_THREADS + 2)

    @event.listens_for(reader, "connect")
    def _connect(dbapi_connection, _record):  # noqa: ANN001
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    return reader, threading.Lock()


def warm_pool(engine: Engine, connections: int) -> None:
    """Open `connections` database connections now and leave them in the pool. A cold pool
    opens them under the first burst of load instead: on PostgreSQL each is a new server
    process (fork, authentication, catalog caches) competing for the same cores; the load
    test saw 20 of them start within its first 300 decisions/s phase."""
    held = []
    try:
        for _ in range(connections):
            conn = engine.connect()
            held.append(conn)
            conn.exec_driver_sql("SELECT 1")
    finally:
        for conn in held:
            conn.close()


class DecisionService:
    """Built once per app (app.state.decisions): loads the policy, the blocklist and the
    in-memory sources, and migrates the decision log."""

    def __init__(self, engine: Engine, settings: Settings, bank: BankService, *, sources: Sources | None = None,
                 clock=None) -> None:  # noqa: ANN001
        self.engine = engine
        self.read_engine, self._write_lock = _read_engine_and_write_lock(engine)
        self.config = settings.decision
        self.bank = bank
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        migrate_decisions(engine)
        self.sources = sources or Sources(settings.data_dir, settings.lake_dir, settings.models_dir,
                                          self.config.challenger, self.config.portrait_check_seconds)
        self.problems: dict[str, str] = {}
        self.policy: Policy | None = None
        try:
            self.policy = Policy.load(self.config.policy_path)
        except PolicyError as e:
            self.problems["policy"] = str(e)
            log.error("decision service: %s", e)
        self.blocklist: Blocklist | None = None
        try:
            self.blocklist = Blocklist.load(self.config.blocklist_path)
        except ValueError as e:
            self.problems["blocklist"] = str(e)
            log.error("decision service: %s", e)
        self.pricing = PricingParams(cost_of_funds_bps=self.config.cost_of_funds_bps,
                                     operating_cost_bps=self.config.operating_cost_bps,
                                     max_apr_bps=self.config.max_apr_bps)
        self.limits = LimitParams()
        with engine.connect() as conn:
            self.products = set(conn.execute(select(Product.product_code)).scalars())
        self.writer = GroupCommitWriter(engine, self._write_lock)
        self._on_loop: LoopGroupCommit | None = None  # the async route's group commit (and PostgreSQL reads)
        # The hot reads compiled once for the loop writers' fetch_all: psycopg's named %(x)s
        # for AsyncPostgres, sqlite3's named :x for SQLiteLoopWriter.
        dialect = sqlite_dialect(paramstyle="named") if engine.dialect.name == "sqlite" else engine.dialect
        self._lookup_sql, self._by_key_sql = (str(q.compile(dialect=dialect)) for q in (LOOKUP_SQL, BY_KEY_SQL))
        if isinstance(self.read_engine.pool, QueuePool):
            postgresql = self.read_engine.dialect.name == "postgresql"
            warm_pool(self.read_engine, PG_READ_POOL_WARM if postgresql else self.read_engine.pool.size() - 1)

    def close(self) -> None:
        if self._on_loop is not None:
            self._on_loop.abandon()
            self._on_loop = None
        self.writer.close()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()

    # ---- status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        snap = self.sources.current()
        return {
            "ready": not (self.problems or snap.problems),
            "problems": {**self.problems, **snap.problems},
            "policy": {"name": self.policy.name, "version": self.policy.version} if self.policy else None,
            "model": snap.models.ref if snap.models else None,
            "challenger": snap.models.challenger_ref if snap.models else None,
            "portrait_as_of": snap.portrait.as_of.isoformat() if snap.portrait else None,
            "portrait_parties": len(snap.portrait) if snap.portrait else 0,
        }

    # ---- apply ---------------------------------------------------------------------------

    def apply(self, application: ApplicationIn, idempotency_key: str) -> DecisionOut:
        return self.apply_timed(application, idempotency_key).decision

    def apply_timed(self, application: ApplicationIn, idempotency_key: str) -> Applied:
        draft = self._draft(application, idempotency_key)
        stored, counts, exposure_minor = self._lookup(draft)
        if stored is not None:
            return Applied(stored, {})
        draft.timer.lap("lookup")
        made = self._decide(draft, counts, exposure_minor)
        try:
            self.writer.write(made.record, made.shadow)
        except IntegrityError:
            # A concurrent request with the same key committed first: its decision is the answer.
            stored = self._by_key(idempotency_key, draft.request_hash)
            if stored is None:
                raise
            return Applied(stored, {})
        made.timer.lap("write")
        return Applied(made.decision, made.timer.steps)

    async def apply_async(self, application: ApplicationIn, idempotency_key: str) -> Applied:
        """`apply_timed` for the HTTP route, with no thread hand-off on the way (loop_writer.py
        says why): the decision's steps, its read and its commit run on the event loop, through
        the loop's writer (pg_async.AsyncPostgres; on SQLite loop_writer.SQLiteLoopWriter, whose
        read is inline: a local read that never waits for a writer in WAL mode)."""
        draft = self._draft(application, idempotency_key)
        on_loop = self._loop_writer()
        if on_loop is None:  # in-memory SQLite: its one connection is the writer thread's
            stored, counts, exposure_minor = self._lookup(draft)
        else:
            rows = await on_loop.fetch_all(self._lookup_sql, self._lookup_params(draft))
            stored, counts, exposure_minor = self._lookup_result(draft, rows)
        if stored is not None:
            return Applied(stored, {})
        draft.timer.lap("lookup")
        made = self._decide(draft, counts, exposure_minor)
        try:
            if on_loop is None:
                await self.writer.write_async(made.record, made.shadow)
            else:
                await on_loop.write(made.record, made.shadow)
        except IntegrityError:
            if on_loop is None:
                stored = self._by_key(idempotency_key, draft.request_hash)
            else:
                rows = await on_loop.fetch_all(self._by_key_sql, {"key": idempotency_key})
                stored = self._stored_response(rows[0] if rows else None, idempotency_key, draft.request_hash)
            if stored is None:
                raise
            return Applied(stored, {})
        made.timer.lap("write")
        return Applied(made.decision, made.timer.steps)

    def _draft(self, a: ApplicationIn, idempotency_key: str) -> _Draft:
        """What the lookup needs: the request's hash, the party, phone and device."""
        timer = Timer()
        if not idempotency_key or len(idempotency_key) > MAX_KEY_LENGTH:
            raise DomainError("Idempotency-Key", idempotency_key, f"required, 1..{MAX_KEY_LENGTH} characters")
        national_id = a.applicant.national_id if a.applicant else a.national_id
        inputs = a.model_dump(mode="json")
        for holder in (inputs, inputs.get("applicant") or {}):
            if holder.get("national_id"):
                holder["national_id"] = "sha256:" + hash_id(holder["national_id"])
        request_hash = _canonical_hash({"operation": "apply", **inputs})
        self.sources.maybe_refresh()
        snap = self.sources.current()
        known = snap.parties.get(a.party_id) if snap.parties is not None and a.party_id else None
        return _Draft(
            a, idempotency_key, timer, national_id, inputs, request_hash, self.clock(), snap,
            party_id=a.party_id or (applicant_party_id(national_id) if national_id else ""),
            phone=a.phone_hash.lower() if a.phone_hash else (known or {}).get("phone_hash"),
            device=a.device_hash.lower() if a.device_hash else (known or {}).get("device_hash"))

    def _decide(self, draft: _Draft, counts: dict[str, int], exposure_minor: int) -> _Made:
        """Steps 1-5 and the record to write: CPU only, no I/O. A broken rule raises DomainError."""
        a, idempotency_key, timer, national_id, inputs = (draft.application, draft.idempotency_key, draft.timer,
                                                          draft.national_id, draft.inputs)
        request_hash, now, snap = draft.request_hash, draft.now, draft.snap
        party_id, phone, device = draft.party_id, draft.phone, draft.device
        today = now.date()
        service_rules: list[dict[str, Any]] = []

        # 1. validation + identity -----------------------------------------------------
        if a.consent is not True:
            raise DomainError("consent", a.consent, "must be true: we decide only with consent to use the applicant's data")
        if (a.party_id is None) == (a.applicant is None):
            raise DomainError("party_id", a.party_id, "give exactly one of party_id (an existing party) or applicant (a new one)")
        product_code = a.product_code or DEFAULT_PRODUCT
        if product_code not in self.products:
            raise DomainError("product_code", product_code, f"must name an existing product ({', '.join(sorted(self.products))})")
        born = check_national_id(national_id, "applicant.national_id" if a.applicant else "national_id", today) \
            if national_id else None
        party = None
        row_index = None
        if a.party_id is not None:
            party_id = a.party_id
            if snap.parties is not None:
                party = snap.parties.get(party_id)
            if snap.portrait is not None:
                row_index = snap.portrait.index.get(party_id)
            if party is None and row_index is None:
                if snap.parties is not None:
                    raise DomainError("party_id", party_id, "must be a known party; a new applicant applies with `applicant`")
                service_rules.append(_service_rule("party_unverified", "refer", UNAVAILABLE_REASON))
        else:
            party_id = applicant_party_id(national_id)
        pf = snap.portrait.facts(row_index) if row_index is not None else None
        kind = (a.applicant.kind if a.applicant else None) or (party or {}).get("kind") or (pf.kind if pf else None)
        if born is not None:
            age = age_years(born, today)
        elif party and party.get("birth_year"):
            age = today.year - int(party["birth_year"])
        elif pf and pf.age_years is not None:
            age = pf.age_years
        else:  # no ID number, no birth year on file: the policy cannot check age limits
            age = None
            service_rules.append(_service_rule(
                "age_unknown", "refer", "We could not confirm your age; give your ID number or the application will be reviewed."))
        timer.lap("validation")

        # 2. fraud and screening ----------------------------------------------------------
        flags: list[str] = []
        c = self.config
        if counts["party"] >= c.velocity_max_per_party:
            flags.append("velocity_party")
        if counts["phone"] >= c.velocity_max_per_phone:
            flags.append("velocity_phone")
        if counts["device"] >= c.velocity_max_per_device:
            flags.append("velocity_device")
        if snap.parties is not None:
            own_phone, own_device = (party or {}).get("phone_hash"), (party or {}).get("device_hash")
            phone_parties = snap.parties.phone_parties.get(phone, 0) + (0 if phone and phone == own_phone else 1)
            device_parties = snap.parties.device_parties.get(device, 0) + (0 if device and device == own_device else 1)
            if phone and phone_parties > c.shared_identity_max_parties:
                flags.append("shared_phone")
            if device and device_parties > c.shared_identity_max_parties:
                flags.append("shared_device")
        declared = (a.applicant.declared_income_minor if a.applicant else None) or (party or {}).get("declared_income_minor")
        if pf is not None and declared and declared > c.declared_income_floor_minor \
                and declared > c.declared_income_max_ratio * pf.observed_inflow_minor_365d:
            flags.append("declared_income_above_observed")
        if born is not None and party and party.get("birth_year") and born.year != int(party["birth_year"]):
            flags.append("id_birth_year_mismatch")
        sanctions: list[str] = []
        if self.blocklist is None:
            service_rules.append(_service_rule("screening_unavailable", "refer", UNAVAILABLE_REASON))
        else:
            sanctions = self.blocklist.matches(national_id_hash=hash_id(national_id) if national_id else None,
                                               party_id=party_id, phone_hash=phone, device_hash=device)
        timer.lap("fraud")

        # 3. portrait -------------------------------------------------------------------------
        row = snap.portrait.row(row_index) if row_index is not None and snap.row_scorer is None else None
        if snap.portrait is None:
            service_rules.append(_service_rule("portrait_unavailable", "refer", UNAVAILABLE_REASON))
        timer.lap("portrait")

        # 4. scoring --------------------------------------------------------------------------
        pd_12m, model_reasons = None, []
        if snap.models is None:
            service_rules.append(_service_rule("model_unavailable", "refer", UNAVAILABLE_REASON))
        elif row_index is not None:
            try:
                if snap.row_scorer is not None:
                    pd_12m, why = snap.row_scorer.score(row_index, MAX_MODEL_REASONS)
                else:
                    pds, _points, (why,) = snap.models.scorer.score(row, MAX_MODEL_REASONS)
                    pd_12m = float(pds[0])
                model_reasons = [r.text for r in why]
            except Exception:  # a model that cannot score this row: refer, never crash
                log.exception("decision: scoring %s failed", party_id)
                service_rules.append(_service_rule("scoring_failed", "refer", UNAVAILABLE_REASON))
                pd_12m, model_reasons = None, []
        timer.lap("scoring")

        # 5. rules, limit and price -----------------------------------------------------------
        facts = {
            "pd_12m": pd_12m if pd_12m is not None else c.unscored_pd,
            "thin_file": pf.thin_file if pf else True,
            "age_years": age,
            "months_observed": pf.months_observed if pf else 0,
            "monthly_revenue_minor": pf.monthly_revenue_minor if pf else 0,
            "monthly_income_minor": (pf.monthly_income_minor if pf and pf.monthly_income_minor
                                     else (declared or 0) // 12),
            "existing_exposure_minor": exposure_minor,
            "requested_amount_minor": a.requested_amount_minor,
            "term_days": a.term_days,
            "fraud_flags": len(flags),
            "kind": kind or "household",
            "sanctions_hit": bool(sanctions),
            "scored": pd_12m is not None,
        }
        result: PolicyResult | None = None
        if self.policy is None:
            service_rules.append(_service_rule("policy_unavailable", "refer", UNAVAILABLE_REASON))
        else:
            try:
                result = self.policy.evaluate(facts)
            except (PolicyError, ValueError) as e:
                log.error("decision: policy evaluation failed: %s", e)
                service_rules.append(_service_rule("policy_failed", "refer", UNAVAILABLE_REASON))
        outcome, reasons = self._combine(result, service_rules)
        grade = result.grade if result else "unrated"
        limit_minor, offer = 0, None
        if outcome == "approve":
            # A policy may approve only what the model scored and what it gave terms for; a
            # candidate file that forgets either gets a referral, not a guessed offer.
            missing = [t for t in REQUIRED_TERMS if t not in result.terms]
            if pd_12m is None:
                service_rules.append(_service_rule("approval_without_score", "refer", UNAVAILABLE_REASON))
            if missing:
                log.error("decision: policy %s approved without terms %s", self.policy.version, missing)
                service_rules.append(_service_rule("approval_without_terms", "refer", UNAVAILABLE_REASON))
            outcome, reasons = self._combine(result, service_rules)
        if outcome == "approve":
            assert result is not None and pd_12m is not None
            terms = result.terms
            limit_minor = credit_limit_minor(
                kind=facts["kind"], monthly_revenue_minor=facts["monthly_revenue_minor"],
                monthly_income_minor=facts["monthly_income_minor"], existing_exposure_minor=exposure_minor,
                requested_amount_minor=a.requested_amount_minor, pd_12m=pd_12m,
                limit_income_months=terms["limit_income_months"], max_limit_minor=terms["max_limit_minor"],
                limit_factor=terms.get("limit_factor", 1.0), params=self.limits)
            offer = price(pd_12m, terms["lgd"], margin_bps=terms["margin_bps"], params=self.pricing)
            if limit_minor == 0:
                service_rules.append(_service_rule(
                    "limit_below_minimum", "decline",
                    "The limit your observed income or sales support, less what you already owe us, is below our minimum offer."))
            elif not offer.covers_cost:
                service_rules.append(_service_rule(
                    "price_above_legal_maximum", "decline",
                    "The price your risk level needs is above the legal maximum rate we may charge."))
            if limit_minor == 0 or not offer.covers_cost:
                outcome, reasons = self._combine(result, service_rules)
                limit_minor, offer = 0, None
        if outcome == "decline" and model_reasons:
            reasons = reasons + [f"A main factor in your risk estimate: {t}" for t in model_reasons]
        timer.lap("rules")

        # 6. write ----------------------------------------------------------------------------
        challenger_pds = snap.row_scorer.challenger_pds if snap.row_scorer is not None else None
        shadow = pd_12m is not None and row_index is not None and challenger_pds is not None
        decision_id = "D" + uuid.uuid4().hex[:20]
        expires_at = now + dt.timedelta(days=c.offer_ttl_days) if outcome == "approve" else None
        decision = DecisionOut(
            decision_id=decision_id, outcome=outcome, party_id=party_id, grade=grade, limit_minor=limit_minor,
            apr_bps=offer.apr_bps if offer else None, daily_rate_ppm=offer.daily_rate_ppm if offer else None,
            product_code=product_code, term_days=a.term_days, expires_at=expires_at, reasons=reasons,
            pd_12m=pd_12m, portrait_as_of=snap.portrait.as_of if row_index is not None else None,
            model=snap.models.ref if pd_12m is not None else None,
            policy=PolicyRef(name=self.policy.name, version=self.policy.version) if result else None,
            decided_at=now)
        rule_outcomes = (result.rule_outcomes if result else []) + service_rules
        record = {
            "decision_id": decision_id, "idempotency_key": idempotency_key, "request_hash": request_hash,
            "created_at": now, "party_id": party_id, "phone_hash": phone, "device_hash": device,
            "outcome": outcome, "grade": grade, "pd_12m": pd_12m,
            "limit_minor": limit_minor, "apr_bps": decision.apr_bps, "daily_rate_ppm": decision.daily_rate_ppm,
            "expires_at": expires_at, "portrait_as_of": decision.portrait_as_of, "model_ref": decision.model,
            "challenger_ref": snap.models.challenger_ref if shadow else None,
            "policy_name": self.policy.name if result else None, "policy_version": self.policy.version if result else None,
            "inputs_json": json.dumps(inputs, sort_keys=True),
            "facts_json": json.dumps({**facts, "fraud_flag_names": flags, "sanctions_lists": sanctions,
                                      "velocity": counts}, sort_keys=True),
            "rule_outcomes_json": json.dumps(rule_outcomes),
            "steps_json": json.dumps(timer.steps),
            "response_json": decision.model_dump_json(),
        }
        shadow_record = {"decision_id": decision_id, "model_ref": snap.models.challenger_ref,
                         "pd_12m": float(challenger_pds[row_index]), "scored_at": now} if shadow else None
        return _Made(decision, record, shadow_record, timer)

    @staticmethod
    def _combine(result: PolicyResult | None, service_rules: list[dict[str, Any]]) -> tuple[str, list[str]]:
        """Same precedence as the policy: decline > refer > approve; no result -> refer."""
        effects = [r["effect"] for r in service_rules]
        policy_outcome = result.outcome if result else "refer"
        for outcome in ("decline", "refer"):
            if outcome in effects or policy_outcome == outcome:
                reasons = (result.reasons if result and policy_outcome == outcome else []) + \
                    [r["reason"] for r in service_rules if r["effect"] == outcome]
                return outcome, list(dict.fromkeys(reasons)) or [UNAVAILABLE_REASON]
        assert result is not None and policy_outcome == "approve"
        return "approve", list(result.reasons)

    def _reading(self, read: Callable[[Connection], T]) -> T:
        """`read` on a reader connection, tried once more if the connection turns out to be
        dead (the PostgreSQL reader has no pre-ping): SQLAlchemy then invalidates it and every
        older connection in the pool, so the second try gets a fresh one."""
        for attempt in (1, 2):
            try:
                with self.read_engine.connect() as conn:
                    return read(conn)
            except DBAPIError as e:
                if attempt == 2 or not e.connection_invalidated:
                    raise
                log.warning("decision service: a database connection was dropped; reading again on a new one")
        raise AssertionError("unreachable")

    def _lookup(self, draft: _Draft) -> tuple[DecisionOut | None, dict[str, int], int]:
        """The decision stored under the draft's key (or IdempotencyConflict), the decisions in
        the velocity window per party, phone and device, and the party's open limits with the
        bank: one round trip, each count an index range scan."""
        params = self._lookup_params(draft)
        return self._lookup_result(draft, self._reading(lambda conn: list(conn.execute(LOOKUP_SQL, params))))

    def _lookup_params(self, draft: _Draft) -> dict[str, Any]:
        since = draft.now - dt.timedelta(hours=self.config.velocity_window_hours)
        return {"key": draft.idempotency_key, "party": draft.party_id, "phone": draft.phone, "device": draft.device,
                "since": since}

    def _lookup_result(self, draft: _Draft, result_rows: list) -> tuple[DecisionOut | None, dict[str, int], int]:
        rows = {r[0]: r for r in result_rows}
        stored = None
        if "key" in rows:
            stored = self._stored_response(rows["key"][2:], draft.idempotency_key, draft.request_hash)
        counts = {k: int(rows[k][1]) for k in ("party", "phone", "device")}
        return stored, counts, int(rows["exposure"][1])

    def _by_key(self, key: str, request_hash: str) -> DecisionOut | None:
        row = self._reading(lambda conn: conn.execute(BY_KEY_SQL, {"key": key}).one_or_none())
        return self._stored_response(row, key, request_hash)

    @staticmethod
    def _stored_response(row: Any, key: str, request_hash: str) -> DecisionOut | None:
        """The stored (request_hash, response_json) as the replayed answer to `request_hash`."""
        if row is None:
            return None
        if row[0] != request_hash:
            raise IdempotencyConflict(key, "application")
        return DecisionOut.model_validate_json(row[1]).model_copy(update={"replayed": True})

    def _loop_writer(self) -> LoopGroupCommit | None:
        """The running loop's group commit, made on first use: AsyncPostgres on PostgreSQL,
        SQLiteLoopWriter on an SQLite file (an in-memory database has one connection: the
        writer thread's). A test client runs each app session on a new loop: the previous
        loop's connections are closed then."""
        loop = asyncio.get_running_loop()
        if self._on_loop is None or self._on_loop.loop is not loop:
            if self._on_loop is not None:
                self._on_loop.abandon()
            if self.engine.dialect.name == "postgresql":
                self._on_loop = AsyncPostgres(self.engine)
            elif ":memory:" in str(self.engine.url):
                return None
            else:
                self._on_loop = SQLiteLoopWriter(self.engine, self._write_lock)
        return self._on_loop

    async def aclose(self) -> None:
        """Shutdown on the app's loop: commit the queued decisions, close the loop's connections."""
        if self._on_loop is not None and self._on_loop.loop is asyncio.get_running_loop():
            on_loop, self._on_loop = self._on_loop, None
            await on_loop.aclose()
        self.close()

    # ---- replay --------------------------------------------------------------------------

    def get(self, decision_id: str) -> dict[str, Any]:
        """The decision and why: inputs, facts, model and policy versions, every rule's outcome."""
        def read(conn: Connection) -> tuple:
            return tuple(conn.execute(select(table).where(table.c.decision_id == decision_id)).mappings().one_or_none()
                         for table in (DECISIONS, ACCEPTANCES, SHADOW))

        row, acc, shadow = self._reading(read)
        if row is None:
            raise NotFound(f"decision {decision_id} not found")
        return {
            "decision": json.loads(row["response_json"]),
            "inputs": json.loads(row["inputs_json"]),
            "facts": json.loads(row["facts_json"]),
            "rule_outcomes": json.loads(row["rule_outcomes_json"]),
            "model": row["model_ref"], "challenger": row["challenger_ref"],
            "pd_12m": row["pd_12m"], "challenger_pd_12m": shadow["pd_12m"] if shadow else None,
            "policy": {"name": row["policy_name"], "version": row["policy_version"]} if row["policy_name"] else None,
            "portrait_as_of": row["portrait_as_of"].isoformat() if row["portrait_as_of"] else None,
            "steps_ms": json.loads(row["steps_json"]),
            "acceptance": json.loads(acc["response_json"]) if acc else None,
        }

    # ---- accept --------------------------------------------------------------------------

    def accept(self, decision_id: str, idempotency_key: str, amount_minor: int | None = None,
               on: dt.date | None = None) -> AcceptOut:
        """Hand an approved, unexpired offer to the bank core: a credit line (or loan) opens with
        the offer's limit and APR (value date `on`, default the bank's open business date).
        One acceptance per offer; the same key replays it."""
        if not idempotency_key or len(idempotency_key) > MAX_KEY_LENGTH:
            raise DomainError("Idempotency-Key", idempotency_key, f"required, 1..{MAX_KEY_LENGTH} characters")
        request_hash = _canonical_hash({"operation": "accept", "decision_id": decision_id, "amount_minor": amount_minor,
                                        "on": on})
        stored = self._acceptance(decision_id, idempotency_key, request_hash)
        if stored is not None:
            return stored
        row = self._reading(lambda conn: conn.execute(
            select(DECISIONS).where(DECISIONS.c.decision_id == decision_id)).mappings().one_or_none())
        if row is None:
            raise NotFound(f"decision {decision_id} not found")
        if row["outcome"] != "approve":
            raise DomainError("decision_id", decision_id, f"only an approved offer can be accepted; this decision is {row['outcome']}")
        now = self.clock()
        expires_at = row["expires_at"]
        if expires_at.tzinfo is None:  # SQLite returns naive UTC
            expires_at = expires_at.replace(tzinfo=dt.UTC)
        if now >= expires_at:
            raise DomainError("decision_id", decision_id, f"the offer expired at {expires_at.isoformat()}")
        amount = amount_minor if amount_minor is not None else row["limit_minor"]
        if not 1 <= amount <= row["limit_minor"]:
            raise DomainError("amount_minor", amount, f"between 1 and the offered limit {row['limit_minor']}")
        product_code = json.loads(row["response_json"])["product_code"]
        opened = self.bank.open_line(offer_id=decision_id, party_id=row["party_id"], product_code=product_code,
                                     amount_minor=amount, apr_bps=row["apr_bps"], on=on,
                                     idempotency_key=f"decision-accept:{decision_id}")
        out = AcceptOut(decision_id=decision_id, loan_id=opened["loan_id"], product_code=product_code,
                        amount_minor=amount, apr_bps=row["apr_bps"], accepted_at=now)
        try:
            with self._write_lock, self.engine.begin() as conn:
                conn.execute(insert(ACCEPTANCES).values(
                    decision_id=decision_id, idempotency_key=idempotency_key, request_hash=request_hash,
                    accepted_at=now, loan_id=out.loan_id, response_json=out.model_dump_json()))
        except IntegrityError:
            stored = self._acceptance(decision_id, idempotency_key, request_hash)
            if stored is None:
                raise
            return stored
        return out

    def _acceptance(self, decision_id: str, key: str, request_hash: str) -> AcceptOut | None:
        rows = self._reading(lambda conn: conn.execute(select(ACCEPTANCES).where(or_(
            ACCEPTANCES.c.idempotency_key == key, ACCEPTANCES.c.decision_id == decision_id))).mappings().all())
        for r in rows:
            if r["idempotency_key"] == key:
                if r["decision_id"] != decision_id or r["request_hash"] != request_hash:
                    raise IdempotencyConflict(key, "accept")
                return AcceptOut.model_validate_json(r["response_json"]).model_copy(update={"replayed": True})
        if rows:
            raise DomainError("decision_id", decision_id, f"the offer was already accepted (loan {rows[0]['loan_id']})")
        return None
