"""Finding the files to ingest in SRC, and grouping them into bounded batches."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fieldbank import contract
from fieldbank.lake.validate import SourceFile

FORMATS = {".parquet": "parquet", ".csv": "csv"}
# A batch is validated as one unit in DuckDB; bounding it bounds the temporary tables
# (DuckDB spills past its memory limit, but a smaller batch spills less).
DEFAULT_MAX_BATCH_BYTES = 1 << 30


def file_format(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


def discover(src: Path, table: str | None = None) -> tuple[dict[str, list[SourceFile]], list[str]]:
    """Files per table, in contract.TABLE_ORDER, plus the entries of SRC that were ignored.

    SRC may be: a directory of `<table>/` subdirectories holding *.parquet / *.csv files
    (searched recursively, e.g. raw/payments/part-00000.parquet), a directory of
    `<table>.csv` / `<table>.parquet` files, or one file (its table is --table, or its name).
    Names starting with '.' or '_' are ignored silently (_SUCCESS, .crc files).
    """
    if table is not None and table not in contract.TABLES:
        raise ValueError(
            f"unknown table {table!r}; the contract has {', '.join(contract.TABLE_ORDER)}"
        )
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist")
    found: dict[str, list[SourceFile]] = {}
    ignored: list[str] = []
    if src.is_file():
        fmt = file_format(src)
        name = table if table is not None else src.stem
        if fmt is None:
            raise ValueError(f"{src}: not a .csv or .parquet file")
        if name not in contract.TABLES:
            raise ValueError(f"{src}: cannot tell which table it holds; pass --table")
        found[name] = [SourceFile(name, src, fmt, src.stat().st_size)]
        return found, ignored
    tables = [table] if table is not None else list(contract.TABLE_ORDER)
    for entry in sorted(src.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_dir() and entry.name in contract.TABLES:
            if entry.name not in tables:
                continue
            for path in sorted(p for p in entry.rglob("*") if p.is_file()):
                if any(part.startswith((".", "_")) for part in path.relative_to(entry).parts):
                    continue
                fmt = file_format(path)
                if fmt is None:
                    ignored.append(f"{path}: not a .csv or .parquet file")
                    continue
                found.setdefault(entry.name, []).append(
                    SourceFile(entry.name, path, fmt, path.stat().st_size)
                )
        elif entry.is_file() and entry.stem in contract.TABLES and file_format(entry) is not None:
            if entry.stem in tables:
                found.setdefault(entry.stem, []).append(
                    SourceFile(entry.stem, entry, file_format(entry) or "", entry.stat().st_size)
                )
        else:
            ignored.append(
                f"{entry}: not a table of the contract ({', '.join(contract.TABLE_ORDER)})"
            )
    return {name: found[name] for name in contract.TABLE_ORDER if name in found}, ignored


def sha256_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def group_batches(files: list[SourceFile], max_batch_bytes: int) -> list[list[SourceFile]]:
    """Consecutive files up to max_batch_bytes per batch (a bigger file is a batch alone)."""
    assert max_batch_bytes > 0
    batches: list[list[SourceFile]] = []
    current: list[SourceFile] = []
    size = 0
    for f in files:
        if current and size + f.size_bytes > max_batch_bytes:
            batches.append(current)
            current, size = [], 0
        current.append(f)
        size += f.size_bytes
    if current:
        batches.append(current)
    assert sum(len(b) for b in batches) == len(files)
    return batches
