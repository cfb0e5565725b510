"""Fixtures for the lake tests; the data itself is in lake_data.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from lake_data import write_valid_raw

from fieldbank.config import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "var")


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return write_valid_raw(tmp_path / "raw")
