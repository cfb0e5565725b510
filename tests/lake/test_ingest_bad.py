"""Crafted bad files: every bad row is quarantined with file, row, column, value and rule;
rows read = landed + quarantined + skipped; nothing is lost; rejected files change no data."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from lake_data import NOW, ROWS, table_of, write_csv, write_parquet, write_valid_raw

from fieldbank import contract
from fieldbank.lake.ingest import ingest
from fieldbank.lake.read import read_lake_table
from fieldbank.lake.report import IngestReport


def quarantine_rows(settings, table: str) -> list[dict]:
    files = sorted((Path(settings.quarantine_dir) / table).glob("*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def lake_snapshot(settings) -> dict[str, list[dict]]:
    return {
        name: sorted(
            read_lake_table(settings.lake_dir, name).to_pylist(),
            key=lambda r: str(r[contract.TABLES[name].primary_key]),
        )
        for name in contract.TABLE_ORDER
    }


def assert_nothing_lost(report: IngestReport, settings, table: str, input_keys: list[str]) -> None:
    """Every input row is in the lake or in the quarantine (or is a copy of a lake row)."""
    t = report.table(table)
    assert t.rows_read == t.rows_landed + t.rows_quarantined + t.rows_skipped
    key = contract.TABLES[table].primary_key
    in_lake = {r[key] for r in read_lake_table(settings.lake_dir, table).to_pylist()}
    quarantined = [r[key] for r in quarantine_rows(settings, table)]
    assert len(quarantined) == t.rows_quarantined
    for k in input_keys:
        assert k in in_lake or k in quarantined, k


def payment(txn_id: str, **changes: object) -> dict:
    base = dict(ROWS["payments"]()[0])
    base.update(txn_id=txn_id, ts="2024-01-05T10:00:00Z", amount_minor="1250")
    base.update(changes)
    return base


def ingest_parties(tmp_path: Path, settings) -> None:
    write_parquet(tmp_path / "base" / "parties.parquet", table_of("parties"))
    assert ingest(tmp_path / "base", settings, now=NOW).clean


def test_bad_payments_csv_each_row_gets_its_rule(tmp_path: Path, settings) -> None:
    ingest_parties(tmp_path, settings)
    rows = [
        payment("t1"),  # 1 good
        payment("t2", amount_minor="12.5"),  # 2 type
        payment("t3", amount_minor="abc"),  # 3 type
        payment("t4", payer_id=""),  # 4 required
        payment("t5", payer_id="ghost"),  # 5 reference
        payment("t6", amount_minor="-5"),  # 6 min_value
        payment("t7", amount_minor="0"),  # 7 min_value
        payment("t8", ts="2030-01-01T00:00:00Z"),  # 8 future
        payment("t9", ts="1999-12-31T23:59:59Z"),  # 9 too_early
        payment("t10", channel="cash"),  # 10 allowed
        payment("t1", amount_minor="999"),  # 11 duplicate_key (differs from row 1)
        payment("t1"),  # 12 identical copy of row 1: skipped
        payment("t13"),  # 13 good
        payment("t14", ts="not a date"),  # 14 type
        payment("t15", category="guns", amount_minor="-1"),  # 15 allowed + min_value
    ]
    src = write_csv(tmp_path / "in" / "payments.csv", rows, contract.PAYMENTS.column_names)
    report = ingest(tmp_path / "in", settings, now=NOW)
    t = report.table("payments")
    assert (t.rows_read, t.rows_landed, t.rows_quarantined, t.rows_skipped) == (15, 2, 12, 1)
    assert {r["txn_id"] for r in read_lake_table(settings.lake_dir, "payments").to_pylist()} == {
        "t1",
        "t13",
    }
    landed_t1 = [
        r for r in read_lake_table(settings.lake_dir, "payments").to_pylist() if r["txn_id"] == "t1"
    ]
    assert landed_t1[0]["amount_minor"] == 1250  # the first occurrence lands

    q = {r["_row_number"]: r for r in quarantine_rows(settings, "payments")}
    expected = {
        2: ("type", "amount_minor", "12.5"),
        3: ("type", "amount_minor", "abc"),
        4: ("required", "payer_id", None),
        5: ("reference", "payer_id", "ghost"),
        6: ("min_value", "amount_minor", "-5"),
        7: ("min_value", "amount_minor", "0"),
        8: ("future", "ts", "2030-01-01T00:00:00Z"),  # as written in the file
        9: ("too_early", "ts", "1999-12-31T23:59:59Z"),
        10: ("allowed", "channel", "cash"),
        11: ("duplicate_key", "txn_id", "t1"),
        14: ("type", "ts", "not a date"),
        15: ("allowed", "category", "guns"),
    }
    assert set(q) == set(expected)
    for row, (rule, column, value) in expected.items():
        got = q[row]
        assert (got["_rule"], got["_column"], got["_value"]) == (rule, column, value), (row, got)
        assert got["_source_file"] == str(src)
        assert got["_reason"]
    # original values are kept as text, and every broken rule is listed, not only the first
    assert q[2]["amount_minor"] == "12.5" and q[14]["ts"] == "not a date"
    assert {(v["rule"], v["column_name"]) for v in q[15]["_violations"]} == {
        ("allowed", "category"),
        ("min_value", "amount_minor"),
    }
    assert "row 1" in q[11]["_reason"]

    counts = {(rc.rule, rc.column): rc.rows for rc in t.rule_counts}
    assert counts[("type", "amount_minor")] == 2 and counts[("min_value", "amount_minor")] == 3
    assert counts[("duplicate_key", "txn_id")] == 1 and counts[("reference", "payer_id")] == 1
    first = str(t.examples[0])
    assert (
        str(src) in first
        and "row 2" in first
        and "amount_minor" in first
        and "'12.5'" in first
        and "type" in first
    )
    assert_nothing_lost(report, settings, "payments", [r["txn_id"] for r in rows])


def test_bad_parquet_types(tmp_path: Path, settings) -> None:
    ingest_parties(tmp_path, settings)
    good = table_of("payments").slice(0, 3)
    # amount as text: "100" parses, "1e3" does not (money is a whole number written plainly)
    text_amounts = good.set_column(4, "amount_minor", pa.array(["100", "1e3", "7"]))
    write_parquet(tmp_path / "a" / "payments" / "part-0.parquet", text_amounts)
    report = ingest(tmp_path / "a", settings, now=NOW)
    t = report.table("payments")
    assert (t.rows_landed, t.rows_quarantined) == (2, 1)
    (bad,) = quarantine_rows(settings, "payments")
    assert (bad["_row_number"], bad["_rule"], bad["_column"], bad["_value"]) == (
        2,
        "type",
        "amount_minor",
        "1e3",
    )

    # amount as float64 is not cast silently, even when whole: every row is a type error
    floats = table_of("payments").slice(3, 2)
    floats = floats.set_column(4, "amount_minor", pa.array([12.0, 12.5]))
    # int32 amounts and naive timestamps are lossless: they land (naive = UTC)
    narrow = table_of("payments").slice(5, 2)
    narrow = narrow.set_column(4, "amount_minor", narrow.column("amount_minor").cast(pa.int32()))
    narrow = narrow.set_column(1, "ts", narrow.column("ts").cast(pa.timestamp("ns")))
    write_parquet(tmp_path / "b" / "payments" / "part-0.parquet", floats)
    write_parquet(tmp_path / "b" / "payments" / "part-1.parquet", narrow)
    report = ingest(tmp_path / "b", settings, now=NOW)
    t = report.table("payments")
    assert (t.rows_read, t.rows_landed, t.rows_quarantined) == (4, 2, 2)
    values = sorted(
        r["_value"] for r in quarantine_rows(settings, "payments") if r["_rule"] == "type"
    )
    assert values == sorted(["1e3", "12.0", "12.5"])
    lake = {r["txn_id"]: r for r in read_lake_table(settings.lake_dir, "payments").to_pylist()}
    expected_narrow = table_of("payments").slice(5, 2).to_pylist()
    for r in expected_narrow:
        assert lake[r["txn_id"]] == r


def test_not_before_enums_and_booleans_across_tables(tmp_path: Path, settings) -> None:
    ingest_parties(tmp_path, settings)
    inv = ROWS["invoices"]()
    inv[0]["due_at"] = inv[0]["issued_at"].replace(day=9)  # due before issue
    inv[1]["paid_at"] = inv[1]["issued_at"].replace(day=1, month=1)  # paid before issue
    bills = ROWS["bills"]()
    bills[0]["biller_kind"] = "gas"
    loans = ROWS["loans"]()
    loans[0]["closed_at"] = loans[0]["opened_at"].replace(month=5)
    loans[1]["written_off"] = "maybe"
    parties = [dict(ROWS["parties"]()[0], party_id="p9", kind="alien", birth_year=1800)]
    src = tmp_path / "in"
    write_csv(src / "parties.csv", parties, contract.PARTIES.column_names)
    write_parquet(src / "invoices" / "part-0.parquet", table_of("invoices", inv))
    write_csv(src / "bills.csv", bills, contract.BILLS.column_names)
    write_csv(src / "loans.csv", loans, contract.LOANS.column_names)
    report = ingest(src, settings, now=NOW)
    got = {
        table: {
            (r["_row_number"], v["rule"], v["column_name"])
            for r in quarantine_rows(settings, table)
            for v in r["_violations"]
        }
        for table in ("parties", "invoices", "bills", "loans")
    }
    assert got["parties"] == {(1, "allowed", "kind"), (1, "min_value", "birth_year")}
    assert got["invoices"] == {(1, "not_before", "due_at"), (2, "not_before", "paid_at")}
    assert got["bills"] == {(1, "allowed", "biller_kind")}
    assert got["loans"] == {(1, "not_before", "closed_at"), (2, "type", "written_off")}
    reason = next(
        r["_reason"] for r in quarantine_rows(settings, "invoices") if r["_row_number"] == 1
    )
    assert "issued_at" in reason and "2024-01-10" in reason
    assert report.table("invoices").rows_landed == 1 and report.table("bills").rows_landed == 2
    assert report.table("loans").rows_landed == 0


def test_keys_already_in_lake(tmp_path: Path, settings, raw: Path) -> None:
    ingest(raw, settings, now=NOW)
    rows = ROWS["payments"]()
    changed = dict(rows[0], amount_minor=777)  # same key, different values
    same = rows[1]  # identical to the lake row
    new = dict(rows[2], txn_id="t-new")
    write_parquet(tmp_path / "in" / "payments.parquet", table_of("payments", [changed, same, new]))
    report = ingest(tmp_path / "in", settings, now=NOW)
    t = report.table("payments")
    assert (t.rows_read, t.rows_landed, t.rows_quarantined, t.rows_skipped) == (3, 1, 1, 1)
    (bad,) = quarantine_rows(settings, "payments")
    assert (bad["_rule"], bad["_column"], bad["_value"], bad["_row_number"]) == (
        "key_in_lake",
        "txn_id",
        "t1",
        1,
    )
    lake = {r["txn_id"]: r for r in read_lake_table(settings.lake_dir, "payments").to_pylist()}
    assert lake["t1"]["amount_minor"] == rows[0]["amount_minor"] and "t-new" in lake


def test_missing_and_extra_columns_reject_the_whole_file(
    tmp_path: Path, settings, raw: Path
) -> None:
    ingest(raw, settings, now=NOW)
    before = lake_snapshot(settings)
    rows = [dict(r, txn_id="n" + r["txn_id"]) for r in ROWS["payments"]()]
    no_category = [c for c in contract.PAYMENTS.column_names if c != "category"]
    missing = write_csv(tmp_path / "in" / "payments" / "a.csv", rows[:3], no_category)
    extra = table_of("payments", rows[3:5]).append_column("note", pa.array(["x", None]))
    write_parquet(tmp_path / "in" / "payments" / "b.parquet", extra)
    report = ingest(tmp_path / "in", settings, now=NOW)
    t = report.table("payments")
    assert (t.rows_read, t.rows_landed, t.rows_quarantined) == (5, 0, 5)
    assert all(f.status == "rejected" for f in t.files)
    assert "missing column(s) category" in (t.files[0].error or "")
    assert "extra column(s) note" in (t.files[1].error or "")
    q = quarantine_rows(settings, "payments")
    assert {(r["_rule"], r["_column"]) for r in q} == {
        ("missing_column", "category"),
        ("extra_column", "note"),
    }
    notes = [r["_extra_columns_json"] for r in q if r["_rule"] == "extra_column"]
    assert sorted(notes) == sorted(['{"note":"x"}', '{"note":null}'])
    assert lake_snapshot(settings) == before
    assert_nothing_lost(report, settings, "payments", [r["txn_id"] for r in rows[:5]])
    assert str(missing) in {r["_source_file"] for r in q}


def test_truncated_parquet_is_rejected_and_the_other_files_land(tmp_path: Path, settings) -> None:
    ingest_parties(tmp_path, settings)
    before = lake_snapshot(settings)
    good = write_parquet(
        tmp_path / "in" / "payments" / "part-0.parquet", table_of("payments").slice(0, 4)
    )
    cut = write_parquet(
        tmp_path / "in" / "payments" / "part-1.parquet", table_of("payments").slice(4, 4)
    )
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    not_parquet = tmp_path / "in" / "payments" / "part-2.parquet"
    not_parquet.write_text("txn_id,ts\nt1,2024-01-01\n")
    report = ingest(tmp_path / "in", settings, now=NOW)
    t = report.table("payments")
    rejected = {f.path: f.error for f in report.files_rejected}
    assert set(rejected) == {str(cut), str(not_parquet)}
    assert str(cut) in (rejected[str(cut)] or "") and "file_unreadable" in (
        rejected[str(cut)] or ""
    )
    assert (t.rows_read, t.rows_landed, t.rows_quarantined) == (4, 4, 0)
    lake_keys = {r["txn_id"] for r in read_lake_table(settings.lake_dir, "payments").to_pylist()}
    assert lake_keys == {"t1", "t2", "t3", "t4"}
    assert lake_snapshot(settings)["parties"] == before["parties"]
    assert str(good) not in rejected
    # nothing was recorded for the unreadable files: once repaired, they ingest
    write_parquet(cut, table_of("payments").slice(4, 4))
    not_parquet.unlink()
    again = ingest(tmp_path / "in", settings, now=NOW)
    assert again.clean and again.rows_landed == 4


def test_truncated_csv_is_rejected_whole_with_its_line(tmp_path: Path, settings) -> None:
    ingest_parties(tmp_path, settings)
    before = lake_snapshot(settings)
    src = write_csv(
        tmp_path / "in" / "payments.csv", ROWS["payments"](), contract.PAYMENTS.column_names
    )
    text = src.read_text()
    src.write_text(text[: text.rindex(",online,") + 3])  # cut in the middle of the last row
    report = ingest(tmp_path / "in", settings, now=NOW)
    t = report.table("payments")
    assert (t.rows_read, t.rows_landed, t.rows_quarantined) == (8, 0, 8)
    (f,) = t.files
    assert f.status == "rejected" and "malformed" in (f.error or "") and "line 9" in (f.error or "")
    q = {r["_row_number"]: r for r in quarantine_rows(settings, "payments")}
    assert q[8]["_rule"] == "malformed_row" and q[8]["_value"].startswith("t8,")
    assert all(q[i]["_rule"] == "file_rejected" for i in range(1, 8))
    assert [q[i]["txn_id"] for i in range(1, 8)] == [f"t{i}" for i in range(1, 8)]
    assert lake_snapshot(settings) == before


def test_malformed_line_in_the_middle_keeps_row_numbers(tmp_path: Path, settings) -> None:
    ingest_parties(tmp_path, settings)
    src = write_csv(
        tmp_path / "in" / "payments.csv", ROWS["payments"](), contract.PAYMENTS.column_names
    )
    lines = src.read_text().splitlines()
    lines[3] = "t3,oops"  # data row 3
    lines[6] = "t6,2024-01-01,too,few"  # data row 6
    src.write_text("\n".join(lines) + "\n")
    report = ingest(tmp_path / "in", settings, now=NOW)
    assert report.table("payments").rows_read == 8
    q = {r["_row_number"]: r for r in quarantine_rows(settings, "payments")}
    assert {i: q[i]["_rule"] for i in (3, 6)} == {3: "malformed_row", 6: "malformed_row"}
    for i in (1, 2, 4, 5, 7, 8):
        assert q[i]["txn_id"] == f"t{i}" and q[i]["_rule"] == "file_rejected"


def test_rejected_rows_are_all_quarantined_from_a_valid_raw_dir_with_one_bad_table(
    tmp_path: Path, settings
) -> None:
    raw = write_valid_raw(tmp_path / "raw", "csv")
    bills = ROWS["bills"]()
    bills[2]["party_id"] = "nobody"
    write_csv(raw / "bills" / "part-00000.csv", bills, contract.BILLS.column_names)
    report = ingest(raw, settings, now=NOW)
    assert report.rows_quarantined == 1 and not report.clean
    assert report.table("payments").rows_landed == 8
    (bad,) = quarantine_rows(settings, "bills")
    assert (bad["_rule"], bad["_column"], bad["_value"], bad["_row_number"]) == (
        "reference",
        "party_id",
        "nobody",
        3,
    )


def test_corrupt_parquet_pages_reject_the_file_after_its_footer_was_read(
    tmp_path: Path, settings
) -> None:
    """The footer reads fine (so the schema checks pass) but a data page does not decode."""
    ingest_parties(tmp_path, settings)
    n = 20_000
    one = table_of("payments").slice(0, 1)
    big = pa.concat_tables([one] * n)
    big = big.set_column(0, "txn_id", pa.array([f"c{i:06d}" for i in range(n)]))
    big = big.set_column(4, "amount_minor", pa.array(range(1, n + 1), pa.int64()))
    src = write_parquet(tmp_path / "in" / "payments.parquet", big)
    data = bytearray(src.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 512] = bytes(512)
    src.write_bytes(bytes(data))
    assert pq.read_schema(src).names == contract.PAYMENTS.column_names  # footer intact
    report = ingest(tmp_path / "in", settings, now=NOW)
    (rejected,) = report.files_rejected
    assert rejected.path == str(src) and "file_unreadable" in (rejected.error or "")
    assert report.table("payments").rows_read == 0
    assert read_lake_table(settings.lake_dir, "payments").num_rows == 0
