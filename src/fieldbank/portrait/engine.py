"""Engines and lake access: the same Ibis expressions run on DuckDB (default) or PySpark."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import warnings
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as idt
import ibis.expr.operations as ops
import ibis.expr.types as ir
import pyarrow as pa

from fieldbank.contract import TABLES

ENGINES = ("duckdb", "spark")
SPARK_LOCAL_MASTER = "local[2]"
SPARK_MASTER_ENV = "FIELDBANK_SPARK_MASTER"  # e.g. "yarn", "spark://host:7077"; default local[2]


def spark_session(master: str | None = None) -> Any:
    """A Spark session configured the way the portrait needs it (UTC, quiet, small shuffles).

    The master is `master`, else $FIELDBANK_SPARK_MASTER, else local[2]; under spark-submit
    set FIELDBANK_SPARK_MASTER to the same master (docs/portrait.md). The only setting that
    matters for correctness is the UTC session time zone.
    """
    from pyspark.sql import SparkSession

    master = master or os.environ.get(SPARK_MASTER_ENV) or SPARK_LOCAL_MASTER
    builder = (
        SparkSession.builder.master(master)
        .appName("fieldbank-portrait")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")  # fieldbank draws its own progress bar
    )
    if master.startswith("local"):  # a laptop: few shuffle partitions; a cluster keeps its own settings
        builder = builder.config("spark.sql.shuffle.partitions", "4").config("spark.driver.memory", "2g")
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def connect(engine: str, spark: Any | None = None) -> ibis.BaseBackend:
    """An Ibis backend for `engine`; `spark` reuses an existing SparkSession."""
    assert engine in ENGINES, f"engine must be one of {ENGINES}, got {engine!r}"
    if engine == "duckdb":
        con = ibis.duckdb.connect()
        configure_duckdb(con)
        return con
    return ibis.pyspark.connect(spark if spark is not None else spark_session())


def configure_duckdb(con: ibis.BaseBackend) -> None:
    """UTC (the point-in-time rule is in UTC) and no DuckDB progress bar (fieldbank draws its own)."""
    con.raw_sql("SET TimeZone = 'UTC'")
    con.raw_sql("SET enable_progress_bar = false")


BACKEND_ENGINES = {"duckdb": "duckdb", "pyspark": "spark"}


def engine_of(con: ibis.BaseBackend) -> str:
    assert con.name in BACKEND_ENGINES, f"unsupported backend {con.name!r}"
    return BACKEND_ENGINES[con.name]


def parquet_files(directory: Path) -> list[Path]:
    """Data files under a table or rollup directory; temp dirs of in-flight writes are skipped."""
    if not directory.exists():
        return []
    return sorted(
        p for p in directory.rglob("*.parquet")
        if not any(part.startswith((".", "_")) for part in p.relative_to(directory).parts)
    )


def temp_views(raw: Any) -> list[tuple[str, str]]:
    """(name, SQL) of a DuckDB connection's own temporary views, in creation order."""
    return raw.execute("SELECT view_name, sql FROM duckdb_views() WHERE temporary AND NOT internal "
                       "ORDER BY view_oid").fetchall()


def parquet_view(con: ibis.BaseBackend, view_name: str, files: list[Path]) -> ir.Table:
    """DuckDB: a temp view `view_name` (replaced) over the Parquet `files`, as a bound Ibis
    table. What `con.read_parquet(files, table_name=...)` makes, without its DESCRIBE (and
    Ibis' type parsing around it): the columns come from the catalog, where CREATE VIEW put
    them (~3 ms a view less; a new day's run makes 9)."""
    raw = con.con  # noqa: SLF001 - the DuckDB connection under the Ibis backend
    paths = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    raw.execute(f'CREATE OR REPLACE TEMP VIEW "{view_name}" AS SELECT * FROM read_parquet([{paths}], '
                "hive_partitioning = false, union_by_name = false)")
    rows = raw.execute("SELECT column_name, data_type, is_nullable FROM duckdb_columns() "
                       "WHERE table_name = ? AND database_name = 'temp' ORDER BY column_index", [view_name]).fetchall()
    assert rows, f"view {view_name} has no columns"
    mapper = con.compiler.type_mapper
    schema = ibis.schema({name: mapper.from_string(dtype, nullable=nullable) for name, dtype, nullable in rows})
    return ops.DatabaseTable(view_name, schema=schema, source=con, namespace=ops.Namespace()).to_expr()


