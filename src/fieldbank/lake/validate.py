"""The ingest rules, generated from fieldbank.contract and run as DuckDB SQL.

A batch is loaded into a temporary DuckDB table `batch` with one typed column per contract
column (NULL where a value did not parse) plus `_raw_<col>` text columns for the columns
that had to be parsed (CSV, or Parquet of a type that is not a lossless match). Every rule
then appends rows to `viol` (one row per broken rule per input row): that is what the
quarantine is built from. Rules are plain SQL filters and anti-joins, so DuckDB runs them
vectorised on all cores and spills to disk when a batch is bigger than memory.

Rule names (stable, used in the quarantine `_rule` column and the report):
file_unreadable, malformed_row, file_rejected, missing_column, extra_column, type, required,
allowed, min_value, too_early, future, not_before, reference, key_in_lake, duplicate_key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from fieldbank import contract

# Rule order: a quarantined row's `_rule`/`_reason` is its first broken rule in this order.
RULE_ORDER: dict[str, int] = {
    "file_unreadable": 0,
    "malformed_row": 1,
    "file_rejected": 2,
    "missing_column": 3,
    "extra_column": 4,
    "type": 10,
    "required": 20,
    "allowed": 30,
    "min_value": 40,
    "too_early": 50,
    "future": 51,
    "not_before": 60,
    "reference": 70,
    "key_in_lake": 80,
    "duplicate_key": 90,
}
FILE_LEVEL_RULES = ("malformed_row", "file_rejected", "missing_column", "extra_column")

DUCK_TYPES: dict[pa.DataType, str] = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.bool_(): "BOOLEAN",
    contract.TIMESTAMP: "TIMESTAMPTZ",
}
TYPE_NAMES: dict[str, str] = {
    "VARCHAR": "text",
    "BIGINT": "whole number (int64)",
    "INTEGER": "whole number (int32)",
    "BOOLEAN": "boolean (true/false)",
    "TIMESTAMPTZ": "timestamp (ISO 8601, UTC unless an offset is given)",
}
# Source column types (as DuckDB names them) that convert to the contract type with no loss
# and no judgement. Naive timestamps are taken as UTC (the session time zone is UTC).
# Anything else goes through text and the strict parser below, row by row.
LOSSLESS_SOURCE_TYPES: dict[str, frozenset[str]] = {
    "BIGINT": frozenset(
        {"BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UINTEGER", "USMALLINT", "UTINYINT"}
    ),
    "INTEGER": frozenset({"INTEGER", "SMALLINT", "TINYINT", "USMALLINT", "UTINYINT"}),
    "BOOLEAN": frozenset({"BOOLEAN"}),
    "TIMESTAMPTZ": frozenset(
        {"TIMESTAMP WITH TIME ZONE", "TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"}
    ),
}
# DuckDB's own text->integer cast accepts '12.5' (rounds), '1e3' and '0x10'; money must not.
INTEGER_PATTERN = "[+-]?[0-9]{1,19}"
# CSV dialect: RFC 4180 (comma, double quotes, header row), UTF-8. Fixed rather than sniffed:
# DuckDB's sniffer guesses a different dialect when the file is damaged (e.g. truncated).
CSV_OPTIONS = "header=true, all_varchar=true, delim=',', quote='\"', escape='\"', encoding='utf-8'"
ROW_BITS = 40  # _rid = file index << 40 | row number: 1e12 rows per file, 8M files per batch
MAX_ROWS_PER_FILE = 1 << ROW_BITS
EXAMPLES_LIMIT = 20  # violations shown in the report (all of them are in the quarantine)


class SourceError(Exception):
    """A source file that cannot be read at all (corrupt, truncated, not CSV/Parquet)."""


def q(name: str) -> str:
    """Quote an SQL identifier (source files may have any column names)."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """Quote an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def duck_type(column: contract.Column) -> str:
    return DUCK_TYPES[column.type]


def parse_text_sql(expr: str, target: str) -> str:
    """SQL turning text into the contract type, NULL where the text is not a valid value."""
    if target == "VARCHAR":
        return expr
    if target in ("BIGINT", "INTEGER"):
        return f"CASE WHEN regexp_full_match({expr}, '{INTEGER_PATTERN}') THEN TRY_CAST({expr} AS {target}) END"
    return f"TRY_CAST({expr} AS {target})"


