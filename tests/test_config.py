"""Settings: defaults under ./var, then fieldbank.toml, then env vars, then explicit overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from fieldbank.config import load_settings


def test_defaults_live_under_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.lake_dir == Path("var/lake")
    assert s.quarantine_dir == Path("var/quarantine")
    assert s.database_url == "sqlite:///var/bank.db"
    assert s.engine == "duckdb"


def test_toml_then_env_then_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fieldbank.toml").write_text('data_dir = "data"\nengine = "spark"\n')
    s = load_settings()
    assert s.lake_dir == Path("data/lake") and s.engine == "spark"
    monkeypatch.setenv("FIELDBANK_ENGINE", "duckdb")
    monkeypatch.setenv("FIELDBANK_LAKE_DIR", "/elsewhere/lake")
    s = load_settings()
    assert s.engine == "duckdb" and s.lake_dir == Path("/elsewhere/lake") and s.truth_dir == Path("data/truth")
    assert load_settings(data_dir=Path("x")).raw_dir == Path("x/raw")


def test_bad_setting_names_field_and_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FIELDBANK_ENGINE", "oracle")
    with pytest.raises(ValidationError, match="engine"):
        load_settings()
