"""Snapshots: an owner's rows are replaced atomically, other rows are untouched."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from fieldbank import contract
from fieldbank.lake.publish import publish_snapshot
from fieldbank.lake.read import lake_files, read_lake_table


def _loans(ids: list[str], max_dpd: int, month: int = 3) -> pa.Table:
    opened = datetime(2024, month, 5, tzinfo=timezone.utc)
    n = len(ids)
    return pa.table({
        "loan_id": ids, "party_id": ["P1"] * n, "lender": ["fieldbank"] * n, "opened_at": [opened] * n,
        "principal_minor": [100_000] * n, "term_days": [180] * n, "closed_at": [None] * n,
        "max_dpd": [max_dpd] * n, "defaulted_at": [None] * n, "written_off": [False] * n,
    }, schema=contract.LOANS.schema)


def test_snapshot_replaces_only_its_owners_rows(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    publish_snapshot(lake, "loans", "other", _loans(["X1"], 0, month=1))
    publish_snapshot(lake, "loans", "fieldbank", _loans(["L1", "L2"], 5))
    publish_snapshot(lake, "loans", "fieldbank", _loans(["L1", "L2", "L3"], 40, month=4))
    table = read_lake_table(lake, "loans").sort_by("loan_id")
    assert table.column("loan_id").to_pylist() == ["L1", "L2", "L3", "X1"]
    assert table.column("max_dpd").to_pylist() == [40, 40, 40, 0]
    assert {f.parent.name for f in lake_files(lake, "loans")} == {"month=2024-01", "month=2024-04"}


def test_rejected_snapshot_changes_nothing(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    publish_snapshot(lake, "loans", "other", _loans(["X1"], 0))
    before = read_lake_table(lake, "loans")
    with pytest.raises(ValueError, match="'X1' already belongs to another source"):
        publish_snapshot(lake, "loans", "fieldbank", _loans(["X1"], 3))
    with pytest.raises(ValueError, match="duplicate loan_id"):
        publish_snapshot(lake, "loans", "fieldbank", _loans(["L1", "L1"], 3))
    with pytest.raises(ValueError, match="schema differs"):
        publish_snapshot(lake, "loans", "fieldbank", _loans(["L1"], 3).drop_columns(["written_off"]))
    assert read_lake_table(lake, "loans").equals(before)
    assert not list(lake.glob("_staging/*")), "no staging left behind"