@dataclass
class SourceFile:
    """One input file of a batch."""

    table: str
    path: Path
    format: str  # "csv" or "parquet"
    size_bytes: int
    sha256: str = ""
    index: int = -1  # position in the batch, set when the batch is formed

    @property
    def reader_sql(self) -> str:
        if self.format == "parquet":
            return f"read_parquet({lit(str(self.path))}, file_row_number=true)"
        rejects = f"rejects_{self.index}"
        return (
            f"read_csv({lit(str(self.path))}, {CSV_OPTIONS}, store_rejects=true, "
            f"rejects_table={lit(rejects)}, rejects_scan={lit(rejects + '_scan')})"
        )


@dataclass
class FileSchema:
    """What a source file holds, compared with the contract."""

    columns: dict[str, str]  # name -> DuckDB type
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)


def describe(con: duckdb.DuckDBPyConnection, table: contract.Table, f: SourceFile) -> FileSchema:
    """Read a file's column names and types; raises SourceError when it is unreadable."""
    try:
        if f.format == "parquet":
            rows = con.execute(
                f"DESCRIBE SELECT * FROM read_parquet({lit(str(f.path))})"
            ).fetchall()
        else:
            rows = con.execute(
                f"DESCRIBE SELECT * FROM read_csv({lit(str(f.path))}, {CSV_OPTIONS}, store_rejects=true)"
            ).fetchall()
    except duckdb.Error as exc:
        raise SourceError(f"{f.path}: cannot read as {f.format}: {first_line(exc)}") from exc
    columns = {r[0]: r[1] for r in rows}
    return FileSchema(
        columns=columns,
        missing=[c for c in table.column_names if c not in columns],
        extra=[c for c in columns if c not in table.column_names],
    )


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def needs_parse(column: contract.Column, source_type: str | None) -> bool:
    """Whether this source column must go through text and the strict parser."""
    target = duck_type(column)
    if source_type is None or target == "VARCHAR":
        return False
    return source_type not in LOSSLESS_SOURCE_TYPES[target]


def create_batch_tables(
    con: duckdb.DuckDBPyConnection, table: contract.Table, raw_columns: set[str]
) -> None:
    cols = ["_rid BIGINT", "_file_idx INTEGER", "_row BIGINT"]
    cols += [f"{q(c.name)} {duck_type(c)}" for c in table.columns]
    cols += [f"{q('_raw_' + name)} VARCHAR" for name in table.column_names if name in raw_columns]
    cols.append("_extra VARCHAR")
    con.execute("DROP TABLE IF EXISTS batch")
    con.execute(f"CREATE TEMP TABLE batch ({', '.join(cols)})")
    con.execute("DROP TABLE IF EXISTS viol")
    con.execute(
        "CREATE TEMP TABLE viol (_rid BIGINT, ord INTEGER, rule VARCHAR, "
        "column_name VARCHAR, value VARCHAR, reason VARCHAR)"
    )
    con.execute("DROP TABLE IF EXISTS skipped")
    con.execute("CREATE TEMP TABLE skipped (_rid BIGINT, reason VARCHAR)")


def load_file(
    con: duckdb.DuckDBPyConnection,
    table: contract.Table,
    f: SourceFile,
    schema: FileSchema,
    raw_columns: set[str],
) -> int:
    """Append one file to `batch` (all or nothing) and record its file-level problems.

    Returns the number of rows read (for a CSV with malformed lines, these lines count as
    rows read: they are quarantined with rule malformed_row). Raises SourceError when the
    file cannot be read; then nothing of it is in the batch.
    """
    assert f.index >= 0
    rid_base = f.index << ROW_BITS
    select = [f"{f.index}::INTEGER AS _file_idx"]
    if f.format == "parquet":
        select.append("file_row_number + 1 AS _row")  # 1-based, like a spreadsheet row
    else:
        select.append("row_number() OVER () AS _row")  # CSV: data rows, header not counted
    for c in table.columns:
        target = duck_type(c)
        source_type = schema.columns.get(c.name)
        if source_type is None:
            select.append(f"NULL::{target} AS {q(c.name)}")
            if c.name in raw_columns:
                select.append(f"NULL::VARCHAR AS {q('_raw_' + c.name)}")
        elif needs_parse(c, source_type):
            assert c.name in raw_columns, c.name
            text = q(c.name) if source_type == "VARCHAR" else f"CAST({q(c.name)} AS VARCHAR)"
            select.append(f"{parse_text_sql(text, target)} AS {q(c.name)}")
            select.append(f"{text} AS {q('_raw_' + c.name)}")
        else:
            select.append(f"CAST({q(c.name)} AS {target}) AS {q(c.name)}")
            if c.name in raw_columns:
                select.append(f"NULL::VARCHAR AS {q('_raw_' + c.name)}")
    if schema.extra:
        pack = ", ".join(f"{q(e)} := CAST({q(e)} AS VARCHAR)" for e in schema.extra)
        select.append(f"CAST(to_json(struct_pack({pack})) AS VARCHAR) AS _extra")
    else:
        select.append("NULL::VARCHAR AS _extra")
    inner = f"SELECT {', '.join(select)} FROM {f.reader_sql}"
    try:
        con.execute(
            f"INSERT INTO batch BY NAME SELECT ({rid_base}::BIGINT + _row) AS _rid, * FROM ({inner})"
        )
    except duckdb.Error as exc:
        raise SourceError(f"{f.path}: cannot read as {f.format}: {first_line(exc)}") from exc
    rows_read = con.execute(
        "SELECT count(*), max(_row) FROM batch WHERE _file_idx = ?", [f.index]
    ).fetchone()
    assert rows_read is not None
    assert (rows_read[1] or 0) < MAX_ROWS_PER_FILE, f"{f.path}: too many rows for one file"
    n_rows = int(rows_read[0])
    malformed = _malformed_csv_lines(con, f) if f.format == "csv" else []
    if malformed:
        n_rows += _insert_malformed(con, table, f, malformed)
    _file_level_violations(con, f, schema, malformed)
    return n_rows


