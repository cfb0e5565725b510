"""Output is streamed in bounded chunks and published atomically."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from fieldbank.simulate import engine
from fieldbank.simulate.writer import ROW_GROUP_ROWS


def test_payments_are_split_into_bounded_files_and_row_groups(small_run):
    files = sorted((small_run.raw / "payments").glob("part-*.parquet"))
    assert len(files) > 1, "the small run is sized to need several files"
    total = 0
    for f in files:
        meta = pq.ParquetFile(f).metadata
        assert meta.num_rows <= small_run.params.rows_per_file
        assert all(meta.row_group(i).num_rows <= ROW_GROUP_ROWS for i in range(meta.num_row_groups))
        total += meta.num_rows
    assert total == small_run.report.rows["payments"]


def test_a_crash_leaves_the_previous_output_untouched(tmp_path, monkeypatch, run_sim):
    first = run_sim(tmp_path, parties=120, months=2, seed=1)
    before = sorted(p.name for p in (first.raw / "payments").iterdir())

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(engine.truth, "counterfactual", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_sim(tmp_path, parties=200, months=3, seed=2)
    # the old output is still there, whole; no half-written new one replaced it
    assert sorted(p.name for p in (first.raw / "payments").iterdir()) == before
    assert pq.read_table(first.raw / "parties").num_rows == 120
    monkeypatch.undo()
    second = run_sim(tmp_path, parties=200, months=3, seed=2)  # a later run cleans up and replaces
    assert pq.read_table(second.raw / "parties").num_rows == 200
    assert not any(p.name.endswith(".simulate-tmp") for p in tmp_path.iterdir())
