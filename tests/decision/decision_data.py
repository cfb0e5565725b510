"""Plain helpers for the decision tests (fixtures are in conftest.py; tests never import a
module named `conftest`, which pytest-xdist workers can resolve to another folder's)."""

from __future__ import annotations

import shutil
from pathlib import Path


def copy_economy(economy: Path, dest: Path, *, portraits: bool = True, models: bool = True) -> Path:
    """A private copy to break or extend (the lake is symlinked: tests never change it)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "lake").symlink_to(economy / "lake")
    if portraits:
        shutil.copytree(economy / "portraits", dest / "portraits")
    if models:
        shutil.copytree(economy / "models", dest / "models")
    return dest


def portrait_parties(economy: Path) -> list[str]:
    import pyarrow.parquet as pq

    from fieldbank.risk.scoring import newest_portrait_date

    day = newest_portrait_date(economy)
    return pq.read_table(economy / "portraits" / f"as_of={day}" / "part-0.parquet", columns=["party_id"])[
        "party_id"].to_pylist()