def _malformed_csv_lines(
    con: duckdb.DuckDBPyConnection, f: SourceFile
) -> list[tuple[int, str, str, str]]:
    """Lines DuckDB's CSV reader rejected: (line, column, raw text, error), one per line."""
    rows = con.execute(
        f"SELECT line, any_value(column_name), any_value(csv_line), "
        f"min(error_type || ': ' || error_message) "
        f"FROM {q('rejects_' + str(f.index))} GROUP BY line ORDER BY line"
    ).fetchall()
    con.execute(f"DROP TABLE IF EXISTS {q('rejects_' + str(f.index))}")
    con.execute(f"DROP TABLE IF EXISTS {q('rejects_' + str(f.index) + '_scan')}")
    return [(int(r[0]), r[1], r[2], " ".join(str(r[3]).split())) for r in rows]


def _insert_malformed(
    con: duckdb.DuckDBPyConnection,
    table: contract.Table,
    f: SourceFile,
    malformed: list[tuple[int, str, str, str]],
) -> int:
    """Put malformed CSV lines into the batch as all-NULL rows, and renumber the others.

    DuckDB numbers the rows it parsed; each rejected line shifts the rows after it. With
    rejected data rows r_1 < r_2 < ... (line minus the header), a parsed row numbered n is
    really row n + #{j : r_j - j < n}.
    """
    rows = sorted(line - 1 for line, *_ in malformed)  # line 1 is the header
    adjusted = [r - j for j, r in enumerate(rows, start=1)]
    con.execute("DROP TABLE IF EXISTS malformed_adj")
    con.execute("CREATE TEMP TABLE malformed_adj (adj BIGINT)")
    con.executemany("INSERT INTO malformed_adj VALUES (?)", [[a] for a in adjusted])
    rid_base = f.index << ROW_BITS
    con.execute(
        f"UPDATE batch SET _row = _row + (SELECT count(*) FROM malformed_adj WHERE adj < batch._row) "
        f"WHERE _file_idx = {f.index}"
    )
    con.execute(f"UPDATE batch SET _rid = {rid_base}::BIGINT + _row WHERE _file_idx = {f.index}")
    for line, column, text, error in malformed:
        row = line - 1
        con.execute(
            "INSERT INTO batch (_rid, _file_idx, _row) VALUES (?, ?, ?)",
            [rid_base + row, f.index, row],
        )
        con.execute(
            "INSERT INTO viol VALUES (?, ?, 'malformed_row', ?, ?, ?)",
            [
                rid_base + row,
                RULE_ORDER["malformed_row"],
                column,
                text,
                f"line {line} (data row {row}): {error}",
            ],
        )
    return len(malformed)


