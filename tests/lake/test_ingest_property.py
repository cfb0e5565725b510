"""Property: for any mix of good and bad rows, rows read = landed + quarantined + skipped,
and exactly the good rows land (the first of each key; identical copies are skipped)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from lake_data import NOW, table_of, write_csv, write_parquet

from fieldbank import contract
from fieldbank.config import load_settings
from fieldbank.lake.ingest import ingest
from fieldbank.lake.read import read_lake_table

PARTIES = ["p1", "p2", "b1", "b2", "b3"]
GOOD = dict(
    ts="2024-05-01T10:00:00Z",
    payer_id="p1",
    payee_id="b1",
    amount_minor="100",
    channel="qr",
    kind="purchase",
    category="food",
)
# kind of bad -> (column, bad text)
BAD = {
    "amount_text": ("amount_minor", "12.5"),
    "amount_zero": ("amount_minor", "0"),
    "amount_negative": ("amount_minor", "-3"),
    "orphan": ("payer_id", "nobody"),
    "null_payee": ("payee_id", ""),
    "channel": ("channel", "cheque"),
    "category": ("category", "weapons"),
    "future": ("ts", "2031-06-01T00:00:00Z"),
    "early": ("ts", "1990-06-01T00:00:00Z"),
    "ts_text": ("ts", "yesterday"),
}

row_spec = st.one_of(
    st.tuples(
        st.just("good"), st.integers(1, 10**6), st.sampled_from(PARTIES), st.sampled_from(PARTIES)
    ),
    st.tuples(st.sampled_from(sorted(BAD)), st.integers(1, 10**6), st.just(""), st.just("")),
    st.tuples(
        st.just("copy"), st.integers(0, 50), st.just(""), st.just("")
    ),  # same key, same values
    st.tuples(
        st.just("conflict"), st.integers(0, 50), st.just(""), st.just("")
    ),  # same key, other values
)


def build_rows(specs: list[tuple]) -> list[dict]:
    rows: list[dict] = []
    for i, (kind, n, payer, payee) in enumerate(specs):
        if kind in ("copy", "conflict") and rows:
            earlier = dict(rows[n % len(rows)])
            if kind == "conflict":
                earlier["amount_minor"] = (
                    str(int(earlier["amount_minor"]) + 1)
                    if earlier["amount_minor"].isdigit()
                    else "5"
                )
            rows.append(earlier)
            continue
        row = dict(GOOD, txn_id=f"t{i}", amount_minor=str(n))
        if kind == "good":
            row.update(payer_id=payer, payee_id=payee)
        elif kind in BAD:
            column, value = BAD[kind]
            row[column] = value
        rows.append(row)
    return rows


def is_valid(row: dict) -> bool:
    return not any(row[column] == value for column, value in BAD.values())


def oracle(rows: list[dict]) -> tuple[dict[str, dict], int, int]:
    """(landed rows by key, quarantined count, skipped count) by the documented semantics."""
    landed: dict[str, dict] = {}
    quarantined = skipped = 0
    for row in rows:
        if not is_valid(row):
            quarantined += 1
        elif row["txn_id"] not in landed:
            landed[row["txn_id"]] = row
        elif landed[row["txn_id"]] == row:
            skipped += 1
        else:
            quarantined += 1
    return landed, quarantined, skipped


@pytest.mark.slow
@hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(row_spec, min_size=1, max_size=40), fmt=st.sampled_from(["csv", "parquet"]))
def test_read_equals_landed_plus_quarantined_and_only_good_rows_land(
    specs: list[tuple], fmt: str
) -> None:
    rows = build_rows(specs)
    work = Path(tempfile.mkdtemp(prefix="prop_ingest_"))
    try:
        settings = load_settings(data_dir=work / "var")
        write_parquet(work / "base" / "parties.parquet", table_of("parties"))
        assert ingest(work / "base", settings, now=NOW).clean
        columns = contract.PAYMENTS.column_names
        if fmt == "csv":
            write_csv(work / "in" / "payments.csv", rows, columns)
        else:  # all-text Parquet columns go through the same strict parser
            data = {c: pa.array([r[c] or None for r in rows], pa.string()) for c in columns}
            write_parquet(work / "in" / "payments.parquet", pa.table(data))
        report = ingest(work / "in", settings, now=NOW)
        t = report.table("payments")
        expected, n_quarantined, n_skipped = oracle(rows)
        assert t.rows_read == len(rows) == t.rows_landed + t.rows_quarantined + t.rows_skipped
        assert (t.rows_landed, t.rows_quarantined, t.rows_skipped) == (
            len(expected),
            n_quarantined,
            n_skipped,
        )
        lake = {r["txn_id"]: r for r in read_lake_table(settings.lake_dir, "payments").to_pylist()}
        assert set(lake) == set(expected)
        for key, row in expected.items():
            assert lake[key]["amount_minor"] == int(row["amount_minor"])
            assert (lake[key]["payer_id"], lake[key]["payee_id"]) == (
                row["payer_id"],
                row["payee_id"],
            )
        q_files = list((Path(settings.quarantine_dir) / "payments").glob("*.parquet"))
        q_rows = sum(pq.read_metadata(f).num_rows for f in q_files)
        assert q_rows == n_quarantined
    finally:
        shutil.rmtree(work)
