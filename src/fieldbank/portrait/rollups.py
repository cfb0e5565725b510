"""Daily rollups of payments (party x day partial aggregates), kept in the lake.

Payments are the big table (~100M rows); every payment feature is defined on two rollups
of it, so the same feature code runs on rollups computed on the fly from raw payments
("direct") or on rollups persisted in `lake_dir/_rollups/` ("incremental"):

- `party_day`: party x day x direction (in/out) x kind x category -> amount, count.
- `pair_day`:  payee x payer x day, purchases only -> amount, count (distinct customers,
  repeat customers, top-customer share need the counterparty).

Persisted rollups live in `_rollups/<name>/`: one Parquet file per month (`YYYY-MM.parquet`)
plus, for the newest month only, one file per recent day (`YYYY-MM-DD.parquet`) that is not
yet in the month file. A day is never in both. `update_rollups` compares the payment files
in the lake with a manifest of the files it has already rolled up; for new, changed or
removed files it reads their day range from the Parquet footer statistics of `ts`,
recomputes only those days, reading only the raw files whose day range overlaps them, and
writes them: a new day of the newest month as its own small file (cost: one day of raw
events), anything else by rewriting the month file with those days replaced. When a month
stops being the newest, its day files are merged into its month file (once a month; many
small files cost more to open than to read). All writes are temp file + rename and the
manifest is written last, so a crash only makes the next update redo the same work.

Other tables (invoices, bills, loans) are small and their rows change after the fact
(paid_at, defaulted_at), so their features read them directly.

Single writer: run one `update_rollups` at a time per lake (the CLI does).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.parquet as pq

from fieldbank.contract import TABLES
from fieldbank.portrait.engine import (
    connect,
    materialize,
    parquet_files,
    parquet_view,
    read_parquet_dir,
    temp_views,
    utc_date,
)

PARTY_DAY_SCHEMA = pa.schema(
    [
        pa.field("party_id", pa.string(), nullable=False),
        pa.field("day", pa.date32(), nullable=False),
        pa.field("direction", pa.string(), nullable=False),  # "in": party was paid; "out": party paid
        pa.field("kind", pa.string(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("amount_minor", pa.int64(), nullable=False),
        pa.field("n_payments", pa.int64(), nullable=False),
    ]
)
PAIR_DAY_SCHEMA = pa.schema(
    [
        pa.field("payee_id", pa.string(), nullable=False),
        pa.field("payer_id", pa.string(), nullable=False),
        pa.field("day", pa.date32(), nullable=False),
        pa.field("amount_minor", pa.int64(), nullable=False),
        pa.field("n_payments", pa.int64(), nullable=False),
    ]
)
SCHEMAS: dict[str, pa.Schema] = {"party_day": PARTY_DAY_SCHEMA, "pair_day": PAIR_DAY_SCHEMA}
MANIFEST_VERSION = 1
# A day range per file above this means a malformed file (or a bug), not a lake we roll up.
MAX_DAYS_PER_FILE = 20_000


def party_day(payments: ir.Table) -> ir.Table:
    """Payments rolled up to party x day x direction x kind x category."""
    p = payments.mutate(day=payments.ts.date())
    sides = []
    for direction, party_col in (("in", "payee_id"), ("out", "payer_id")):
        sides.append(
            p.group_by(party_id=p[party_col], day=p.day, kind=p.kind, category=p.category)
            .aggregate(amount_minor=p.amount_minor.sum().cast("int64"), n_payments=p.count().cast("int64"))
            .mutate(direction=ibis.literal(direction))
        )
    out = sides[0].union(sides[1])
    return out.select(*PARTY_DAY_SCHEMA.names)


def party_day_rows(payments: ir.Table, engine: str) -> ir.Table:
    """Payments as rows of `party_day` *before* the group-by: each payment twice (payee side
    "in", payer side "out") with n_payments = 1. Every measure of windows.py is a sum or a
    count of distinct days over party_day rows, so it is the same on this relation; reading
    raw payments (no persisted rollups) the portrait uses it and skips materializing the
    grouped rollup (measured: the 1M-payment window query 0.8 s -> see docs/portrait.md).
    `engine` (of the backend `payments` is on) picks the cheapest `utc_date`."""
    p = payments.mutate(day=utc_date(payments.ts, engine))
    sides = [
        p.select(party_id=p[party_col], day=p.day, direction=ibis.literal(direction), kind=p.kind,
                 category=p.category, amount_minor=p.amount_minor.cast("int64"),
                 n_payments=ibis.literal(1, type="int64"))
        for direction, party_col in (("in", "payee_id"), ("out", "payer_id"))
    ]
    return sides[0].union(sides[1], distinct=False).select(*PARTY_DAY_SCHEMA.names)


def pair_day(payments: ir.Table, engine: str | None = None) -> ir.Table:
    """Purchases rolled up to payee x payer x day. `engine` (of the backend `payments` is on):
    the day by `utc_date` (the raw-payments path); None: `ts.date()`."""
    p = payments.filter(payments.kind == "purchase")
    p = p.mutate(day=p.ts.date() if engine is None else utc_date(p.ts, engine))
    out = p.group_by("payee_id", "payer_id", "day").aggregate(
        amount_minor=p.amount_minor.sum().cast("int64"), n_payments=p.count().cast("int64")
    )
    return out.select(*PAIR_DAY_SCHEMA.names)


ROLLUP_FUNCTIONS = {"party_day": party_day, "pair_day": pair_day}


def rollups_dir(lake_dir: Path) -> Path:
    return Path(lake_dir) / "_rollups"


def read_rollup(con: ibis.BaseBackend, lake_dir: Path, name: str, view_name: str | None = None) -> ir.Table:
    return read_parquet_dir(con, rollups_dir(lake_dir) / name, SCHEMAS[name], view_name)


def read_rollup_days(con: ibis.BaseBackend, lake_dir: Path, name: str, days: list[dt.date]) -> ir.Table:
    """The rows of `days` only, reading only the files that can hold them (a day file, or its
    month's file): what an incremental step needs, whatever the length of the history."""
    return filter_days(rollup_days_files(con, lake_dir, name, days), days)


def filter_days(t: ir.Table, days: list[dt.date]) -> ir.Table:
    return t.filter(t.day.isin([ibis.literal(x, type="date") for x in sorted(set(days))]))


def rollup_days_files(con: ibis.BaseBackend, lake_dir: Path, name: str, days: list[dt.date],
                      view_name: str | None = None) -> ir.Table:
    """The rollup files that can hold `days` (not filtered to them: `filter_days`). `view_name`
    (DuckDB): a view of that name (replaced), so SQL over it is the same in every run."""
    d = rollups_dir(lake_dir) / name
    wanted = set(days)
    files = [
        p for p in parquet_files(d)
        if (len(p.stem) == 10 and dt.date.fromisoformat(p.stem) in wanted)
        or (len(p.stem) == 7 and any(p.stem == f"{x.year:04d}-{x.month:02d}" for x in wanted))
    ]
    if view_name is not None:
        if not files:
            con.con.register(view_name, SCHEMAS[name].empty_table())  # noqa: SLF001
            return con.table(view_name).select(*SCHEMAS[name].names)
        return parquet_view(con, view_name, files).select(*SCHEMAS[name].names)
    if not files:  # a temp table, not a memtable: callers may compile this to SQL themselves
        return materialize(con, ibis.memtable(SCHEMAS[name].empty_table()))
    return con.read_parquet([str(p) for p in files], hive_partitioning=False).select(*SCHEMAS[name].names)


@dataclass(frozen=True)
class RollupUpdate:
    files_new_or_changed: int
    files_removed: int
    files_read: int
    days_rebuilt: int
    rows_written: int
    seconds: float = 0.0  # the update's wall time


def _file_day_range(path: Path) -> tuple[dt.date, dt.date] | None:
    """(first, last) UTC day of `ts` in a payments file, from footer statistics when present."""
    pf = pq.ParquetFile(path)
    meta = pf.metadata
    if meta.num_rows == 0:
        return None
    col = pf.schema_arrow.get_field_index("ts")
    assert col >= 0, f"{path}: no ts column"
    lo: dt.datetime | None = None
    hi: dt.datetime | None = None
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(col).statistics
        if stats is None or not stats.has_min_max:
            ts = pq.read_table(path, columns=["ts"]).column("ts")
            lo, hi = ts.combine_chunks().min().as_py(), ts.combine_chunks().max().as_py()  # type: ignore[attr-defined]
            break
        lo = stats.min if lo is None else min(lo, stats.min)
        hi = stats.max if hi is None else max(hi, stats.max)
    assert lo is not None and hi is not None
    lo_utc = lo.astimezone(dt.timezone.utc) if lo.tzinfo else lo
    hi_utc = hi.astimezone(dt.timezone.utc) if hi.tzinfo else hi
    first, last = lo_utc.date(), hi_utc.date()
    assert first <= last and (last - first).days <= MAX_DAYS_PER_FILE, f"{path}: day range {first}..{last}"
    return first, last


def _load_manifest(path: Path) -> dict:
    if not path.exists():
        return {"version": MANIFEST_VERSION, "files": {}}
    manifest = json.loads(path.read_text())
    assert manifest.get("version") == MANIFEST_VERSION, f"{path}: unknown manifest version"
    return manifest


def _days(first: dt.date, last: dt.date) -> set[dt.date]:
    return {first + dt.timedelta(days=i) for i in range((last - first).days + 1)}


def update_rollups(lake_dir: Path, con: ibis.BaseBackend | None = None) -> RollupUpdate:
    """Bring the persisted rollups in line with the payment files in the lake (see module doc).
    `con` (DuckDB): run the writes on it (its temp views made here are dropped after), not on a
    new in-memory connection (opening one costs ~16 ms, a tenth of a new day's update)."""
    started = time.perf_counter()
    lake_dir = Path(lake_dir)
    root = rollups_dir(lake_dir)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "_manifest.json"
    manifest = _load_manifest(manifest_path)
    known: dict[str, dict] = manifest["files"]

    payments_dir = lake_dir / "payments"
    current: dict[str, dict] = {}
    touched: set[dt.date] = set()
    changed = 0
    for path in parquet_files(payments_dir):
        rel = str(path.relative_to(payments_dir))
        st = path.stat()
        entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        old = known.get(rel)
        if old is not None and old["size"] == entry["size"] and old["mtime_ns"] == entry["mtime_ns"]:
            current[rel] = old
            continue
        changed += 1
        day_range = _file_day_range(path)
        entry["first_day"] = day_range[0].isoformat() if day_range else None
        entry["last_day"] = day_range[1].isoformat() if day_range else None
        current[rel] = entry
        if day_range:
            touched |= _days(*day_range)
        if old is not None and old.get("first_day"):
            touched |= _days(dt.date.fromisoformat(old["first_day"]), dt.date.fromisoformat(old["last_day"]))
    removed = [rel for rel in known if rel not in current]
    for rel in removed:
        old = known[rel]
        if old.get("first_day"):
            touched |= _days(dt.date.fromisoformat(old["first_day"]), dt.date.fromisoformat(old["last_day"]))

    files_read: set[Path] = set()
    rows_written = 0
    if touched:
        own = con is None
        con = connect("duckdb") if con is None else con
        views_before = {name for name, _ in temp_views(con.con)}  # noqa: SLF001
        by_month: dict[tuple[int, int], set[dt.date]] = {}
        for d in touched:
            by_month.setdefault((d.year, d.month), set()).add(d)
        newest = max(
            (dt.date.fromisoformat(e["last_day"]) for e in current.values() if e.get("last_day")), default=None
        )
        newest_month = (newest.year, newest.month) if newest else None
        # Months that stopped being the newest still have day files: merge them (compaction).
        for name in SCHEMAS:
            for path in (root / name).glob("????-??-??.parquet"):
                day = dt.date.fromisoformat(path.stem)
                if newest_month is None or (day.year, day.month) < newest_month:
                    by_month.setdefault((day.year, day.month), set())
        for month in sorted(by_month):
            days = by_month[month]
            files = _files_touching(payments_dir, current, days) if days else []
            files_read.update(files)
            rows_written += _rebuild_month(con, root, month, files, days, newest=month == newest_month)
        if own:
            con.disconnect()
        else:
            for name in {name for name, _ in temp_views(con.con)} - views_before:  # noqa: SLF001
                con.con.execute(f'DROP VIEW IF EXISTS "{name}"')  # noqa: SLF001
    manifest["files"] = current
    tmp = manifest_path.with_name(f".{manifest_path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, manifest_path)
    return RollupUpdate(changed, len(removed), len(files_read), len(touched), rows_written,
                        time.perf_counter() - started)


def _files_touching(payments_dir: Path, entries: dict[str, dict], days: set[dt.date]) -> list[Path]:
    """Payment files whose [first_day, last_day] contains one of `days`."""
    out = []
    for rel, entry in sorted(entries.items()):
        if entry.get("first_day") is None:
            continue
        first, last = dt.date.fromisoformat(entry["first_day"]), dt.date.fromisoformat(entry["last_day"])
        if any(first <= d <= last for d in days):
            out.append(payments_dir / rel)
    return out


DAY_FILES_MAX_DAYS = 3  # more touched days than this in the newest month: rewrite its month file


def _day_range(path: Path) -> tuple[dt.date, dt.date] | None:
    """(first, last) `day` in a rollup file, from its footer statistics."""
    pf = pq.ParquetFile(path)
    meta = pf.metadata
    col = pf.schema_arrow.get_field_index("day")
    lo = hi = None
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(col).statistics
        if stats is None or not stats.has_min_max:
            days = pq.read_table(path, columns=["day"]).column("day").to_pylist()
            return (min(days), max(days)) if days else None
        lo = stats.min if lo is None else min(lo, stats.min)
        hi = stats.max if hi is None else max(hi, stats.max)
    return None if lo is None else (lo, hi)


def _write_rows(con: ibis.BaseBackend, expr: ir.Table, path: Path) -> int:
    """COPY `expr` to `path` via a temp file; an empty result removes `path`. Returns rows."""
    return _publish(path, lambda tmp: con.to_parquet(expr, tmp))


def _publish(path: Path, write: Callable[[Path], object]) -> int:
    """`write` a Parquet file to a temp path, then move it onto `path` (atomic); an empty
    result removes `path` instead. Returns the rows written."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    n = pq.ParquetFile(tmp).metadata.num_rows
    if n == 0:
        tmp.unlink()
        path.unlink(missing_ok=True)
        return 0
    os.replace(tmp, path)
    return n


DAY_RAW_VIEW = "_rollup_day_raw"  # the raw files of a day file, under a name fixed across runs


def _day_file_sql(con: ibis.BaseBackend, root: Path, files: list[Path]) -> Callable[[str, dt.date], str]:
    """(rollup name, day) -> the SQL of that rollup for one day from the raw `files`: the same
    ROLLUP_FUNCTIONS over the payments of [day, day + 1), compiled once and kept as a template
    in `_rollups/_sql/` (sqlcache.py), since compiling the Ibis expressions cost more than
    running them (~0.06 of ~0.1 s per new day at 5M payments). One view of the files and one
    template key serve every rollup and day of the files."""
    from fieldbank.portrait.inputs import AsOf  # noqa: PLC0415 - inputs imports this module
    from fieldbank.portrait.sqlcache import SqlTemplates, cache_key  # noqa: PLC0415 - imports inputs

    raw = parquet_view(con, DAY_RAW_VIEW, files).select(*TABLES["payments"].column_names)
    cache = SqlTemplates.load(cache_key(con, "rollup day file", [raw]), root / "_sql")

    def sql(name: str, day: dt.date) -> str:
        def build(a: AsOf) -> ir.Table:  # the day before D
            r = raw.filter(raw.ts >= a.start_ts(1), raw.ts < a.ts)
            fresh = ROLLUP_FUNCTIONS[name](r).cast(ibis.schema(SCHEMAS[name]))
            return fresh.filter(fresh.day == a.start_date(1))

        out = cache.sql(con, name, build, day + dt.timedelta(days=1))
        cache.save()
        return out

    return sql


def _write_sql_rows(con: ibis.BaseBackend, sql: str, path: Path) -> int:
    """`_write_rows` of a compiled query."""
    return _publish(path, lambda tmp: con.con.execute(  # noqa: SLF001 - as Ibis' to_parquet
        f"COPY ({sql}) TO {str(tmp)!r} (FORMAT 'parquet')"))


def _rebuild_month(
    con: ibis.BaseBackend,
    root: Path,
    month: tuple[int, int],
    files: list[Path],
    days: set[dt.date],
    newest: bool,
) -> int:
    """Write the rollups of `days` (recomputed from `files`) for one month, as day files or by
    rewriting the month file (merging its day files); see the module doc. Returns rows written."""
    tag = f"{month[0]:04d}-{month[1]:02d}"

    def raw_payments() -> ir.Table:  # the payments of `days` (built only for a month file)
        raw = con.read_parquet([str(f) for f in files], hive_partitioning=False)
        raw = raw.select(*TABLES["payments"].column_names)
        first, last = min(days), max(days)
        lo = dt.datetime(first.year, first.month, first.day, tzinfo=dt.timezone.utc)
        hi = dt.datetime(last.year, last.month, last.day, tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
        raw = raw.filter(raw.ts >= ibis.literal(lo), raw.ts < ibis.literal(hi))
        if len(days) < (last - first).days + 1:
            raw = raw.filter(raw.ts.date().isin(sorted(days)))
        return raw

    rows = 0
    day_sql: Callable[[str, dt.date], str] | None = None  # made once, if day files are written
    for name, schema in SCHEMAS.items():
        out_dir = root / name
        out_dir.mkdir(parents=True, exist_ok=True)
        month_path = out_dir / f"{tag}.parquet"
        day_paths = sorted(out_dir.glob(f"{tag}-??.parquet"))
        ibis_schema = ibis.schema(schema)
        in_month_file = _day_range(month_path) if month_path.exists() else None
        as_day_files = (
            newest and 0 < len(days) <= DAY_FILES_MAX_DAYS
            and not (in_month_file and any(in_month_file[0] <= d <= in_month_file[1] for d in days))
        )
        if as_day_files:
            for d in sorted(days):
                path = out_dir / f"{d.isoformat()}.parquet"
                if not files:
                    path.unlink(missing_ok=True)
                    continue
                day_sql = day_sql or _day_file_sql(con, root, files)
                rows += _write_sql_rows(con, day_sql(name, d), path)
            continue
        parts = [ROLLUP_FUNCTIONS[name](raw_payments()).cast(ibis_schema)] if files else []
        if month_path.exists():  # keep the month's days that were not rebuilt
            old = con.read_parquet(str(month_path)).select(*schema.names).cast(ibis_schema)
            parts.append(old.filter(~old.day.isin(sorted(days))) if days else old)
        for path in day_paths:  # fold the day files in
            if dt.date.fromisoformat(path.stem) not in days:
                parts.append(con.read_parquet(str(path)).select(*schema.names).cast(ibis_schema))
        if parts:
            expr = parts[0]
            for part in parts[1:]:
                expr = expr.union(part)
            rows += _write_rows(con, expr, month_path)
        else:
            month_path.unlink(missing_ok=True)
        for path in day_paths:
            path.unlink()
    return rows
