"""Policy replay: the batch path gives Policy.evaluate's answers; limits, prices and declines
follow the decision service's rules; bad policy files fail with a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fieldbank.decision.backtest import BatchPolicy, Economics, applicant_facts, policy_metrics, replay_policy
from fieldbank.decision.policy import Policy, PolicyError
from fieldbank.decision.pricing import PricingParams, price

from test_backtest_curves import planted

REPO = Path(__file__).resolve().parents[2]
CHAMPION = REPO / "policies" / "credit_policy.json"


def varied(n: int = 400, seed: int = 1):
    """Applicants spread over every rule of the champion policy."""
    rng = np.random.default_rng(seed)
    app = planted(n_good=n - n // 10, n_bad=n // 10, seed=seed)
    f = app.frame
    f["pd_champion"] = rng.choice([0.0005, 0.005, 0.02, 0.04, 0.08, 0.2, 0.3, 0.9], n)
    f["party_kind"] = rng.choice(["household", "business"], n)
    f["party_age_years"] = rng.choice([np.nan, 17, 25, 50, 80], n)
    f["party_tenure_days"] = rng.choice([30.0, 400.0, 3000.0], n)
    f["thin_families_with_data_n"] = rng.choice([0, 2], n)
    f["thin_has_credit_file"] = rng.choice([0, 1], n)
    f["hh_income_minor_90d"] = rng.choice([0, 300_000, 1_500_000], n)
    f["biz_revenue_minor_90d"] = rng.choice([0, 6_000_000], n)
    f["requested_amount_minor"] = rng.choice([50_000, 1_000_000, 60_000_000], n).astype(np.int64)
    return app


def test_batch_path_matches_policy_evaluate_on_every_applicant() -> None:
    app = varied()
    facts = applicant_facts(app).facts
    batch = BatchPolicy(CHAMPION).decide(facts)
    policy = Policy.load(CHAMPION)
    outcomes = set()
    for fact, got in zip(facts, batch):
        ref = policy.evaluate(fact)
        assert (got.outcome, got.grade, got.terms, got.reasons) == (ref.outcome, ref.grade, ref.terms, ref.reasons)
        outcomes.add(got.outcome)
    assert outcomes == {"approve", "decline", "refer"}  # the sample reaches every outcome


def test_replay_sets_limit_and_price_like_the_service() -> None:
    app = varied()
    rep = replay_policy(CHAMPION, app, Economics())
    f = app.frame
    ok = rep.approved()
    assert ok.any() and (~ok).any()
    assert (rep.limit_minor[ok] > 0).all() and (rep.limit_minor[~ok] == 0).all()
    assert (rep.limit_minor[ok] <= f["requested_amount_minor"].to_numpy()[ok]).all()
    assert (rep.outcome[f["pd_champion"].to_numpy() > 0.25] == "decline").all()  # the PD knock-out
    assert not rep.approved()[f["party_age_years"].isna().to_numpy()].any()  # unknown age: never approved
    for i in np.flatnonzero(ok)[:20]:
        quote = price(float(f["pd_champion"].iat[i]), float(rep.lgd[i]), margin_bps=_margin(rep, i),
                      params=PricingParams())
        assert rep.apr_bps[i] == quote.apr_bps
    m = policy_metrics(rep, app, Economics())
    assert m["approved"] + m["declined"] + m["referred"] == len(f)
    assert sum(rep.decline_reasons.values()) <= m["declined"] + m["referred"]


def _margin(rep, i: int) -> int:
    # the champion's grades: A 300 bps (LGD 0.45, PD < 1%), B 400 (0.45), C 500 (0.5), D 700 (0.55)
    return {"A": 300, "B": 400, "C": 500, "D": 700}[rep.grade[i]]


def test_a_tighter_candidate_approves_fewer(tmp_path: Path) -> None:
    doc = json.loads(CHAMPION.read_text())
    for node in doc["nodes"]:
        for r in (node.get("content") or {}).get("rules", []):
            if r.get("_id") == "knockouts:pd_above_maximum":
                r["in_pd_12m"] = "> 0.01"
    tight = tmp_path / "tight.json"
    tight.write_text(json.dumps(doc))
    app = varied()
    champion, candidate = replay_policy(CHAMPION, app), replay_policy(tight, app)
    assert not (candidate.approved() & ~champion.approved()).any()  # tighter: a subset
    high = app.frame["pd_champion"].to_numpy() > 0.01
    assert not candidate.approved()[high].any() and champion.approved()[high].any()


def test_invalid_policy_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PolicyError, match="bad.json"):
        replay_policy(bad, varied(40))