def read_parquet_dir(con: ibis.BaseBackend, directory: Path, schema: pa.Schema, view_name: str | None = None) -> ir.Table:
    """All Parquet files under `directory` (hive month=... partitions allowed), as `schema`.

    The partition column is dropped: every file already carries the contract's columns.
    An absent or empty directory reads as an empty table with the schema.
    `view_name` (DuckDB): the view's name instead of a generated one, so the SQL compiled
    over it is the same in every process (see sqlcache.py); it replaces a view of that name.
    """
    files = parquet_files(directory)
    if view_name is not None:
        assert engine_of(con) == "duckdb", "view_name is for DuckDB"
        if not files:  # registered under the name, not a memtable (whose name is generated)
            con.con.register(view_name, schema.empty_table())  # noqa: SLF001
            return con.table(view_name).select(*schema.names)
        return parquet_view(con, view_name, files).select(*schema.names)
    if not files:
        return ibis.memtable(schema.empty_table())
    if engine_of(con) == "duckdb":
        t = con.read_parquet([str(f) for f in files], hive_partitioning=False, union_by_name=False)
    else:
        t = con.read_parquet(str(directory), recursiveFileLookup="true")
    return t.select(*schema.names)


def read_lake_table(con: ibis.BaseBackend, lake_dir: Path, table: str, view_name: str | None = None) -> ir.Table:
    """One event table of the lake as an Ibis table with exactly the contract's columns."""
    return read_parquet_dir(con, Path(lake_dir) / table, TABLES[table].schema, view_name)


