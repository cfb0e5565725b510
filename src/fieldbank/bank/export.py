"""Export loan outcomes to the lake's `loans` table (fieldbank.contract.LOANS schema).

Layout: <lake_dir>/loans/month=YYYY-MM/fieldbank.parquet, partitioned by the month of
opened_at (the table's time column). Each file holds every fieldbank loan opened in that
month and is replaced atomically (write a temp file in the same directory, then rename), so
readers see the previous export or the new one, never a mix within a month; other lenders'
files in the same partitions are untouched.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Connection, text

from fieldbank import contract

LENDER = "fieldbank"
EXPORT_FILE_NAME = "fieldbank.parquet"
EXPORT_BATCH_ROWS = 200_000


def _ts(value: object) -> dt.datetime | None:
    if value is None:
        return None
    day = dt.date.fromisoformat(value) if isinstance(value, str) else value
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def loans_table(conn: Connection) -> pa.Table:
    """All disbursed fieldbank loans as an Arrow table with exactly the contract's schema."""
    result = conn.execute(text(
        "SELECT loan_id, party_id, opened_on, disbursed_minor, term_days, closed_on, max_dpd, defaulted_on, "
        "status FROM loans WHERE disbursed_minor > 0 AND status <> 'cancelled' ORDER BY loan_id"),
        execution_options={"yield_per": EXPORT_BATCH_ROWS})
    columns: dict[str, list] = {name: [] for name in contract.LOANS.column_names}
    for r in result:
        columns["loan_id"].append(f"{LENDER}-{r.loan_id}")
        columns["party_id"].append(r.party_id)
        columns["lender"].append(LENDER)
        columns["opened_at"].append(_ts(r.opened_on))
        columns["principal_minor"].append(int(r.disbursed_minor))
        columns["term_days"].append(int(r.term_days))
        columns["closed_at"].append(_ts(r.closed_on))
        columns["max_dpd"].append(int(r.max_dpd))
        columns["defaulted_at"].append(_ts(r.defaulted_on))
        columns["written_off"].append(r.status == "written_off")
    return pa.Table.from_pydict(columns, schema=contract.LOANS.schema)


def export_loans(conn: Connection, lake_dir: Path, business_date: dt.date) -> int:
    table = loans_table(conn)
    root = Path(lake_dir) / "loans"
    if table.num_rows == 0:
        return 0
    months = pc.strftime(table["opened_at"], format="%Y-%m")
    for month in sorted(set(months.to_pylist())):
        part = table.filter(pc.equal(months, month))
        directory = root / f"month={month}"
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{EXPORT_FILE_NAME}.{os.getpid()}.tmp"
        pq.write_table(part, tmp, metadata_collector=None)
        os.replace(tmp, directory / EXPORT_FILE_NAME)
    (root / "_fieldbank_export.txt").write_text(f"business_date={business_date}\nrows={table.num_rows}\n")
    return table.num_rows
