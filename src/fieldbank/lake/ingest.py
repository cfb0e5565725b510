"""`ingest(src, settings)`: validate raw event files and land the good rows in the lake.

Per table (in contract.TABLE_ORDER, so parties land before the tables that reference them),
the files not ingested before (sha256 not in the table's manifest) are grouped into batches
of bounded size. Per batch, in one in-memory DuckDB database (spilling to lake/_ingest/tmp):

1. load every file into the temp table `batch` (a file that cannot be read is rejected whole);
2. run the contract's rules (validate.py), collecting violations per row;
3. write the good rows to lake/_staging/<batch>/month=YYYY-MM/ with COPY ... PARTITION_BY,
   and the rejected rows (as text, with all their reasons) to a pending quarantine file;
4. assemble a new table version (hard links + staged files + manifest) and commit it with
   one atomic symlink swap (layout.py); then deliver the quarantine file.

Accounting, asserted for every batch and table: rows read = landed + quarantined + skipped,
where skipped rows are identical copies of rows already in the lake (or earlier in the batch).
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fieldbank import contract
from fieldbank.config import Settings
from fieldbank.lake import layout, sources, validate
from fieldbank.lake.report import FileReport, IngestReport, TableReport, Violation
from fieldbank.lake.validate import ROW_BITS, FileSchema, SourceError, SourceFile, lit, q

DEFAULT_MEMORY_LIMIT = "4GB"
STEPS_PER_BATCH = 4  # rules, keys, write, publish (plus one step per file loaded)


@dataclass
class IngestHooks:
    """Test hooks: called at the two moments a crash matters (raise to simulate one)."""

    before_commit: Callable[[str, str], None] | None = None  # (table, batch_id)
    after_commit: Callable[[str, str], None] | None = None


def new_batch_id() -> str:
    """Time-ordered and unique: 20261129T101500123456Z-3fa9c1."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"


def connect(lake_dir: Path, memory_limit: str, threads: int | None) -> duckdb.DuckDBPyConnection:
    spill = layout.spill_dir(lake_dir)
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        ":memory:", config={"memory_limit": memory_limit, "temp_directory": str(spill)}
    )
    con.execute("SET TimeZone = 'UTC'")  # naive timestamps are UTC; month partitions in UTC
    if threads is not None:
        assert threads >= 1
        con.execute(f"SET threads = {int(threads)}")
    return con


def ingest(
    src: Path,
    settings: Settings,
    *,
    table: str | None = None,
    now: datetime | None = None,
    force: bool = False,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int | None = None,
    max_batch_bytes: int = sources.DEFAULT_MAX_BATCH_BYTES,
    console: Console | None = None,
    show_progress: bool = False,
    hooks: IngestHooks | None = None,
) -> IngestReport:
    """Ingest every table file under `src` into settings.lake_dir; bad rows to quarantine.

    `now` is the upper bound for timestamps (default: the current time); `force` re-reads
    files whose checksum says they were ingested already (rows already in the lake are then
    counted as skipped, not landed twice).
    """
    started = time.perf_counter()
    now = now if now is not None else datetime.now(timezone.utc)
    assert now.tzinfo is not None, "now must be timezone-aware"
    hooks = hooks or IngestHooks()
    lake_dir, quarantine_dir = Path(settings.lake_dir), Path(settings.quarantine_dir)
    found, ignored = sources.discover(Path(src), table)
    report = IngestReport(
        src=str(src), lake_dir=str(lake_dir), quarantine_dir=str(quarantine_dir), ignored=ignored
    )
    with layout.lake_lock(lake_dir):
        report.recovered += layout.clean_staging(lake_dir)
        for name in contract.TABLE_ORDER:
            report.recovered += layout.recover_table(lake_dir, quarantine_dir, name)
        con = connect(lake_dir, memory_limit, threads)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not show_progress,
            transient=False,
        )
        try:
            with progress:
                for name, files in found.items():
                    report.tables.append(
                        _ingest_table(
                            con,
                            contract.TABLES[name],
                            files,
                            settings,
                            now,
                            force,
                            max_batch_bytes,
                            progress,
                            hooks,
                        )
                    )
        finally:
            con.close()
    report.seconds = time.perf_counter() - started
    return report


