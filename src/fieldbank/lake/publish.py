"""Snapshots: a stage that *owns* some rows of a lake table replaces them all at once.

The bank's close-day is the case in point: it re-exports the outcome of every loan it
booked (max DPD, default date, closed, written off) each night, and those rows change. Ingest
treats a changed row under a known key as a conflict, which is right for events; a snapshot
instead swaps the owner's previous files for new ones in one new table version, committed by
the same atomic symlink swap as an ingest batch (layout.py), under the same lake lock.
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fieldbank import contract
from fieldbank.lake import layout
from fieldbank.lake.ingest import new_batch_id

OWNER_PATTERN = re.compile(r"^[a-z0-9_]{1,32}$")
MAX_SNAPSHOT_ROWS = 50_000_000  # one snapshot is written from memory


def snapshot_prefix(owner: str) -> str:
    return f"snapshot-{owner}-"


def publish_snapshot(lake_dir: Path, table: str, owner: str, rows: pa.Table) -> str:
    """Replace every row `owner` published to `table` before with `rows`; returns the version.

    `rows` must have exactly the contract schema and unique keys that no other owner's or
    ingested row uses. Readers see the old snapshot or the new one, never a mix.
    """
    tdef = contract.TABLES[table]
    if not OWNER_PATTERN.match(owner):
        raise ValueError(f"owner {owner!r}: use 1-32 of a-z, 0-9, '_'")
    if not rows.schema.equals(tdef.schema):
        raise ValueError(f"{table} snapshot from {owner}: schema differs from the contract:\n{rows.schema}")
    if rows.num_rows > MAX_SNAPSHOT_ROWS:
        raise ValueError(f"{table} snapshot from {owner}: {rows.num_rows} rows, limit {MAX_SNAPSHOT_ROWS}")
    keys = rows.column(tdef.primary_key)
    if pc.count_distinct(keys).as_py() != rows.num_rows:
        raise ValueError(f"{table} snapshot from {owner}: duplicate {tdef.primary_key} values")

    lake_dir = Path(lake_dir)
    prefix = snapshot_prefix(owner)
    version = new_batch_id()
    staged = layout.staging_root(lake_dir) / version
    with layout.lake_lock(lake_dir):
        layout.drop_unkept_versions(lake_dir, table)
        kept = [f for f in layout.partition_files(layout.live_version_dir(lake_dir, table))
                if not f.name.startswith(prefix)]
        if kept and rows.num_rows:
            others = pa.concat_arrays([pq.read_table(f, columns=[tdef.primary_key]).column(0).combine_chunks()
                                       for f in kept])
            clash = pc.filter(keys, pc.is_in(keys, value_set=others))
            if len(clash):
                raise ValueError(f"{table} snapshot from {owner}: {tdef.primary_key} {clash[0].as_py()!r} "
                                 "already belongs to another source in the lake")
        try:
            months = pc.strftime(rows.column(tdef.time_column), format="%Y-%m")
            for month in sorted(set(months.to_pylist())):
                part = rows.filter(pc.equal(months, month))
                year, mon = (int(v) for v in month.split("-"))
                out = staged / "data" / layout.month_dir_name(year, mon) / f"{prefix}{version}.parquet"
                out.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(part, out)
            manifest = layout.read_manifest(lake_dir, table)
            manifest.previous, manifest.version = manifest.version, version
            manifest.batches.append({"batch_id": version, "snapshot_of": owner, "rows_landed": rows.num_rows,
                                     "committed_at": datetime.now(timezone.utc).isoformat(), "files": []})
            layout.build_version(lake_dir, table, version, staged / "data", None, manifest,
                                 keep_file=lambda f: not f.name.startswith(prefix))
            layout.commit_version(lake_dir, table, version)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        layout.drop_unkept_versions(lake_dir, table)
    return version
