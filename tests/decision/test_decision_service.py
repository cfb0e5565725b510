"""DecisionService on a small simulated economy: the pipeline, the log, idempotency (also under
concurrent duplicates, on SQLite and PostgreSQL), validation, identity, fraud, degraded sources
(never a silent approve), portrait refresh, accept -> bank line, append-only."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from decision_data import copy_economy, portrait_parties
from sqlalchemy import func, select, text

from fieldbank.bank.domain import DomainError
from fieldbank.bank.models import Loan
from fieldbank.bank.service import IdempotencyConflict, NotFound
from fieldbank.decision.identity import id_check_char
from fieldbank.decision.models import Decision, DecisionAcceptance, ShadowScore
from fieldbank.decision.pricing import PricingParams, price
from fieldbank.decision.schemas import ApplicationIn, DecisionOut

pytestmark = pytest.mark.slow


def app_for(party_id: str | None = None, **over) -> ApplicationIn:
    body = {"party_id": party_id, "consent": True, "requested_amount_minor": 500_000, "term_days": 180,
            "purpose": "working_capital", **over}
    return ApplicationIn.model_validate(body)


def new_applicant(born: dt.date, kind: str = "business", **over) -> ApplicationIn:
    first17 = f"110105{born:%Y%m%d}001"
    applicant = {"kind": kind, "national_id": first17 + id_check_char(first17), "declared_income_minor": 3_000_000}
    return ApplicationIn.model_validate({"applicant": applicant, "consent": True, "requested_amount_minor": 300_000,
                                         "term_days": 90, "purpose": "inventory", **over})


def n_decisions(engine) -> int:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Decision)).scalar_one()


def approved_party(service, economy: Path) -> str:  # noqa: ANN001
    """A portrait party the champion policy approves (probed with throwaway keys on a copy)."""
    for p in portrait_parties(economy)[:200]:
        snap = service.sources.current()
        i = snap.portrait.index[p]
        pd_, _ = snap.row_scorer.score(i)
        f = snap.portrait.facts(i)
        if pd_ < 0.05 and f.months_observed >= 3 and 18 <= (f.age_years or 0) <= 75 and f.monthly_income_minor > 0 \
                and snap.parties.device_parties.get(snap.parties.get(p)["device_hash"], 0) <= 3:
            return p
    raise AssertionError("no approvable party in the test economy")


def test_approve_records_everything_and_prices_by_formula(db_engine, make_service, economy: Path) -> None:
    svc = make_service(db_engine)
    party = approved_party(svc, economy)
    applied = svc.apply_timed(app_for(party), "k-approve")
    d = applied.decision
    assert d.outcome == "approve", d
    assert 0 < d.limit_minor <= 500_000 and d.limit_minor % 1_000 == 0
    assert d.expires_at is not None and d.expires_at > d.decided_at
    assert d.reasons and d.policy.version == svc.policy.version and d.model.endswith(":lgbm_both")
    assert d.portrait_as_of == svc.sources.current().portrait.as_of
    assert set(applied.steps_ms) == {"lookup", "validation", "fraud", "portrait", "scoring", "rules", "write"}
    # the price is the formula's, with the grade's margin and LGD from the policy
    terms = svc.policy.evaluate(json.loads(json.dumps(svc.get(d.decision_id)["facts"]))).terms
    expected = price(d.pd_12m, terms["lgd"], margin_bps=terms["margin_bps"],
                     params=PricingParams(cost_of_funds_bps=300, operating_cost_bps=200, max_apr_bps=3_600))
    assert (d.apr_bps, d.daily_rate_ppm) == (expected.apr_bps, expected.daily_rate_ppm)
    why = svc.get(d.decision_id)
    assert why["decision"]["decision_id"] == d.decision_id
    assert why["inputs"]["party_id"] == party and why["facts"]["pd_12m"] == d.pd_12m
    assert {r["rule"] for r in why["rule_outcomes"]} >= {r.rule for r in svc.policy.rules}
    assert why["policy"] == {"name": "credit_policy", "version": svc.policy.version}
    # the shadow score, written with the decision, is the challenger's PD of this party's row
    assert why["challenger"].endswith(":scorecard_both") and 0 <= why["challenger_pd_12m"] <= 1
    snap = svc.sources.current()
    row = snap.portrait.row(snap.portrait.index[party])
    assert why["challenger_pd_12m"] == pytest.approx(float(snap.models.challenger.predict_pd(row)[0]), rel=1e-9)


def test_idempotency_key_replays_and_conflicts(db_engine, make_service, economy: Path) -> None:
    svc = make_service(db_engine)
    party = portrait_parties(economy)[0]
    first = svc.apply(app_for(party), "k-1")
    again = svc.apply(app_for(party), "k-1")
    assert again.replayed and not first.replayed
    assert again.model_dump(exclude={"replayed"}) == first.model_dump(exclude={"replayed"})
    assert n_decisions(db_engine) == 1
    with pytest.raises(IdempotencyConflict):
        svc.apply(app_for(party, requested_amount_minor=400_000), "k-1")
    assert n_decisions(db_engine) == 1


def test_concurrent_duplicates_make_one_decision(db_engine, make_service, economy: Path) -> None:
    svc = make_service(db_engine)
    party = portrait_parties(economy)[1]
    results, errors = [], []
    barrier = threading.Barrier(16)

    def submit() -> None:
        try:
            barrier.wait()
            results.append(svc.apply(app_for(party), "k-race"))
        except Exception as e:  # noqa: BLE001 - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=submit) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len({r.decision_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert n_decisions(db_engine) == 1


@pytest.mark.parametrize("over, field, rule", [
    ({"consent": False}, "consent", "must be true"),
    ({"party_id": None}, "party_id", "exactly one"),
    ({"product_code": "no-such-product"}, "product_code", "existing product"),
    ({"national_id": "12345"}, "national_id", "18 characters"),
    ({"national_id": "110105199013450012"}, "national_id", "birth date"),
    ({"national_id": "110105198001010017"}, "national_id", "check digit"),
    ({"party_id": "P-UNKNOWN"}, "party_id", "known party"),
])
def test_bad_applications_are_422_and_write_nothing(sqlite_engine, make_service, economy: Path, over, field, rule) -> None:
    svc = make_service(sqlite_engine)
    party = portrait_parties(economy)[0]
    with pytest.raises(DomainError) as e:
        svc.apply(app_for(over.pop("party_id", party), **over), "k-bad")
    assert e.value.field == field and rule in e.value.rule
    assert n_decisions(sqlite_engine) == 0


def test_identity_age_and_blocklist(sqlite_engine, make_service) -> None:
    svc = make_service(sqlite_engine)
    today = dt.datetime.now(dt.UTC).date()
    minor = svc.apply(new_applicant(today.replace(year=today.year - 17)), "k-minor")
    assert minor.outcome == "decline" and any("18" in r for r in minor.reasons)
    adult = svc.apply(new_applicant(dt.date(1990, 3, 7)), "k-adult")
    assert adult.outcome == "refer"  # no portrait: not scored, too little history
    assert adult.party_id.startswith("A-") and adult.pd_12m is None
    sanctioned = ApplicationIn.model_validate({**new_applicant(dt.date(1990, 3, 7)).model_dump(),
                                               "applicant": {"kind": "business", "national_id": "110105198001010016"}})
    d = svc.apply(sanctioned, "k-sanctioned")
    assert d.outcome == "decline"
    assert "national_id_hash:sanctions_demo" in svc.get(d.decision_id)["facts"]["sanctions_lists"]
    # the log keeps the ID number hashed, never in clear
    with sqlite_engine.connect() as conn:
        logged = conn.execute(text("SELECT inputs_json FROM decisions")).scalars().all()
    assert not any("110105198001010016" in s for s in logged)


def test_fraud_velocity_identity_graph_and_declared_income(sqlite_engine, make_service, economy: Path) -> None:
    svc = make_service(sqlite_engine, velocity_max_per_party=2)
    party = approved_party(svc, economy)
    first, second = svc.apply(app_for(party), "v-1"), svc.apply(app_for(party), "v-2")
    third = svc.apply(app_for(party), "v-3")
    assert first.outcome == second.outcome == "approve"
    assert third.outcome == "refer" and "velocity_party" in svc.get(third.decision_id)["facts"]["fraud_flag_names"]
    # one device shared by more than k parties: the simulator's fraud ring
    parties = svc.sources.current().parties
    device, n = parties.device_parties.most_common(1)[0]
    assert n > svc.config.shared_identity_max_parties
    other = portrait_parties(economy)[5]
    d = svc.apply(app_for(other, device_hash=device), "g-1")
    assert "shared_device" in svc.get(d.decision_id)["facts"]["fraud_flag_names"] and d.outcome != "approve"
    # declared income far above what we observe
    strict = make_service(sqlite_engine, declared_income_max_ratio=0.01, declared_income_floor_minor=0)
    d = strict.apply(app_for(party, phone_hash="ab" * 8), "m-1")
    assert "declared_income_above_observed" in strict.get(d.decision_id)["facts"]["fraud_flag_names"]


def _never_approves(svc, party: str, rule: str) -> None:  # noqa: ANN001
    d = svc.apply(app_for(party), f"k-{rule}")
    assert d.outcome == "refer", d
    assert d.limit_minor == 0 and d.apr_bps is None
    assert rule in {r["rule"] for r in svc.get(d.decision_id)["rule_outcomes"] if r["hit"]}
    assert rule in " ".join(svc.status()["problems"]) or not svc.status()["ready"]


def test_missing_portrait_refers(sqlite_engine, make_service, economy: Path, tmp_path: Path) -> None:
    data = copy_economy(economy, tmp_path / "data", portraits=False)
    svc = make_service(sqlite_engine, data_dir=data)
    assert "portrait" in svc.status()["problems"]
    _never_approves(svc, portrait_parties(economy)[0], "portrait_unavailable")


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_model_refers(sqlite_engine, make_service, economy: Path, tmp_path: Path, damage) -> None:
    data = copy_economy(economy, tmp_path / "data", models=damage == "corrupt")
    if damage == "corrupt":
        for f in (data / "models").rglob("*.txt"):
            f.write_text("this is not a LightGBM model")
        for f in (data / "models").rglob("*.json"):
            if f.name not in ("champion.json", "portrait_models.json", "metadata.json", "features.json"):
                f.write_text("{")
    svc = make_service(sqlite_engine, data_dir=data)
    assert "model" in svc.status()["problems"]
    _never_approves(svc, portrait_parties(economy)[0], "model_unavailable")


def test_invalid_policy_or_blocklist_refers(sqlite_engine, make_service, economy: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad_policy.json"
    bad.write_text('{"nodes": [], "edges": []}')
    svc = make_service(sqlite_engine, policy_path=bad)
    assert str(bad) in svc.status()["problems"]["policy"]
    _never_approves(svc, portrait_parties(economy)[0], "policy_unavailable")
    svc = make_service(sqlite_engine, blocklist_path=tmp_path / "missing.csv")
    d = svc.apply(app_for(portrait_parties(economy)[0]), "k-no-blocklist")
    assert d.outcome == "refer" and "blocklist" in svc.status()["problems"]


def test_newer_portrait_is_picked_up(sqlite_engine, make_service, economy: Path, tmp_path: Path) -> None:
    data = copy_economy(economy, tmp_path / "data")
    svc = make_service(sqlite_engine, data_dir=data, portrait_check_seconds=0.1)
    old = svc.sources.current().portrait.as_of
    newer = old + dt.timedelta(days=31)
    shutil.copytree(data / "portraits" / f"as_of={old}", data / "portraits" / f"as_of={newer}")
    deadline = time.monotonic() + 60
    while svc.sources.current().portrait.as_of != newer:
        assert time.monotonic() < deadline, "the newer portrait was not loaded"
        svc.sources.maybe_refresh()
        time.sleep(0.1)
    d = svc.apply(app_for(portrait_parties(economy)[0]), "k-new-portrait")
    assert d.portrait_as_of == newer


def test_accept_opens_a_bank_line_with_the_offer(db_engine, make_service, economy: Path) -> None:
    svc = make_service(db_engine)
    party = approved_party(svc, economy)
    d = svc.apply(app_for(party), "k-offer")
    assert d.outcome == "approve"
    with pytest.raises(DomainError, match="offered limit"):
        svc.accept(d.decision_id, "acc-too-much", d.limit_minor + 1)
    accepted = svc.accept(d.decision_id, "acc-1")
    assert not accepted.replayed and accepted.amount_minor == d.limit_minor and accepted.apr_bps == d.apr_bps
    with db_engine.connect() as conn:
        loan = conn.execute(select(Loan.__table__).where(Loan.loan_id == accepted.loan_id)).one()
    assert (loan.party_id, loan.limit_minor, loan.apr_bps, loan.offer_id) == (party, d.limit_minor, d.apr_bps, d.decision_id)
    assert svc.accept(d.decision_id, "acc-1").replayed
    with pytest.raises(DomainError, match="already accepted"):
        svc.accept(d.decision_id, "acc-2")
    with pytest.raises(NotFound):
        svc.accept("D" + "0" * 20, "acc-3")
    assert svc.get(d.decision_id)["acceptance"]["loan_id"] == accepted.loan_id


def test_only_unexpired_approvals_can_be_accepted(sqlite_engine, make_service, economy: Path) -> None:
    now = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    svc = make_service(sqlite_engine, clock=lambda: now[0])
    party = approved_party(svc, economy)
    d = svc.apply(app_for(party), "k-expiring")
    declined = svc.apply(new_applicant(dt.date(1940, 1, 1)), "k-old")
    assert declined.outcome == "decline"
    with pytest.raises(DomainError, match="only an approved offer"):
        svc.accept(declined.decision_id, "acc-declined")
    now[0] = d.expires_at + dt.timedelta(seconds=1)
    with pytest.raises(DomainError, match="expired"):
        svc.accept(d.decision_id, "acc-late")
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DecisionAcceptance)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(Loan)).scalar_one() == 0


def test_the_log_is_append_only(db_engine, make_service, economy: Path) -> None:
    svc = make_service(db_engine)
    d = svc.apply(app_for(portrait_parties(economy)[0]), "k-log")
    for statement in ("UPDATE decisions SET outcome = 'approve'", "DELETE FROM decisions",
                      "UPDATE decision_shadow_scores SET pd_12m = 0"):
        with pytest.raises(Exception, match="append-only"):
            with db_engine.begin() as conn:
                conn.execute(text(statement))
    assert svc.get(d.decision_id)["decision"]["outcome"] == d.outcome
    with db_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ShadowScore)).scalar_one() == 1


def test_row_scorer_matches_fast_scorer(make_service, sqlite_engine) -> None:
    from fieldbank.decision.sources import MAX_SCORED_REASONS

    svc = make_service(sqlite_engine)
    snap = svc.sources.current()
    for i in range(0, len(snap.portrait), 37):
        pd_, why = snap.row_scorer.score(i)
        pds, _points, (why_fast,) = snap.models.scorer.score(snap.portrait.row(i))
        assert pd_ == pytest.approx(float(pds[0]), abs=1e-12)
        assert [r.feature for r in why] == [r.feature for r in why_fast]
        # same values; FastScorer's row-wise .tolist() turns ints into floats ("257.0 days"), ours keeps "257 days"
        assert [r.value for r in why] == pytest.approx([r.value for r in why_fast], nan_ok=True)
        assert [r.impact for r in why] == pytest.approx([r.impact for r in why_fast])
        # the per-request path (a portrait too large to score at load, or more reasons than kept)
        pd_row, why_row = snap.row_scorer.score(i, MAX_SCORED_REASONS + 1)
        assert pd_row == pytest.approx(pd_, abs=1e-12)
        assert [r.feature for r in why_row[:len(why)]] == [r.feature for r in why]


def test_a_policy_that_approves_without_score_or_terms_refers(sqlite_engine, make_service, tmp_path: Path) -> None:
    """A careless candidate policy (approve everyone, no grade terms) still never gives a guessed offer."""
    doc = json.loads((Path(__file__).resolve().parents[2] / "policies" / "credit_policy.json").read_text())
    doc["nodes"] = [n for n in doc["nodes"] if n["id"] not in ("knockouts", "risk_grade")]
    cut = next(n for n in doc["nodes"] if n["id"] == "cutoffs")
    cut["content"]["rules"] = [r for r in cut["content"]["rules"] if r["out_rule"] == '"approve_by_grade"']
    doc["edges"] = [{"id": "e0", "type": "edge", "sourceId": "facts", "targetId": "cutoffs"},
                    {"id": "e1", "type": "edge", "sourceId": "cutoffs", "targetId": "decision"}]
    path = tmp_path / "approve_all.json"
    path.write_text(json.dumps(doc))
    svc = make_service(sqlite_engine, policy_path=path)
    assert svc.policy is not None
    d = svc.apply(new_applicant(dt.date(1990, 3, 7)), "k-unscored")  # no portrait: no score
    assert d.outcome == "refer" and d.limit_minor == 0
    hits = {r["rule"] for r in svc.get(d.decision_id)["rule_outcomes"] if r["hit"]}
    assert {"approval_without_score", "approval_without_terms"} <= hits


def test_unknown_age_refers_never_declines_or_approves(sqlite_engine, make_service, economy: Path) -> None:
    svc = make_service(sqlite_engine)
    snap = svc.sources.current()
    no_age = [p for p in portrait_parties(economy)
              if not snap.parties.get(p)["birth_year"] and snap.portrait.facts(snap.portrait.index[p]).age_years is None]
    assert no_age, "the simulator leaves some birth years empty"
    d = svc.apply(app_for(no_age[0]), "k-no-age")
    assert d.outcome in ("refer", "decline")
    why = svc.get(d.decision_id)
    assert "age_unknown" in {r["rule"] for r in why["rule_outcomes"] if r["hit"]} and why["facts"]["age_years"] is None
    assert not {"age_below_minimum", "age_above_maximum"} & {r["rule"] for r in why["rule_outcomes"] if r["hit"]}


def test_concurrent_duplicates_through_the_async_route_make_one_decision(db_engine, make_service,
                                                                         economy: Path) -> None:
    """What the HTTP route runs (`apply_async`: steps on the event loop, reads on threads, the
    commit awaited): 16 concurrent submissions of one key are one decision, 15 replays."""
    import asyncio

    svc = make_service(db_engine)
    party = portrait_parties(economy)[2]

    async def submit_all() -> list:
        return await asyncio.gather(*(svc.apply_async(app_for(party), "k-async") for _ in range(16)))

    results = [r.decision for r in asyncio.run(submit_all())]
    assert len({r.decision_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert n_decisions(db_engine) == 1


@pytest.mark.pg
def test_dropped_database_connections_are_replaced(make_service, economy: Path, pg_engine) -> None:  # noqa: ANN001
    """PostgreSQL restarted or a connection killed: the reads (no pre-ping) and the writer's own
    connection find out on use, reconnect and go on; no request fails."""
    engine = pg_engine
    svc = make_service(engine)
    parties = portrait_parties(economy)
    assert not svc.apply(app_for(parties[0]), "drop-1").replayed
    held = [svc.read_engine.connect() for _ in range(svc.read_engine.pool.checkedin())]  # the pooled ones
    pids = [c.connection.dbapi_connection.info.backend_pid for c in held]
    for c in held:
        c.close()
    pids.append(svc.writer._conn.connection.dbapi_connection.info.backend_pid)  # noqa: SLF001
    with engine.connect() as admin:
        assert all(admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one() for pid in pids)
    second = svc.apply(app_for(parties[1]), "drop-2")
    assert not second.replayed and svc.get(second.decision_id)["decision"]["decision_id"] == second.decision_id
    assert n_decisions(engine) == 2


def test_the_async_route_reads_velocity_and_replays_through_the_loop(db_engine, make_service,
                                                                     economy: Path) -> None:
    """apply_async reads through the loop's writer (sqlite3 or psycopg directly, the SQL compiled
    once, `since` formatted as SQLAlchemy stores it on SQLite): the velocity counts and the
    stored decision it finds are the ones the synchronous path finds."""
    import asyncio

    svc = make_service(db_engine, velocity_max_per_party=2)
    party = approved_party(svc, economy)

    async def run() -> tuple[list, DecisionOut]:
        decided = [(await svc.apply_async(app_for(party), f"a-{i}")).decision for i in range(3)]
        return decided, (await svc.apply_async(app_for(party), "a-0")).decision

    decided, replay = asyncio.run(run())
    assert [d.outcome for d in decided] == ["approve", "approve", "refer"]
    assert "velocity_party" in svc.get(decided[2].decision_id)["facts"]["fraud_flag_names"]
    assert replay.replayed and replay.decision_id == decided[0].decision_id
    sync = svc.apply(app_for(party), "a-3")  # the synchronous path counts the async path's rows
    assert sync.outcome == "refer" and svc.get(sync.decision_id)["facts"]["velocity"]["party"] == 3
    assert n_decisions(db_engine) == 4
