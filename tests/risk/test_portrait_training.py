"""Portrait mode of the risk stage: the modelling table's rules on a hand-made lake, and
training, reason codes, registry and report end to end on a small simulated economy."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fieldbank.config import load_settings
from fieldbank.portrait.pipeline import portrait_path
from fieldbank.portrait.testing import write_lake_table
from fieldbank.risk.dataset import build_table, labels_at, monthly_dates
from fieldbank.risk.testing import HORIZON_DAYS, trained_economy

UTC = dt.timezone.utc
D1, D2, D3, D4 = dt.date(2023, 3, 1), dt.date(2023, 6, 1), dt.date(2024, 3, 1), dt.date(2024, 6, 1)
OBSERVED_UNTIL = dt.date(2025, 4, 1)


def _t(day: str | None) -> dt.datetime | None:
    return None if day is None else dt.datetime.fromisoformat(day).replace(tzinfo=UTC)


# loan_id, party, opened, closed, defaulted
HAND_LOANS = [
    ("LA", "A", "2023-01-01", None, "2023-06-01"),  # open at D1, defaults inside the window -> 1
    ("LB", "B", "2023-01-01", "2023-03-01", None),  # closed on D1 itself: still open at D1 -> 0
    ("LC", "C", "2023-03-01", None, None),  # opened on D1: not before D1 -> not in D1's population
    ("LC2", "C", "2024-05-01", None, "2024-09-01"),  # a future loan changes nothing at D1
    ("LE", "E", "2022-01-01", "2023-02-01", None),  # closed before D1 -> out
    ("LF", "F", "2022-06-01", None, "2022-12-01"),  # already in default at D1 -> out
    ("LG", "G", "2023-01-01", None, "2024-03-01"),  # default exactly at D1 + 365: outside -> 0
    ("LH", "H", "2023-01-01", "2023-05-01", None),  # repaid, but ...
    ("LH2", "H", "2023-08-01", None, "2023-12-01"),  # ... a later loan defaults in the window -> 1
]


def _write_hand_lake(data_dir: Path) -> None:
    rows = {c: [] for c in ("loan_id", "party_id", "lender", "opened_at", "principal_minor", "term_days",
                            "closed_at", "max_dpd", "defaulted_at", "written_off")}
    for loan_id, party, opened, closed, defaulted in HAND_LOANS:
        for c, v in (("loan_id", loan_id), ("party_id", party), ("lender", "rural_credit_coop"),
                     ("opened_at", _t(opened)), ("principal_minor", 100_000), ("term_days", 365),
                     ("closed_at", _t(closed)), ("max_dpd", 120 if defaulted else 0),
                     ("defaulted_at", _t(defaulted)), ("written_off", False)):
            rows[c].append(v)
    write_lake_table(data_dir / "lake", "loans", pa.table(rows))
    for day in (D1, D2, D3, D4):
        parties = sorted({p for _, p, *_ in HAND_LOANS})
        table = pa.table({"party_id": parties, "as_of": [day] * len(parties),
                          "x_feature": [float(i) for i in range(len(parties))]})
        path = portrait_path(data_dir, day)
        path.parent.mkdir(parents=True)
        pq.write_table(table, path)


def test_population_and_label_rules_by_hand(tmp_path: Path) -> None:
    _write_hand_lake(tmp_path)
    got = labels_at(tmp_path / "lake", D1).set_index("party_id")["label"].to_dict()
    assert got == {"A": 1, "B": 0, "G": 0, "H": 1}


def test_censored_dates_are_excluded_and_the_split_is_embargoed(tmp_path: Path) -> None:
    _write_hand_lake(tmp_path)
    table = build_table(tmp_path, tmp_path / "lake", [D4, D3, D2, D1], observed_until=OBSERVED_UNTIL)
    assert table.labelled_dates == [D1, D2, D3]
    assert table.unlabelled_dates == [D4]  # D4 + 365 d is after the observed period
    assert D4 not in set(table.frame["as_of"])
    train, oot, method = table.split()
    assert set(oot["as_of"]) == {D3}
    # D2's outcome window runs past D3: training on it would leak OOT-period outcomes.
    assert set(train["as_of"]) == {D1}
    assert "embargo" in method
    assert all(d + dt.timedelta(days=365) <= D3 for d in train["as_of"])
    # Features come from the portrait file, untouched.
    row = table.frame[(table.frame["party_id"] == "A") & (table.frame["as_of"] == D1)]
    assert row["x_feature"].item() == 0.0


def test_no_usable_training_date_is_a_clear_error(tmp_path: Path) -> None:
    _write_hand_lake(tmp_path)
    table = build_table(tmp_path, tmp_path / "lake", [D2, D3], observed_until=OBSERVED_UNTIL)
    with pytest.raises(ValueError, match="shorter --horizon-days"):
        table.split()
    with pytest.raises(ValueError, match="latest usable date"):
        build_table(tmp_path, tmp_path / "lake", [D4], observed_until=OBSERVED_UNTIL)


def test_monthly_dates() -> None:
    assert monthly_dates(dt.date(2023, 11, 15), dt.date(2024, 2, 1)) == [
        dt.date(2023, 11, 1), dt.date(2023, 12, 1), dt.date(2024, 1, 1), dt.date(2024, 2, 1)]


# ---------------------------------------------------------------- end to end (slow) ----



@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory):
    return trained_economy(tmp_path_factory.mktemp("risk_economy"), parties=8000)


@pytest.mark.slow
def test_training_registers_every_model_with_its_audit_trail(trained) -> None:
    from fieldbank.risk.portrait_training import MODEL_KEYS

    settings, result = trained
    meta = json.loads((result.folder / "metadata.json").read_text())
    metrics = json.loads((result.folder / "metrics.json").read_text())
    assert meta["mode"] == "portrait" and meta["champion_model"] == "lgbm_both"
    assert set(meta["features"]) == set(MODEL_KEYS)
    assert "party_declared_income_minor" in meta["features"]["lgbm_traditional"]
    assert "bills_late_share_365d" not in meta["features"]["lgbm_traditional"]
    assert "bills_late_share_365d" in meta["features"]["lgbm_portrait"]
    assert meta["training_window"]["oot_as_of"] == "2024-01-01"
    assert max(meta["training_window"]["as_of"]) <= "2023-07-05"  # embargo: 2024-01-01 - 180 d
    assert len(meta["data_sha256"]) == 64 and meta["libraries"]["lightgbm"] != "not installed"
    for key in MODEL_KEYS:
        for split in ("train", "oot"):
            m = metrics[split][key]
            assert 0.5 <= m["auc"] <= 1 and 0 <= m["ece"] <= 1, (key, split, m)
    assert metrics["train"]["lgbm_both"]["auc"] > 0.7
    # The uplift table compares the three feature sets on the very same OOT rows, plus the ceiling.
    assert [u["model"] for u in result.uplift] == ["lgbm_traditional", "lgbm_portrait", "lgbm_both",
                                                   "simulator_true_pd"]
    oot_rows = {metrics["oot"][k]["rows"] for k in MODEL_KEYS}
    assert len(oot_rows) == 1


@pytest.mark.slow
def test_planned_dates_end_with_the_newest_observed_month_and_respect_the_embargo(trained) -> None:
    from fieldbank.risk.dataset import plan_as_of_dates

    settings, _ = trained
    dates = plan_as_of_dates(settings.lake_dir, HORIZON_DAYS)
    assert dates[-1] == dt.date(2024, 1, 1)  # 18 months from 2023-01: observed until 2024-07-01
    assert all(d + dt.timedelta(days=HORIZON_DAYS) <= dates[-1] for d in dates[:-1])
    with pytest.raises(ValueError, match="too short"):
        plan_as_of_dates(settings.lake_dir, 365)


@pytest.mark.slow
def test_saved_models_reload_with_identical_scores_and_hold_monotone_constraints(trained) -> None:
    from fieldbank.risk.portrait_training import MONOTONE, PortraitModels

    settings, result = trained
    _, oot, _ = result.table.split()
    loaded = PortraitModels.load(result.folder)
    for key, model in result.models.models.items():
        np.testing.assert_allclose(loaded.predict_pd(oot, key), model.predict_pd(oot), rtol=1e-9, atol=1e-12)
    champion = loaded.models["lgbm_both"]
    assert champion.spec.monotone and set(champion.spec.monotone) <= set(MONOTONE)
    champion.check_monotone(oot, n_rows=50)  # raises on any violation


@pytest.mark.slow
def test_reason_codes_are_the_top_contributors_and_add_up_to_the_score(trained) -> None:
    from fieldbank.risk.explain import lgbm_contributions, reasons, scorecard_points_lost

    _, result = trained
    _, oot, _ = result.table.split()
    rows = oot.head(25)
    champion = result.models.models["lgbm_both"]
    contrib, bias = lgbm_contributions(champion, rows)
    # Contributions + bias are the boosters' log-odds: an exact split of the raw score.
    logit = contrib.sum(axis=1).to_numpy() + bias
    assert len(champion.boosters_) == 1
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), champion.predict_raw(rows), rtol=1e-6)
    for (idx, why) in zip(rows.index, reasons(champion, rows)):
        c = contrib.loc[idx]
        expected = c[c > 0].sort_values(ascending=False).head(4)
        assert [r.feature for r in why] == list(expected.index)
        assert all(r.impact > 0 and r.text for r in why)
    # The decision-time fast path gives the same PDs and the same reasons.
    from fieldbank.risk.scoring import FastScorer

    fast_pd, fast_points, fast_why = FastScorer(champion).score(rows)
    np.testing.assert_allclose(fast_pd, champion.predict_pd(rows), rtol=1e-9)
    assert [[r.feature for r in w] for w in fast_why] == [[r.feature for r in w] for w in reasons(champion, rows)]
    lost = scorecard_points_lost(result.models.models["scorecard_both"], rows)
    assert (lost.to_numpy() >= -1e-9).all()
    for idx, why in zip(rows.index, reasons(result.models.models["scorecard_both"], rows)):
        assert [r.feature for r in why] == list(lost.loc[idx][lost.loc[idx] > 1e-9].sort_values(ascending=False)
                                                .head(4).index)


@pytest.mark.slow
def test_report_is_self_contained_with_every_section(trained) -> None:
    from plotly.offline import get_plotlyjs

    from fieldbank.risk.report import SECTIONS

    _, result = trained
    text = result.report_path.read_text(encoding="utf-8")
    assert get_plotlyjs()[:200] in text  # plotly.js inlined
    assert "<script src=" not in text.replace(" ", "") and 'src="http' not in text
    for heading in ("Uplift", "ROC", "KS", "Calibration", "Score distribution", "Stability (PSI)",
                    "Feature importance", "Performance by segment", "simulator_true_pd"):
        assert heading in text, heading
    assert len(SECTIONS) >= 10


@pytest.mark.slow
def test_score_verb_prints_pd_points_and_reasons(trained) -> None:
    from fieldbank.cli import app

    settings, result = trained
    _, oot, _ = result.table.split()
    party = oot.sort_values("label", ascending=False)["party_id"].iloc[0]
    out = CliRunner().invoke(app, ["score", "--party-id", party, "--as-of", "2024-01-01",
                                   "--data-dir", str(settings.data_dir)])
    assert out.exit_code == 0, out.output
    assert "PD 0." in out.output and "points" in out.output
    bad = CliRunner().invoke(app, ["score", "--party-id", "nobody", "--as-of", "2024-01-01",
                                   "--data-dir", str(settings.data_dir)])
    assert bad.exit_code != 0 and "nobody" in bad.output


def test_psi_is_zero_for_identical_and_large_for_shifted() -> None:
    from fieldbank.risk.report import psi

    rng = np.random.default_rng(0)
    a = pd.Series(rng.normal(size=5000))
    assert psi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert psi(a, a + 1.0) > 0.25
    assert math.isfinite(psi(pd.Series(["x", "y"] * 50), pd.Series(["x"] * 100)))


def test_train_cli_names_bad_options(tmp_path: Path) -> None:
    from fieldbank.cli import app

    _write_hand_lake(tmp_path)
    out = CliRunner().invoke(app, ["train", "--population", "everyone", "--as-of", "2023-03-01",
                                   "--data-dir", str(tmp_path)])
    assert out.exit_code != 0 and "everyone" in out.output
    out = CliRunner().invoke(app, ["train", "--as-of", "2023-13-01", "--data-dir", str(tmp_path)])
    assert out.exit_code != 0 and "2023-13-01" in out.output
    out = CliRunner().invoke(app, ["train", "--table", str(tmp_path / "x.csv"), "--data-dir", str(tmp_path)])
    assert out.exit_code != 0 and "--target" in out.output
