"""Bad input to the training mode: clear errors naming the field, the value and the rule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fieldbank.risk import registry
from fieldbank.risk.features import FeatureSpec
from fieldbank.risk.tabular import load_table


def test_text_target_needs_bad_value(credit_csv: Path) -> None:
    with pytest.raises(ValueError, match=r"target 'outcome' has values \['bad', 'good'\].*--bad-value"):
        load_table(credit_csv, "outcome")


def test_unknown_column_is_named(credit_csv: Path) -> None:
    with pytest.raises(ValueError, match="column 'defaulted' not in applicants.csv"):
        load_table(credit_csv, "defaulted")


def test_single_class_target_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"x": [1, 2, 3], "bad": [0, 0, 0]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="every row is good"):
        load_table(path, "bad")


def test_identifier_column_is_not_a_category(credit_csv: Path) -> None:
    data = load_table(credit_csv, "outcome", ["bad"])
    with pytest.raises(ValueError, match="applicant_id.*--drop applicant_id"):
        FeatureSpec.infer(data.x)


def test_unseen_category_scores_as_missing() -> None:
    spec = FeatureSpec.infer(pd.DataFrame({"x": [1.0, 2.0], "region": ["north", "south"]}))
    frame = spec.frame(pd.DataFrame({"x": [1], "region": ["mars"]}))
    assert frame["region"].isna().all() and list(frame["region"].cat.categories) == ["north", "south"]


def test_registry_names_and_versions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model name 'Bad Name'"):
        registry.register(tmp_path, "Bad Name", lambda folder: None, {}, {})
    with pytest.raises(LookupError, match="no model named 'nothing'"):
        registry.promote(tmp_path, "nothing")
    folder = registry.register(tmp_path, "m", lambda f: (f / "model.txt").write_text("x"), {"mode": "t"}, {"auc": 1})
    assert folder.name == "0001" and (folder / "model.txt").exists()
    with pytest.raises(LookupError, match="has no version 7"):
        registry.promote(tmp_path, "m", 7)
    assert not list((tmp_path / "m").glob(".staging-*")), "no staging folder left behind"