def _ingest_table(
    con: duckdb.DuckDBPyConnection,
    tdef: contract.Table,
    files: list[SourceFile],
    settings: Settings,
    now: datetime,
    force: bool,
    max_batch_bytes: int,
    progress: Progress,
    hooks: IngestHooks,
) -> TableReport:
    lake_dir = Path(settings.lake_dir)
    tr = TableReport(table=tdef.name)
    seen = {} if force else layout.read_manifest(lake_dir, tdef.name).file_checksums()
    to_read: list[SourceFile] = []
    started = time.perf_counter()
    for f in files:
        f.sha256 = sources.sha256_of(f.path)
        if f.sha256 in seen:
            tr.files.append(
                FileReport(str(f.path), f.format, f.sha256, "skipped", note=seen[f.sha256])
            )
            continue
        seen[f.sha256] = f"same content as {f.path}, read in this run"
        to_read.append(f)
    tr.add_seconds("checksum", time.perf_counter() - started)
    batches = sources.group_batches(to_read, max_batch_bytes)
    task = progress.add_task(
        f"{tdef.name}", total=sum(len(b) + STEPS_PER_BATCH for b in batches) or 1
    )
    for group in batches:
        _ingest_batch(con, tdef, group, settings, now, tr, progress, task, hooks)
    if not batches:
        progress.update(task, completed=1)
    tr.check()
    return tr


