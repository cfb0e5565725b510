"""Valid data lands whole, in the right partitions, once."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from lake_data import NOW, ROWS, table_of, write_csv, write_parquet, write_valid_raw

from fieldbank import contract
from fieldbank.lake import layout
from fieldbank.lake.ingest import ingest
from fieldbank.lake.read import lake_files, lake_glob, lake_relation, read_lake_table


def sorted_rows(table, key: str) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r[key])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_valid_dataset_lands_whole(tmp_path: Path, settings, fmt: str) -> None:
    raw = write_valid_raw(tmp_path / f"raw_{fmt}", fmt)
    report = ingest(raw, settings, now=NOW)
    assert report.clean, report.summary()
    assert [t.table for t in report.tables] == list(contract.TABLE_ORDER)
    for name in contract.TABLE_ORDER:
        t = report.table(name)
        expected = table_of(name)
        assert (t.rows_read, t.rows_landed, t.rows_quarantined, t.rows_skipped) == (
            expected.num_rows,
            expected.num_rows,
            0,
            0,
        )
        landed = read_lake_table(settings.lake_dir, name)
        assert landed.schema.equals(contract.TABLES[name].schema)
        key = contract.TABLES[name].primary_key
        assert sorted_rows(landed, key) == sorted_rows(expected, key)
    assert not Path(settings.quarantine_dir).exists() or not any(
        Path(settings.quarantine_dir).rglob("*.parquet")
    )


def test_files_hold_exactly_the_contract_columns_and_types(settings, raw: Path) -> None:
    ingest(raw, settings, now=NOW)
    for name in contract.TABLE_ORDER:
        files = lake_files(settings.lake_dir, name)
        assert files
        for f in files:
            schema = pq.read_schema(f)
            assert schema.names == contract.TABLES[name].column_names
            assert [fld.type for fld in schema] == [c.type for c in contract.TABLES[name].columns]


def test_partitions_are_months_of_the_time_column_in_utc(tmp_path: Path, settings) -> None:
    raw = tmp_path / "raw"
    write_parquet(raw / "parties.parquet", table_of("parties"))
    rows = ROWS["payments"]()
    # 23:30 on Jan 31 at UTC-05:00 is Feb 1 in UTC: the partition must follow UTC.
    rows.append(dict(rows[0], txn_id="t-offset"))
    write_parquet(raw / "payments.parquet", table_of("payments", rows))
    write_csv(raw / "more" / "x.txt", [{"a": 1}])  # ignored, reported
    csv_rows = [dict(rows[0], txn_id="t-csv", ts="2024-01-31T23:30:00-05:00")]
    write_csv(tmp_path / "one.csv", csv_rows, contract.PAYMENTS.column_names)
    report = ingest(raw, settings, now=NOW)
    assert report.clean
    assert any("more" in line for line in report.ignored)
    report = ingest(tmp_path / "one.csv", settings, table="payments", now=NOW)
    assert report.clean and report.rows_landed == 1
    seen = 0
    for name in ("parties", "payments"):
        time_column = contract.TABLES[name].time_column
        for f in lake_files(settings.lake_dir, name):
            month = f.parent.name
            assert month.startswith("month=")
            for value in pq.read_table(f).column(time_column).to_pylist():
                assert value.tzinfo is not None
                assert month == layout.month_dir_name(
                    value.astimezone(timezone.utc).year, value.astimezone(timezone.utc).month
                )
                seen += 1
    assert seen == 5 + 10
    ts = {r["txn_id"]: r["ts"] for r in read_lake_table(settings.lake_dir, "payments").to_pylist()}
    assert ts["t-csv"] == datetime(2024, 2, 1, 4, 30, tzinfo=timezone.utc)
    assert (Path(settings.lake_dir) / "payments" / "month=2024-02").is_dir()


def test_reingest_adds_nothing(settings, raw: Path) -> None:
    first = ingest(raw, settings, now=NOW)
    before = {name: read_lake_table(settings.lake_dir, name) for name in contract.TABLE_ORDER}
    again = ingest(raw, settings, now=NOW)
    assert again.rows_read == 0 and again.rows_landed == 0
    assert all(f.status == "skipped" for t in again.tables for f in t.files)
    forced = ingest(raw, settings, now=NOW, force=True)
    assert forced.rows_read == first.rows_read
    assert forced.rows_landed == 0 and forced.rows_quarantined == 0
    assert forced.rows_skipped == first.rows_read
    for name in contract.TABLE_ORDER:
        assert read_lake_table(settings.lake_dir, name).equals(before[name])


def test_same_rows_in_another_file_are_counted_as_already_in_lake(
    tmp_path: Path, settings, raw: Path
) -> None:
    ingest(raw, settings, now=NOW)
    rows = ROWS["payments"]()
    write_csv(tmp_path / "again" / "payments.csv", rows, contract.PAYMENTS.column_names)
    report = ingest(tmp_path / "again", settings, now=NOW)
    t = report.table("payments")
    assert (t.rows_read, t.rows_landed, t.rows_skipped, t.rows_quarantined) == (
        len(rows),
        0,
        len(rows),
        0,
    )
    assert read_lake_table(settings.lake_dir, "payments").num_rows == len(rows)


def test_lake_relation_reads_live_version_and_empty_tables(settings, raw: Path) -> None:
    con = duckdb.connect()
    empty = lake_relation(con, settings.lake_dir, "payments")
    assert empty.columns == contract.PAYMENTS.column_names and empty.fetchall() == []
    ingest(raw, settings, now=NOW)
    rel = lake_relation(con, settings.lake_dir, "payments")
    assert rel.columns == contract.PAYMENTS.column_names
    assert rel.aggregate("count(*)").fetchall() == [(8,)]
    via_glob = con.execute(
        f"SELECT count(*) FROM read_parquet('{lake_glob(settings.lake_dir, 'payments')}')"
    ).fetchone()
    assert via_glob == (8,)


def test_single_file_needs_a_table_name(tmp_path: Path, settings) -> None:
    f = write_parquet(tmp_path / "export.parquet", table_of("parties"))
    with pytest.raises(ValueError, match="--table"):
        ingest(f, settings, now=NOW)
    report = ingest(f, settings, table="parties", now=NOW)
    assert report.clean and report.rows_landed == 5


def test_same_file_twice_in_one_run_is_read_once(tmp_path: Path, settings) -> None:
    raw = write_valid_raw(tmp_path / "raw")
    copy = raw / "payments" / "part-00001.parquet"
    copy.write_bytes((raw / "payments" / "part-00000.parquet").read_bytes())
    report = ingest(raw, settings, now=NOW)
    t = report.table("payments")
    assert report.clean and (t.rows_read, t.rows_landed) == (8, 8)
    skipped = [f for f in t.files if f.status == "skipped"]
    assert [f.path for f in skipped] == [str(copy)] and "part-00000" in (skipped[0].note or "")


def test_header_only_and_empty_csv(tmp_path: Path, settings) -> None:
    src = tmp_path / "in"
    (src / "payments").mkdir(parents=True)
    (src / "payments" / "a.csv").write_text(",".join(contract.PAYMENTS.column_names) + "\n")
    (src / "payments" / "b.csv").write_text("")
    report = ingest(src, settings, now=NOW)
    t = report.table("payments")
    assert (t.rows_read, t.rows_landed, t.rows_quarantined) == (0, 0, 0)
    status = {Path(f.path).name: f.status for f in t.files}
    assert status == {"a.csv": "ingested", "b.csv": "rejected"}
    assert read_lake_table(settings.lake_dir, "payments").num_rows == 0


def test_small_batches_still_catch_duplicates_across_files(tmp_path: Path, settings) -> None:
    write_parquet(tmp_path / "in" / "parties.parquet", table_of("parties"))
    rows = ROWS["payments"]()
    write_parquet(tmp_path / "in" / "payments" / "a.parquet", table_of("payments", rows[:5]))
    later = [*rows[5:], dict(rows[0], amount_minor=5), rows[1]]  # t1 conflicts, t2 is a copy
    write_parquet(tmp_path / "in" / "payments" / "b.parquet", table_of("payments", later))
    report = ingest(tmp_path / "in", settings, now=NOW, max_batch_bytes=1)  # one file per batch
    t = report.table("payments")
    assert len(t.batch_ids) == 2
    assert (t.rows_read, t.rows_landed, t.rows_quarantined, t.rows_skipped) == (10, 8, 1, 1)
    assert [rc.rule for rc in t.rule_counts] == ["key_in_lake"]


def test_table_option_limits_a_directory_to_one_table(settings, raw: Path) -> None:
    report = ingest(raw, settings, table="parties", now=NOW)
    assert [t.table for t in report.tables] == ["parties"]
    assert read_lake_table(settings.lake_dir, "payments").num_rows == 0
    with pytest.raises(ValueError, match="unknown table"):
        ingest(raw, settings, table="nope", now=NOW)
