"""Reading the lake from later stages (portrait, monitor): the live version of a table.

Each call resolves the table's symlink once and lists that version's files, so a query sees
one consistent version even if an ingest commits meanwhile (see layout.py).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from fieldbank import contract
from fieldbank.lake import layout


def lake_files(lake_dir: Path, table: str) -> list[Path]:
    """The Parquet files of the table's live version (empty if nothing has landed)."""
    assert table in contract.TABLES, table
    return layout.partition_files(layout.live_version_dir(Path(lake_dir), table))


def payment_days(lake_dir: Path) -> tuple["dt.date", "dt.date"]:
    """UTC days of the first and the last payment in the lake: the observed period.

    Payments are the economy's heartbeat; loan outcomes exported later by the bank do not
    extend the observation of the other lenders' loans, so only payments count."""
    files = lake_files(lake_dir, "payments")
    if not files:
        raise ValueError(f"no payments in {lake_dir}: ingest first")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        first_ts, last_ts = con.execute(
            "SELECT min(ts), max(ts) FROM read_parquet(?, hive_partitioning = false)",
            [[str(f) for f in files]]).fetchone()
    finally:
        con.close()
    return first_ts.date(), last_ts.date()


def lake_glob(lake_dir: Path, table: str) -> str:
    """A glob for engines that take one (Spark, Ibis): `<lake>/<table>/month=*/*.parquet`.

    Prefer lake_files() where a list is accepted: a glob is expanded when the engine reads,
    so it can straddle a commit (it cannot see half a batch either way)."""
    assert table in contract.TABLES, table
    return str(Path(lake_dir) / table / "month=*" / "*.parquet")


def lake_relation(
    con: duckdb.DuckDBPyConnection, lake_dir: Path, table: str
) -> duckdb.DuckDBPyRelation:
    """The table as a DuckDB relation with exactly the contract columns (no `month` column).

    Set the connection's TimeZone to UTC to see timestamps in UTC."""
    files = lake_files(lake_dir, table)
    if not files:
        return con.from_arrow(contract.TABLES[table].schema.empty_table())
    return con.read_parquet([str(f) for f in files], hive_partitioning=False)


def read_lake_table(lake_dir: Path, table: str, columns: list[str] | None = None) -> pa.Table:
    """The whole table in memory as Arrow, cast to the contract schema (small tables, tests)."""
    schema = contract.TABLES[table].schema
    files = lake_files(lake_dir, table)
    if not files:
        out = schema.empty_table()
    else:
        # Cast per file: DuckDB-written files mark every column nullable, snapshots don't.
        out = pa.concat_tables([pq.read_table(f).cast(schema) for f in files])
    return out.select(columns) if columns is not None else out
