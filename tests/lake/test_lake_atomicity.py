"""A crash between staging and commit leaves the lake as it was; the next run recovers."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from lake_data import NOW, ROWS, table_of, write_csv, write_parquet, write_valid_raw

from fieldbank import contract
from fieldbank.lake import layout
from fieldbank.lake.ingest import IngestHooks, ingest
from fieldbank.lake.read import lake_files, read_lake_table


class SimulatedCrash(Exception):
    pass


def crash_on(table: str):
    def hook(name: str, batch_id: str) -> None:
        if name == table:
            raise SimulatedCrash(batch_id)

    return hook


def visible_state(settings) -> dict[str, object]:
    lake = Path(settings.lake_dir)
    return {
        name: (
            os.readlink(lake / name) if (lake / name).is_symlink() else None,
            sorted(
                read_lake_table(lake, name).to_pylist(),
                key=lambda r: r[contract.TABLES[name].primary_key],
            ),
        )
        for name in contract.TABLE_ORDER
    }


def bad_and_good_payments(tmp_path: Path) -> Path:
    rows = [dict(r, txn_id="x" + r["txn_id"]) for r in ROWS["payments"]()]
    rows[0]["amount_minor"] = -1
    write_parquet(tmp_path / "more" / "payments.parquet", table_of("payments", rows))
    return tmp_path / "more"


def test_crash_before_commit_leaves_lake_unchanged_and_next_run_lands_all(
    tmp_path: Path, settings, raw: Path
) -> None:
    ingest(raw, settings, now=NOW)
    more = bad_and_good_payments(tmp_path)
    before = visible_state(settings)
    with pytest.raises(SimulatedCrash):
        ingest(more, settings, now=NOW, hooks=IngestHooks(before_commit=crash_on("payments")))
    # the staged version and its quarantine exist on disk, but nothing of them is visible
    assert visible_state(settings) == before
    assert (
        len(list(layout.versions_root(Path(settings.lake_dir), "payments").iterdir())) == 2
    )  # live + staged
    assert not (Path(settings.quarantine_dir) / "payments").exists()
    report = ingest(more, settings, now=NOW)
    assert any("rolled back uncommitted batch" in line for line in report.recovered)
    t = report.table("payments")
    assert (t.rows_landed, t.rows_quarantined) == (7, 1)
    assert read_lake_table(settings.lake_dir, "payments").num_rows == 8 + 7
    assert len(list((Path(settings.quarantine_dir) / "payments").glob("*.parquet"))) == 1
    # only the live version and the one before it remain
    assert len(list(layout.versions_root(Path(settings.lake_dir), "payments").iterdir())) == 2


def test_crash_after_commit_delivers_quarantine_on_next_run(
    tmp_path: Path, settings, raw: Path
) -> None:
    ingest(raw, settings, now=NOW)
    more = bad_and_good_payments(tmp_path)
    with pytest.raises(SimulatedCrash):
        ingest(more, settings, now=NOW, hooks=IngestHooks(after_commit=crash_on("payments")))
    # committed: the rows are visible, the file is recorded, the quarantine is pending
    assert read_lake_table(settings.lake_dir, "payments").num_rows == 15
    assert not (Path(settings.quarantine_dir) / "payments").exists()
    report = ingest(more, settings, now=NOW)
    assert report.rows_read == 0  # already ingested
    assert any("delivered quarantine" in line for line in report.recovered)
    (qfile,) = (Path(settings.quarantine_dir) / "payments").glob("*.parquet")
    (row,) = pq.read_table(qfile).to_pylist()
    assert (row["_rule"], row["txn_id"]) == ("min_value", "xt1")


def test_crash_midway_through_a_run_keeps_earlier_tables(
    tmp_path: Path, settings, raw: Path
) -> None:
    with pytest.raises(SimulatedCrash):
        ingest(raw, settings, now=NOW, hooks=IngestHooks(before_commit=crash_on("invoices")))
    # parties and payments committed before the crash; invoices and later did not
    assert read_lake_table(settings.lake_dir, "payments").num_rows == 8
    assert read_lake_table(settings.lake_dir, "invoices").num_rows == 0
    assert not (Path(settings.lake_dir) / "invoices").exists()
    staging = layout.staging_root(Path(settings.lake_dir))
    assert any(staging.iterdir())
    report = ingest(raw, settings, now=NOW)
    assert report.clean and not any(staging.iterdir())
    assert report.table("payments").files[0].status == "skipped"
    assert report.table("invoices").rows_landed == 3 and report.table("loans").rows_landed == 2


def test_readers_see_one_version(settings, raw: Path) -> None:
    """A reader that listed the files of a version can still read them after a commit."""
    ingest(raw, settings, now=NOW)
    files_before = lake_files(settings.lake_dir, "payments")
    rows = [dict(r, txn_id="y" + r["txn_id"]) for r in ROWS["payments"]()]
    write_csv(raw.parent / "next" / "payments.csv", rows, contract.PAYMENTS.column_names)
    ingest(raw.parent / "next", settings, now=NOW)
    assert sum(pq.read_metadata(f).num_rows for f in files_before) == 8
    assert read_lake_table(settings.lake_dir, "payments").num_rows == 16


def test_a_plain_directory_in_place_of_a_table_is_refused(tmp_path: Path, settings) -> None:
    raw = write_valid_raw(tmp_path / "raw")
    (Path(settings.lake_dir) / "payments").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="plain directory"):
        ingest(raw, settings, now=NOW)


def test_one_ingest_at_a_time(settings, raw: Path) -> None:
    with layout.lake_lock(Path(settings.lake_dir)):
        with pytest.raises(RuntimeError, match="another ingest"):
            ingest(raw, settings, now=NOW)
    assert ingest(raw, settings, now=NOW).clean