def _file_level_violations(
    con: duckdb.DuckDBPyConnection,
    f: SourceFile,
    schema: FileSchema,
    malformed: list[tuple[int, str, str, str]],
) -> None:
    """A file with a wrong set of columns or a malformed line lands nothing: every row of it
    is quarantined, so the file can be fixed and ingested again as a whole."""

    def all_rows(rule: str, column: str | None, reason: str) -> None:
        con.execute(
            "INSERT INTO viol SELECT _rid, ?, ?, ?, NULL, ? FROM batch WHERE _file_idx = ?",
            [RULE_ORDER[rule], rule, column, reason, f.index],
        )

    for name in schema.missing:
        all_rows("missing_column", name, f"file has no column {name}; the contract requires it")
    for name in schema.extra:
        all_rows("extra_column", name, f"file has column {name}, which is not in the contract")
    if malformed:
        line = malformed[0][0]
        con.execute(
            "INSERT INTO viol SELECT _rid, ?, 'file_rejected', NULL, NULL, ? FROM batch "
            "WHERE _file_idx = ? AND _rid NOT IN (SELECT _rid FROM viol WHERE rule = 'malformed_row')",
            [
                RULE_ORDER["file_rejected"],
                f"file rejected as a whole: {len(malformed)} malformed line(s), first at line {line}",
                f.index,
            ],
        )


def drop_redundant_violations(
    con: duckdb.DuckDBPyConnection, missing: list[tuple[int, str]]
) -> None:
    """A malformed line breaks every rule, and a missing column makes every row 'required';
    keep only the file-level reason for those so the report stays readable."""
    con.execute(
        "DELETE FROM viol WHERE rule <> 'malformed_row' AND _rid IN "
        "(SELECT _rid FROM viol WHERE rule = 'malformed_row')"
    )
    for file_idx, column in missing:
        con.execute(
            f"DELETE FROM viol WHERE rule = 'required' AND column_name = ? AND (_rid >> {ROW_BITS}) = ?",
            [column, file_idx],
        )


def ts_literal(moment: datetime) -> str:
    assert moment.tzinfo is not None, "timestamps must be timezone-aware"
    return f"TIMESTAMPTZ '{moment.astimezone(timezone.utc).isoformat()}'"


def row_rule_statements(table: contract.Table, raw_columns: set[str], now: datetime) -> list[str]:
    """INSERT INTO viol statements for every per-row rule of the contract."""
    earliest = datetime(contract.MIN_EVENT_YEAR, 1, 1, tzinfo=timezone.utc)
    stmts = []

    def add(rule: str, column: str, value_sql: str, reason_sql: str, where: str) -> None:
        stmts.append(
            f"INSERT INTO viol SELECT _rid, {RULE_ORDER[rule]}, {lit(rule)}, {lit(column)}, "
            f"{value_sql}, {reason_sql} FROM batch WHERE {where}"
        )

    for c in table.columns:
        col = q(c.name)
        target = duck_type(c)
        text = f"CAST({col} AS VARCHAR)"
        if c.name in raw_columns:
            raw = q("_raw_" + c.name)
            text = f"COALESCE({raw}, {text})"  # the value as written in the file
            add(
                "type",
                c.name,
                raw,
                lit(f"not a valid {TYPE_NAMES[target]}"),
                f"{col} IS NULL AND {raw} IS NOT NULL",
            )
            null_where = f"{col} IS NULL AND {raw} IS NULL"
        else:
            null_where = f"{col} IS NULL"
        if not c.nullable:
            add("required", c.name, "NULL", lit("required, but empty/null"), null_where)
        if c.allowed is not None:
            allowed = ", ".join(lit(v) for v in c.allowed)
            add(
                "allowed",
                c.name,
                text,
                lit("must be one of " + ", ".join(c.allowed)),
                f"{col} NOT IN ({allowed})",
            )
        if c.min_value is not None:
            add(
                "min_value",
                c.name,
                text,
                lit(f"must be >= {c.min_value}"),
                f"{col} < {c.min_value}",
            )
        if c.type == contract.TIMESTAMP:
            add(
                "too_early",
                c.name,
                text,
                lit(f"before {earliest.date()} (MIN_EVENT_YEAR)"),
                f"{col} < {ts_literal(earliest)}",
            )
            add(
                "future",
                c.name,
                text,
                lit(f"in the future (now = {now.isoformat()})"),
                f"{col} > {ts_literal(now)}",
            )
        if c.not_before is not None:
            other = q(c.not_before)
            add(
                "not_before",
                c.name,
                text,
                f"'must be >= {c.not_before} (' || CAST({other} AS VARCHAR) || ')'",
                f"{col} < {other}",
            )
    return stmts


def reference_statements(table: contract.Table) -> list[tuple[str, str, str]]:
    """(column, referenced table, referenced column) for every reference rule."""
    out = []
    for c in table.columns:
        if c.references is not None:
            ref_table, ref_column = c.references.split(".")
            assert ref_table != table.name, "self-references are not supported"
            assert contract.TABLE_ORDER.index(ref_table) < contract.TABLE_ORDER.index(table.name)
            out.append((c.name, ref_table, ref_column))
    return out