def midnight_utc(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def ts_literal(day: dt.date) -> ir.TimestampScalar:
    return ibis.literal(midnight_utc(day), type="timestamp('UTC')")


def date_literal(day: dt.date) -> ir.DateScalar:
    return ibis.literal(day, type="date")


_TIMESTAMP_UTC = idt.Timestamp(timezone="UTC")
_TIMESTAMP_NAIVE = idt.Timestamp()


@ibis.udf.scalar.builtin(name="epoch_us")
def _duckdb_epoch_us(ts: _TIMESTAMP_UTC) -> idt.int64:  # DuckDB: microseconds since the epoch of a TIMESTAMPTZ
    ...


@ibis.udf.scalar.builtin(name="make_timestamp")
def _duckdb_make_timestamp(us: idt.int64) -> _TIMESTAMP_NAIVE:  # DuckDB: the naive TIMESTAMP of epoch microseconds
    ...


def utc_date(ts: ir.TimestampValue, engine: str) -> ir.DateValue:
    """`ts.date()` of a UTC timestamp. On DuckDB the same date from the epoch microseconds:
    CAST(TIMESTAMPTZ AS DATE) goes through the ICU calendar of the session time zone, ~4x
    slower (0.06 s per million rows measured, twice per payment on the raw-payments path)."""
    if engine != "duckdb":
        return ts.date()
    return _duckdb_make_timestamp(_duckdb_epoch_us(ts)).date()


def safe_div(num: ir.NumericValue, den: ir.NumericValue) -> ir.FloatingValue:
    """num / den as float64, null when den is 0 or null (Spark 4 runs in ANSI mode: x/0 raises)."""
    return ibis.ifelse(den.fill_null(0) != 0, num.cast("float64") / den.cast("float64"), ibis.null("float64"))


def whole_days_between(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.IntegerValue:
    """floor((later - earlier) / 1 day) as int64, computed on epoch seconds (same on both engines)."""
    return ((later.epoch_seconds() - earlier.epoch_seconds()) // 86400).cast("int64")


def duckdb_sql(con: ibis.BaseBackend, expr: ir.Table) -> str:
    """The DuckDB SQL of `expr`, with the in-memory tables it reads registered on `con`."""
    con._run_pre_execute_hooks(expr)  # noqa: SLF001 - registers memtables (what to_pyarrow does first)
    return con.compile(expr)


def duckdb_arrow(con: ibis.BaseBackend, expr: ir.Table) -> pa.Table:
    """`expr.to_pyarrow()` on DuckDB without Ibis' per-column result conversion (the callers
    cast to their own schema). Other engines: `expr.to_pyarrow()`."""
    if engine_of(con) != "duckdb":
        return expr.to_pyarrow()
    return con.con.sql(duckdb_sql(con, expr)).to_arrow_table()  # noqa: SLF001


def duckdb_execute_arrow(raw: Any, sql: str) -> pa.Table:
    """The result of `sql` on a DuckDB connection as Arrow, through `execute`: this duckdb's
    `raw.sql(sql).to_arrow_table()` parses and binds the text once to make the relation
    (tokenizing it in Python too) and again to run it, which for the household family's 23 KB
    of SQL measured 63 ms against 42 ms; `execute` parses it once. Its Arrow result is one
    more copy of the rows (duckdb warns so; nothing for a per-party result): for small results."""
    return raw.execute(sql).to_arrow_table()


# duckdb_execute_arrow's copy is intended (once, here: catch_warnings is not thread-safe).
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)


_temp_names = itertools.count()
# Per backend: names of the per-portrait temporaries still alive (see release_temporaries).
_live_temporaries: dict[int, list[str]] = {}


def materialize(con: ibis.BaseBackend, expr: ir.Table, keep: bool = False) -> ir.Table:
    """Compute `expr` now and keep the result: a DuckDB temp table; on Spark a locally
    checkpointed DataFrame registered as a temp view.

    Used between PageRank iterations and for each family's result, so no query grows with
    the number of iterations or families. On Spark, `cache()` is not enough: the logical
    plan keeps the whole lineage and its analysis blows up (each PageRank step reads the
    previous one twice); a checkpoint cuts the lineage. Unless `keep`, the result lives until
    `release_temporaries` (called after each portrait, so a backfill does not pile them up).
    """
    name = f"_fieldbank_{'keep' if keep else 'tmp'}_{next(_temp_names)}"
    if engine_of(con) == "duckdb":
        # CREATE TEMP TABLE ... AS in one statement: Ibis' create_table creates the table from the
        # schema and then inserts, which measured 0.04-0.14 s slower per family (100k rows).
        con.con.execute(f'CREATE TEMP TABLE "{name}" AS {duckdb_sql(con, expr)}')  # noqa: SLF001
        table = con.table(name)
    else:
        session = con._session  # noqa: SLF001 - Ibis exposes no public handle to the session
        session.sql(con.compile(expr)).localCheckpoint(eager=True).createOrReplaceTempView(name)
        table = con.table(name)
    if not keep:
        _live_temporaries.setdefault(id(con), []).append(name)
    return table


def one_chunk(col: pa.ChunkedArray) -> pa.Array:
    """The column as one array: its only chunk as is (`combine_chunks` copies even one chunk:
    18 ms for the 5M lake's 3.5M pairs, memory-mapped), else the chunks concatenated."""
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def materialize_arrow(con: ibis.BaseBackend, table: pa.Table, name: str | None = None) -> ir.Table:
    """DuckDB: `table` as a temp table (a copy), released like `materialize`'s; or, given a
    `name`, kept under it (replacing a table of that name) until the connection closes."""
    assert engine_of(con) == "duckdb", "materialize_arrow is for DuckDB"
    kept = name is not None
    name = name or f"_fieldbank_tmp_{next(_temp_names)}"
    raw = con.con  # noqa: SLF001 - the DuckDB connection under the Ibis backend
    raw.register(f"{name}_arrow", table)
    try:
        raw.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT * FROM "{name}_arrow"')
    finally:
        raw.unregister(f"{name}_arrow")
    if not kept:
        _live_temporaries.setdefault(id(con), []).append(name)
    return con.table(name)


def release_temporaries(con: ibis.BaseBackend) -> int:
    """Drop the non-kept temporaries made on `con`; returns how many."""
    names = _live_temporaries.pop(id(con), [])
    for name in names:
        if engine_of(con) == "duckdb":
            con.raw_sql(f'DROP TABLE IF EXISTS "{name}"')
        else:
            con._session.catalog.dropTempView(name)  # noqa: SLF001
    return len(names)
