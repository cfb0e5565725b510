"""Export loan outcomes to the lake's `loans` table (fieldbank.contract.LOANS schema).

Published as the lake's "fieldbank" snapshot of the loans table
(fieldbank.lake.publish.publish_snapshot): every export replaces all rows of the previous one
in a single new table version, committed by the lake's atomic symlink swap under its lock, so
readers see the previous export or the new one, never a mix; other lenders' rows are untouched.
Files land as <lake_dir>/loans/month=YYYY-MM/snapshot-fieldbank-<version>.parquet, partitioned by
the month of opened_at (the table's time column).
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import Connection, text

from fieldbank import contract
from fieldbank.lake.publish import publish_snapshot

LENDER = "fieldbank"
EXPORT_BATCH_ROWS = 200_000


def _timestamps(days: tuple) -> pa.Array:
    """Dates (SQLite returns ISO strings) -> midnight UTC timestamps, vectorised."""
    values = pa.array(days)
    if not pa.types.is_date32(values.type):
        values = pc.cast(values, pa.date32()) if len(values) else pa.array([], pa.date32())
    return pc.cast(values, pa.timestamp("us", tz="UTC"))


EXPORT_QUERY = (
    "SELECT loan_id, party_id, opened_on, disbursed_minor, term_days, closed_on, max_dpd, defaulted_on, status "
    "FROM loans WHERE disbursed_minor > 0 AND status <> 'cancelled'"
)
_CSV_TYPES = {
    "loan_id": pa.int64(), "party_id": pa.string(), "opened_on": pa.date32(), "disbursed_minor": pa.int64(),
    "term_days": pa.int32(), "closed_on": pa.date32(), "max_dpd": pa.int32(), "defaulted_on": pa.date32(),
    "status": pa.string(),
}


def _loans_table_postgres(conn: Connection) -> pa.Table:
    """PostgreSQL: COPY the rows out as CSV and let Arrow parse them (no per-row Python work)."""
    buffer = io.BytesIO()
    raw = conn.connection.driver_connection
    with raw.cursor() as cursor:
        with cursor.copy(f"COPY ({EXPORT_QUERY} ORDER BY loan_id) TO STDOUT WITH (FORMAT csv, HEADER false)") as copy:
            for block in copy:
                buffer.write(block)
    buffer.seek(0)
    if buffer.getbuffer().nbytes == 0:
        return contract.LOANS.schema.empty_table()
    raw_table = pacsv.read_csv(
        buffer,
        read_options=pacsv.ReadOptions(column_names=list(_CSV_TYPES)),
        convert_options=pacsv.ConvertOptions(column_types=_CSV_TYPES),
    )
    return _to_contract(raw_table)


def _to_contract(t: pa.Table) -> pa.Table:
    stamp = pa.timestamp("us", tz="UTC")
    return pa.Table.from_arrays([
        pc.binary_join_element_wise(pa.scalar(f"{LENDER}-"), pc.cast(t["loan_id"], pa.string()), ""),
        t["party_id"],
        pa.repeat(pa.scalar(LENDER), t.num_rows),
        pc.cast(t["opened_on"], stamp),
        t["disbursed_minor"],
        t["term_days"],
        pc.cast(t["closed_on"], stamp),
        t["max_dpd"],
        pc.cast(t["defaulted_on"], stamp),
        pc.equal(t["status"], "written_off"),
    ], schema=contract.LOANS.schema)


def loans_table(conn: Connection) -> pa.Table:
    """All disbursed fieldbank loans as an Arrow table with exactly the contract's schema.

    Read in keyset-paginated chunks of EXPORT_BATCH_ROWS (bounded memory per round trip,
    index range scans on the primary key); on PostgreSQL through COPY.
    """
    if conn.dialect.name == "postgresql":
        return _loans_table_postgres(conn)
    chunks: list[pa.Table] = []
    last_loan_id = 0
    while True:
        rows = conn.execute(text(
            "SELECT loan_id, party_id, opened_on, disbursed_minor, term_days, closed_on, max_dpd, defaulted_on, "
            "status FROM loans WHERE loan_id > :last AND disbursed_minor > 0 AND status <> 'cancelled' "
            "ORDER BY loan_id LIMIT :n"), {"last": last_loan_id, "n": EXPORT_BATCH_ROWS}).all()
        if not rows:
            break
        last_loan_id = rows[-1][0]
        loan_id, party_id, opened_on, disbursed, term_days, closed_on, max_dpd, defaulted_on, status = zip(*rows)
        ids = pa.array(loan_id, pa.int64())
        chunks.append(pa.Table.from_arrays([
            pc.binary_join_element_wise(pa.scalar(f"{LENDER}-"), pc.cast(ids, pa.string()), ""),
            pa.array(party_id, pa.string()),
            pa.repeat(pa.scalar(LENDER), len(rows)),
            _timestamps(opened_on),
            pa.array(disbursed, pa.int64()),
            pa.array(term_days, pa.int32()),
            _timestamps(closed_on),
            pa.array(max_dpd, pa.int32()),
            _timestamps(defaulted_on),
            pc.equal(pa.array(status, pa.string()), "written_off"),
        ], schema=contract.LOANS.schema))
    if not chunks:
        return contract.LOANS.schema.empty_table()
    return pa.concat_tables(chunks)


def export_loans(conn: Connection, lake_dir: Path, business_date: dt.date) -> int:
    """Publish the outcome of every fieldbank loan as of `business_date`; returns the row count."""
    table = loans_table(conn)
    publish_snapshot(Path(lake_dir), "loans", LENDER, table)
    return table.num_rows