def add_reference_violations(
    con: duckdb.DuckDBPyConnection, column: str, known_table: str, ref: str
) -> None:
    """Rows whose `column` is not among the known keys (`known_table`, one column k)."""
    con.execute(
        f"INSERT INTO viol SELECT b._rid, {RULE_ORDER['reference']}, 'reference', {lit(column)}, "
        f"b.{q(column)}, {lit('no such ' + ref + ' in the lake')} "
        f"FROM batch b ANTI JOIN {known_table} k ON b.{q(column)} = k.k WHERE b.{q(column)} IS NOT NULL"
    )


def add_key_checks(
    con: duckdb.DuckDBPyConnection, table: contract.Table, lake_files: list[str]
) -> None:
    """Unique keys, among the rows that pass every other rule.

    - key already in the lake: identical row -> skipped (counted, not quarantined: this is
      what makes re-ingesting a file a no-op); different values -> key_in_lake.
    - key repeated within the batch: the first occurrence (file order, row order) lands; a
      later identical copy is skipped, a later different row is duplicate_key.
    """
    key = q(table.primary_key)
    cols = table.column_names
    # Rows out of the key checks: those already quarantined (few, normally), then lake hits.
    con.execute("DROP TABLE IF EXISTS excluded")
    con.execute("CREATE TEMP TABLE excluded AS SELECT DISTINCT _rid FROM viol")

    def survivors() -> str:
        (n_excluded,) = con.execute("SELECT count(*) FROM excluded").fetchone() or (0,)
        return "(SELECT * FROM batch ANTI JOIN excluded USING (_rid))" if n_excluded else "batch"

    if lake_files:
        files = ", ".join(lit(p) for p in lake_files)
        same = " AND ".join(f"b.{q(c)} IS NOT DISTINCT FROM l.{q(c)}" for c in cols)
        con.execute("DROP TABLE IF EXISTS lake_hits")
        con.execute(
            f"CREATE TEMP TABLE lake_hits AS SELECT b._rid, b.{key} AS k, ({same}) AS same "
            f"FROM {survivors()} b JOIN read_parquet([{files}]) l ON b.{key} = l.{key}"
        )
        con.execute("INSERT INTO skipped SELECT _rid, 'already_in_lake' FROM lake_hits WHERE same")
        con.execute(
            f"INSERT INTO viol SELECT _rid, {RULE_ORDER['key_in_lake']}, 'key_in_lake', "
            f"{lit(table.primary_key)}, k, 'key already in the lake with different values' "
            f"FROM lake_hits WHERE NOT same"
        )
        con.execute("INSERT INTO excluded SELECT _rid FROM lake_hits")
    candidates = survivors()
    con.execute("DROP TABLE IF EXISTS dup_keys")
    con.execute(
        f"CREATE TEMP TABLE dup_keys AS SELECT {key} AS k FROM {candidates} GROUP BY {key} HAVING count(*) > 1"
    )
    (n_dup,) = con.execute("SELECT count(*) FROM dup_keys").fetchone() or (0,)
    if n_dup == 0:
        return
    row = "row(" + ", ".join(q(c) for c in cols) + ")"
    con.execute("DROP TABLE IF EXISTS dup_rows")
    con.execute(
        f"CREATE TEMP TABLE dup_rows AS SELECT _rid, k, first_rid, same FROM ("
        f"  SELECT b._rid, b.{key} AS k, first_value(b._rid) OVER w AS first_rid,"
        f"    {row} IS NOT DISTINCT FROM first_value({row}) OVER w AS same, row_number() OVER w AS rn"
        f"  FROM {candidates} b"
        f"  SEMI JOIN dup_keys d ON b.{key} = d.k"
        f"  WINDOW w AS (PARTITION BY b.{key} ORDER BY b._rid)"
        f") WHERE rn > 1"
    )
    con.execute("INSERT INTO skipped SELECT _rid, 'repeated_in_batch' FROM dup_rows WHERE same")
    con.execute(
        f"INSERT INTO viol SELECT d._rid, {RULE_ORDER['duplicate_key']}, 'duplicate_key', "
        f"{lit(table.primary_key)}, d.k, 'key first seen at ' || f.path || ' row ' || "
        f"CAST(first._row AS VARCHAR) || ' (that row lands; this one differs)' "
        f"FROM dup_rows d JOIN batch first ON first._rid = d.first_rid "
        f"JOIN files f ON f._file_idx = first._file_idx WHERE NOT d.same"
    )
