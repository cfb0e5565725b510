"""Fixtures of the portrait tests; the hand-made lake's data is in portrait_handmade.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from portrait_handmade import hand_tables

from fieldbank.portrait.testing import write_lake_table

__all__ = ["write_lake_table"]


@pytest.fixture()
def hand_lake(tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    for name, table in hand_tables().items():
        write_lake_table(lake, name, table)
    return lake