def _ingest_batch(
    con: duckdb.DuckDBPyConnection,
    tdef: contract.Table,
    group: list[SourceFile],
    settings: Settings,
    now: datetime,
    tr: TableReport,
    progress: Progress,
    task: int,
    hooks: IngestHooks,
) -> None:
    lake_dir, quarantine_dir = Path(settings.lake_dir), Path(settings.quarantine_dir)
    batch_id = new_batch_id()
    for i, f in enumerate(group):
        f.index = i
    con.execute("DROP TABLE IF EXISTS files")
    con.execute("CREATE TEMP TABLE files (_file_idx INTEGER, path VARCHAR)")
    con.executemany("INSERT INTO files VALUES (?, ?)", [[f.index, str(f.path)] for f in group])

    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now_s = time.perf_counter()
        tr.add_seconds(step, now_s - clock)
        clock = now_s

    # 1. load
    schemas: dict[int, FileSchema] = {}
    file_reports: dict[int, FileReport] = {}
    for f in group:
        file_reports[f.index] = FileReport(str(f.path), f.format, f.sha256, "ingested")
        try:
            schemas[f.index] = validate.describe(con, tdef, f)
        except SourceError as exc:
            file_reports[f.index].status, file_reports[f.index].error = (
                "rejected",
                f"file_unreadable: {exc}",
            )
    raw_columns = {
        c.name
        for c in tdef.columns
        for s in schemas.values()
        if validate.needs_parse(c, s.columns.get(c.name))
    }
    validate.create_batch_tables(con, tdef, raw_columns)
    loaded: list[SourceFile] = []
    for f in group:
        progress.update(task, description=f"{tdef.name}: reading {f.path.name}")
        if f.index in schemas:
            try:
                file_reports[f.index].rows_read = validate.load_file(
                    con, tdef, f, schemas[f.index], raw_columns
                )
                loaded.append(f)
            except SourceError as exc:
                file_reports[f.index].status, file_reports[f.index].error = (
                    "rejected",
                    f"file_unreadable: {exc}",
                )
                del schemas[f.index]
        progress.advance(task)

    lap("read")

    # 2. rules
    progress.update(task, description=f"{tdef.name}: checking rules")
    for stmt in validate.row_rule_statements(tdef, raw_columns, now):
        con.execute(stmt)
    for column, ref_table, ref_column in validate.reference_statements(tdef):
        known = f"known_{ref_table}_{ref_column}"
        ref_files = [
            str(p) for p in layout.partition_files(layout.live_version_dir(lake_dir, ref_table))
        ]
        con.execute(f"DROP TABLE IF EXISTS {known}")
        if ref_files:
            con.execute(
                f"CREATE TEMP TABLE {known} AS SELECT DISTINCT {q(ref_column)} AS k "
                f"FROM read_parquet([{', '.join(lit(p) for p in ref_files)}])"
            )
        else:
            con.execute(f"CREATE TEMP TABLE {known} (k VARCHAR)")
        validate.add_reference_violations(con, column, known, f"{ref_table}.{ref_column}")
    validate.drop_redundant_violations(
        con, [(i, col) for i, s in schemas.items() for col in s.missing]
    )
    progress.advance(task)
    lap("rules")
    live_files = [
        str(p) for p in layout.partition_files(layout.live_version_dir(lake_dir, tdef.name))
    ]
    validate.add_key_checks(con, tdef, live_files)
    progress.advance(task)
    lap("keys")

    # accounting, per file
    for idx, n in con.execute(
        f"SELECT _rid >> {ROW_BITS}, count(DISTINCT _rid) FROM viol GROUP BY 1"
    ).fetchall():
        file_reports[int(idx)].rows_quarantined = int(n)
    for idx, n in con.execute(
        f"SELECT _rid >> {ROW_BITS}, count(*) FROM skipped GROUP BY 1"
    ).fetchall():
        file_reports[int(idx)].rows_skipped = int(n)
    (overlap,) = con.execute(
        "SELECT count(*) FROM skipped SEMI JOIN viol USING (_rid)"
    ).fetchone() or (0,)
    assert overlap == 0, "a row cannot be both skipped and quarantined"
    for f in loaded:
        fr = file_reports[f.index]
        fr.rows_landed = fr.rows_read - fr.rows_quarantined - fr.rows_skipped
        assert fr.rows_landed >= 0, fr
        problems = _file_problems(con, f, schemas[f.index])
        if problems:
            fr.status, fr.error = "rejected", problems
            assert fr.rows_landed == 0, fr
    rows_read = sum(fr.rows_read for fr in file_reports.values())
    rows_quarantined = sum(fr.rows_quarantined for fr in file_reports.values())
    rows_skipped = sum(fr.rows_skipped for fr in file_reports.values())
    expected_landed = rows_read - rows_quarantined - rows_skipped

    # 3. write good rows to staging, bad rows to a pending quarantine file
    progress.update(task, description=f"{tdef.name}: writing")
    staged = layout.staging_root(lake_dir) / batch_id
    staged.mkdir(parents=True)
    landed = 0
    if expected_landed > 0:
        cols = ", ".join(q(c) for c in tdef.column_names)
        exclude = ""
        if rows_quarantined + rows_skipped > 0:
            exclude = (
                "ANTI JOIN (SELECT _rid FROM viol UNION SELECT _rid FROM skipped) x USING (_rid)"
            )
        (landed,) = con.execute(
            f"COPY (SELECT {cols}, strftime({q(tdef.time_column)}, '%Y-%m') AS month FROM batch {exclude}) "
            f"TO {lit(str(staged / 'data'))} (FORMAT parquet, PARTITION_BY (month), "
            f"FILENAME_PATTERN {lit('part-' + batch_id + '-{i}')})"
        ).fetchone() or (0,)
    assert landed == expected_landed, (
        f"{tdef.name}: landed {landed} rows, expected {expected_landed}"
    )
    pending_quarantine = None
    if rows_quarantined > 0:
        pending_quarantine = staged / f"{batch_id}.parquet"
        _write_quarantine(con, tdef, raw_columns, batch_id, pending_quarantine)
    progress.advance(task)

    lap("write")

    # 4. publish: new version (invisible), then the atomic commit
    progress.update(task, description=f"{tdef.name}: publishing")
    read_reports = [file_reports[f.index] for f in loaded]
    if read_reports:
        manifest = layout.read_manifest(lake_dir, tdef.name)
        manifest.previous, manifest.version = manifest.version, batch_id
        manifest.batches.append(
            {
                "batch_id": batch_id,
                "committed_at": datetime.now(timezone.utc).isoformat(),
                "rows_read": rows_read,
                "rows_landed": landed,
                "rows_quarantined": rows_quarantined,
                "rows_skipped": rows_skipped,
                "quarantine_file": pending_quarantine.name if pending_quarantine else None,
                "files": [
                    {
                        "path": fr.path,
                        "sha256": fr.sha256,
                        "format": fr.format,
                        "status": fr.status,
                        "rows_read": fr.rows_read,
                        "rows_landed": fr.rows_landed,
                        "rows_quarantined": fr.rows_quarantined,
                        "rows_skipped": fr.rows_skipped,
                    }
                    for fr in read_reports
                ],
            }
        )
        layout.build_version(
            lake_dir, tdef.name, batch_id, staged / "data", pending_quarantine, manifest
        )
        if hooks.before_commit is not None:
            hooks.before_commit(tdef.name, batch_id)
        layout.commit_version(lake_dir, tdef.name, batch_id)
        if hooks.after_commit is not None:
            hooks.after_commit(tdef.name, batch_id)
        layout.deliver_quarantine(lake_dir, quarantine_dir, tdef.name)
        layout.drop_unkept_versions(lake_dir, tdef.name)
        tr.batch_ids.append(batch_id)
        if pending_quarantine is not None:
            tr.quarantine_files.append(str(quarantine_dir / tdef.name / pending_quarantine.name))
    shutil.rmtree(staged)
    progress.advance(task)
    lap("publish")

    # the table's report
    for rule, column, n in con.execute(
        "SELECT rule, column_name, count(DISTINCT _rid) FROM viol GROUP BY rule, column_name "
        "ORDER BY min(ord), column_name"
    ).fetchall():
        tr.add_rule_count(rule, column, int(n))
    room = validate.EXAMPLES_LIMIT - len(tr.examples)
    if room > 0:
        for path, row, column, value, rule, reason in con.execute(
            "SELECT f.path, b._row, v.column_name, v.value, v.rule, v.reason FROM viol v "
            "JOIN batch b USING (_rid) JOIN files f ON f._file_idx = b._file_idx "
            f"ORDER BY v._rid, v.ord, v.column_name LIMIT {room}"
        ).fetchall():
            tr.examples.append(Violation(path, int(row), column, value, rule, reason))
    for f in group:
        fr = file_reports[f.index]
        tr.files.append(fr)
    tr.rows_read += rows_read
    tr.rows_landed += landed
    tr.rows_quarantined += rows_quarantined
    tr.rows_skipped += rows_skipped
    for temp in (
        "batch",
        "viol",
        "skipped",
        "excluded",
        "lake_hits",
        "dup_keys",
        "dup_rows",
        "files",
    ):
        con.execute(f"DROP TABLE IF EXISTS {temp}")  # free the batch's memory now
    progress.update(task, description=f"{tdef.name}: done")


