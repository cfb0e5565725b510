"""The policy module: loading and validating JDM files, evaluating facts, every rule's outcome."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import zen
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldbank.decision.policy import ENGINE_KEY, PROBE_FACTS, FactsError, Policy, PolicyError, _check_facts

ROOT = Path(__file__).resolve().parents[2]
CHAMPION = ROOT / "policies" / "credit_policy.json"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load(CHAMPION)


def facts(**over):
    return {**PROBE_FACTS, **over}


def test_load_names_and_versions_the_file(policy: Policy) -> None:
    import hashlib

    assert policy.name == "credit_policy"
    assert policy.version == hashlib.sha256(CHAMPION.read_bytes()).hexdigest()[:12]
    assert policy.path == CHAMPION


def test_typical_applicant_is_approved_with_grade_and_terms(policy: Policy) -> None:
    r = policy.evaluate(facts(pd_12m=0.03))
    assert (r.outcome, r.grade) == ("approve", "C")
    assert r.terms["margin_bps"] == 500 and r.terms["limit_factor"] == 1.0
    assert r.reasons and all(isinstance(s, str) and s for s in r.reasons)
    # every rule of every table is reported, hit or not
    assert len(r.rule_outcomes) == len(policy.rules)
    hit = {o["rule"] for o in r.rule_outcomes if o["hit"]}
    assert hit == {"grade_C", "approve_by_grade"}


@pytest.mark.parametrize("over, outcome, rule", [
    ({"pd_12m": 0.3}, "decline", "pd_above_maximum"),
    ({"age_years": 17}, "decline", "age_below_minimum"),
    ({"age_years": 80}, "decline", "age_above_maximum"),
    ({"sanctions_hit": True}, "decline", "sanctions_match"),
    ({"fraud_flags": 1}, "refer", "fraud_one_flag"),
    ({"fraud_flags": ["shared_device", "velocity_phone"]}, "decline", "fraud_several_flags"),
    ({"months_observed": 1}, "refer", "too_little_history"),
    ({"requested_amount_minor": 60_000_000}, "refer", "amount_above_automatic_maximum"),
    ({"monthly_revenue_minor": 0, "monthly_income_minor": 0}, "decline", "no_observed_income"),
    ({"pd_12m": 0.2}, "decline", "cutoff_grade_E"),
    ({"pd_12m": 0.07, "thin_file": True}, "refer", "thin_file_grade_D"),
    ({"pd_12m": 0.005, "thin_file": True}, "approve", "thin_file_starter_limit"),
])
def test_rules(policy: Policy, over, outcome, rule) -> None:
    r = policy.evaluate(facts(**over))
    assert r.outcome == outcome
    assert rule in {o["rule"] for o in r.rule_outcomes if o["hit"]}
    assert r.reasons


def test_decline_beats_refer(policy: Policy) -> None:
    r = policy.evaluate(facts(fraud_flags=1, age_years=16))
    assert r.outcome == "decline"


def test_facts_are_checked(policy: Policy) -> None:
    bad = facts()
    del bad["pd_12m"]
    with pytest.raises(FactsError, match="pd_12m"):
        policy.evaluate(bad)
    with pytest.raises(FactsError, match="age_years"):
        policy.evaluate(facts(age_years="forty"))
    with pytest.raises(FactsError, match="pd_12m"):
        policy.evaluate(facts(pd_12m=1.5))


def _write(tmp_path: Path, doc) -> Path:
    p = tmp_path / "p.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def _doc():
    return json.loads(CHAMPION.read_text())


def _table(doc, node_id):
    return next(n for n in doc["nodes"] if n["id"] == node_id)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: "{not json", "not valid JSON"),
    (lambda d: {"nodes": []}, "'nodes' and 'edges'"),
    (lambda d: {**d, "nodes": [n for n in d["nodes"] if n["type"] != "outputNode"]}, "one outputNode"),
    (lambda d: _set(d, "risk_grade", "hitPolicy", "unique"), "hitPolicy"),
    (lambda d: _set(d, "cutoffs", "outputPath", "knockouts"), "outputPath"),
    (lambda d: _cell(d, "knockouts", 0, "out_effect", '"maybe"'), "effect"),
    (lambda d: _cell(d, "knockouts", 0, "out_reason", ""), "plain-language reason"),
    (lambda d: _cell(d, "risk_grade", 0, "out_margin_bps", '"lots"'), "margin_bps"),
    (lambda d: _cell(d, "risk_grade", 1, "out_rule", '"grade_A"'), "unique"),
    (lambda d: _cell(d, "knockouts", 0, "out_rule", "sanctions match"), "not a literal"),
    (lambda d: _cell(d, "knockouts", 0, "in_pd_12m", "> > 0.2"), "cannot parse"),
])
def test_invalid_files_raise_policy_error_naming_the_file(tmp_path: Path, mutate, message) -> None:
    path = _write(tmp_path, mutate(_doc()))
    with pytest.raises(PolicyError, match=message) as e:
        Policy.load(path)
    assert str(path) in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        Policy.load(tmp_path / "nope.json")


def test_a_candidate_differs_only_in_numbers(tmp_path: Path) -> None:
    doc = _doc()
    _cell(doc, "knockouts", 5, "in_pd_12m", "> 0.10")  # pd_above_maximum tightened
    candidate = Policy.load(_write(tmp_path, doc))
    assert candidate.version != Policy.load(CHAMPION).version
    assert candidate.evaluate(facts(pd_12m=0.12)).outcome == "decline"


def _set(doc, node_id, key, value):
    _table(doc, node_id)["content"][key] = value
    return doc


def _cell(doc, node_id, row, column, value):
    _table(doc, node_id)["content"]["rules"][row][column] = value
    return doc


APPLICANTS = st.fixed_dictionaries({
    "pd_12m": st.floats(0.0, 1.0), "thin_file": st.booleans(), "age_years": st.none() | st.integers(10, 100),
    "months_observed": st.integers(0, 60), "monthly_revenue_minor": st.integers(0, 50_000_000),
    "monthly_income_minor": st.integers(0, 10_000_000), "existing_exposure_minor": st.integers(0, 50_000_000),
    "requested_amount_minor": st.integers(1, 100_000_000), "term_days": st.integers(7, 720),
    "fraud_flags": st.integers(0, 3), "kind": st.sampled_from(["business", "household"]),
    "sanctions_hit": st.booleans(), "scored": st.booleans(),
})


@pytest.mark.parametrize("path", [CHAMPION, ROOT / "policies" / "candidate_tight_cutoff.json"], ids=["champion",
                                                                                                   "candidate"])
@settings(max_examples=150, deadline=None)
@given(applicant=APPLICANTS)
def test_the_result_names_the_same_hits_as_the_engine_trace(path: Path, applicant: dict) -> None:
    """evaluate() reads the hit rows from the `rule` names in the result (no trace, cheaper):
    for any applicant they are exactly the rows the engine's trace reports."""
    policy = _loaded(path)
    traced, from_result = policy.hits_from_trace(applicant)
    assert traced == from_result
    hit_rules = {r["rule"] for r in policy.evaluate(applicant).rule_outcomes if r["hit"]}
    assert hit_rules == {r.rule for r in traced}
    # Policy evaluates through a ZenEngine with a static loader (6x cheaper than a ZenDecision):
    # both must answer the same, result and trace.
    facts = _check_facts(applicant)
    for options in ({"trace": False}, {"trace": True}):
        by_engine = policy._engine.evaluate(ENGINE_KEY, facts, options)
        by_decision = _decision(path).evaluate(facts, options)
        assert by_engine["result"] == by_decision["result"]
        assert {k: v.get("traceData") for k, v in (by_engine.get("trace") or {}).items()} == \
            {k: v.get("traceData") for k, v in (by_decision.get("trace") or {}).items()}


_POLICIES: dict[Path, Policy] = {}
_DECISIONS: dict[Path, Any] = {}


def _loaded(path: Path) -> Policy:
    if path not in _POLICIES:
        _POLICIES[path] = Policy.load(path)
    return _POLICIES[path]


def _decision(path: Path) -> Any:
    if path not in _DECISIONS:
        _DECISIONS[path] = zen.ZenEngine().create_decision(path.read_text())
    return _DECISIONS[path]


def test_an_output_path_named_like_a_fact_is_rejected(tmp_path: Path) -> None:
    doc = json.loads(CHAMPION.read_text())
    table = next(n for n in doc["nodes"] if n["type"] == "decisionTableNode")
    table["content"]["outputPath"] = "pd_12m"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(PolicyError, match="outputPath, not a fact's name"):
        Policy.load(bad)