def _file_problems(con: duckdb.DuckDBPyConnection, f: SourceFile, schema: FileSchema) -> str | None:
    """A one-line description of why a whole file was rejected, or None."""
    problems = []
    if schema.missing:
        problems.append("missing column(s) " + ", ".join(schema.missing))
    if schema.extra:
        problems.append("extra column(s) " + ", ".join(schema.extra))
    first = con.execute(
        f"SELECT v.reason FROM viol v WHERE v.rule = 'malformed_row' AND (v._rid >> {ROW_BITS}) = ? "
        "ORDER BY v._rid LIMIT 1",
        [f.index],
    ).fetchone()
    if first is not None:
        (n,) = con.execute(
            f"SELECT count(*) FROM viol WHERE rule = 'malformed_row' AND (_rid >> {ROW_BITS}) = ?",
            [f.index],
        ).fetchone() or (0,)
        problems.append(f"{n} malformed line(s), first: {first[0]}")
    if not problems:
        return None
    return "; ".join(problems) + "; nothing of this file landed, all its rows are quarantined"


def _write_quarantine(
    con: duckdb.DuckDBPyConnection,
    tdef: contract.Table,
    raw_columns: set[str],
    batch_id: str,
    path: Path,
) -> None:
    """Rejected rows: contract columns as text (original values), then where and why."""
    values = []
    for c in tdef.column_names:
        if c in raw_columns:
            values.append(f"COALESCE(b.{q('_raw_' + c)}, CAST(b.{q(c)} AS VARCHAR)) AS {q(c)}")
        else:
            values.append(f"CAST(b.{q(c)} AS VARCHAR) AS {q(c)}")
    con.execute(
        f"COPY (SELECT {', '.join(values)}, b._extra AS _extra_columns_json, "
        f"f.path AS _source_file, b._row AS _row_number, "
        f"v.violations[1].rule AS _rule, v.violations[1].column_name AS _column, "
        f"v.violations[1].value AS _value, v.violations[1].reason AS _reason, "
        f"v.violations AS _violations, {lit(batch_id)} AS _batch_id "
        f"FROM batch b JOIN ("
        f"  SELECT _rid, list(struct_pack(rule := rule, column_name := column_name, value := value, "
        f"    reason := reason) ORDER BY ord, column_name) AS violations FROM viol GROUP BY _rid"
        f") v USING (_rid) JOIN files f ON f._file_idx = b._file_idx ORDER BY b._rid"
        f") TO {lit(str(path))} (FORMAT parquet)"
    )
