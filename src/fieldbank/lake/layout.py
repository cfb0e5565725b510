"""Where lake files live, and how a batch becomes visible atomically.

Layout of `lake_dir` (see docs/ingest.md):

    lake_dir/
      <table>  -> _versions/<table>/<version>          (a relative symlink: the live version)
      _versions/<table>/<version>/
          month=YYYY-MM/part-<batch>-<i>.parquet       (exactly the contract columns)
          _manifest.json                               (every batch and source file so far)
          _pending_quarantine/<batch>.parquet          (rejected rows, delivered after commit)
      _staging/<batch>/                                (DuckDB writes new partitions here)
      _ingest/tmp/                                     (DuckDB spill files)
      _ingest.lock                                     (one ingest at a time per lake)

Why a symlink swap: a batch touches many month partitions, and renaming files into place
one by one would let a reader (or a crash) see half a batch. Instead each batch builds a
complete new version directory (hard links to the previous version's files, which costs no
data copy, plus the batch's new files and the updated manifest) and then replaces the
`<table>` symlink with one `rename(2)`, which POSIX makes atomic. Readers that glob
`lake_dir/<table>/month=*/*.parquet` see either the old version or the new one, never a mix.
The manifest lives inside the version, so data and bookkeeping commit together.

Recovery (`recover_table`, run before every ingest): a version directory that is not live
(and not the one before it) is an uncommitted batch and is deleted; staging directories are
deleted; quarantine files of the live version that were not yet delivered are delivered.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "_manifest.json"
PENDING_QUARANTINE_DIR = "_pending_quarantine"
VERSIONS_DIR = "_versions"
STAGING_DIR = "_staging"
INGEST_DIR = "_ingest"
LOCK_NAME = "_ingest.lock"
MANIFEST_FORMAT = 1
# A table's manifest lists every batch ever committed; past this many the lake needs a
# compaction step (not built yet) rather than an ever-growing JSON file.
MAX_BATCHES_PER_TABLE = 100_000


def month_dir_name(year: int, month: int) -> str:
    assert 1 <= month <= 12, month
    return f"month={year:04d}-{month:02d}"


def table_link(lake_dir: Path, table: str) -> Path:
    return lake_dir / table


def versions_root(lake_dir: Path, table: str) -> Path:
    return lake_dir / VERSIONS_DIR / table


def staging_root(lake_dir: Path) -> Path:
    return lake_dir / STAGING_DIR


def spill_dir(lake_dir: Path) -> Path:
    return lake_dir / INGEST_DIR / "tmp"


def live_version_dir(lake_dir: Path, table: str) -> Path | None:
    """The directory of the table's live version, or None if the table has never landed."""
    link = table_link(lake_dir, table)
    if not link.is_symlink():
        assert not link.exists(), f"{link} exists but is not a lake symlink; move it away"
        return None
    target = link.resolve()
    assert target.is_dir(), f"{link} points to missing {target}"
    return target


def partition_files(version_dir: Path | None) -> list[Path]:
    """The data files of one version, sorted (month order, then batch order)."""
    if version_dir is None:
        return []
    return sorted(version_dir.glob("month=*/*.parquet"))


@dataclass
class Manifest:
    """Bookkeeping of one table version: every committed batch and the files it read."""

    table: str
    version: str | None
    previous: str | None
    batches: list[dict]

    def file_checksums(self) -> dict[str, str]:
        """sha256 -> where it was ingested, for every source file already in this table."""
        out: dict[str, str] = {}
        for batch in self.batches:
            for f in batch["files"]:
                out[f["sha256"]] = f"already ingested from {f['path']} in batch {batch['batch_id']}"
        return out

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": MANIFEST_FORMAT,
                "table": self.table,
                "version": self.version,
                "previous": self.previous,
                "batches": self.batches,
            },
            indent=1,
        )


def read_manifest(lake_dir: Path, table: str) -> Manifest:
    version_dir = live_version_dir(lake_dir, table)
    if version_dir is None:
        return Manifest(table=table, version=None, previous=None, batches=[])
    data = json.loads((version_dir / MANIFEST_NAME).read_text())
    assert data["format"] == MANIFEST_FORMAT, data["format"]
    assert data["table"] == table, (data["table"], table)
    return Manifest(
        table=table, version=data["version"], previous=data["previous"], batches=data["batches"]
    )


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: Path, text: str) -> None:
    """Write via a temporary name and rename, so the file is either old or new, never partial."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def copy_file_atomic(src: Path, dst: Path) -> None:
    """Copy src to dst under a temporary name, then rename (works across filesystems)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dst)
    fsync_dir(dst.parent)


def build_version(
    lake_dir: Path,
    table: str,
    version: str,
    staged_dir: Path | None,
    pending_quarantine: Path | None,
    manifest: Manifest,
    keep_file: Callable[[Path], bool] | None = None,
) -> Path:
    """Assemble the new version directory next to the live one; nothing is visible yet.

    Hard-links every file of the live version (those `keep_file` accepts, when given), moves the staged month partitions in, puts
    the pending quarantine file and the manifest beside them, and fsyncs.
    """
    root = versions_root(lake_dir, table)
    root.mkdir(parents=True, exist_ok=True)
    new_dir = root / version
    assert not new_dir.exists(), f"version {new_dir} already exists"
    new_dir.mkdir()
    for old_file in partition_files(live_version_dir(lake_dir, table)):
        if keep_file is not None and not keep_file(old_file):
            continue
        target = new_dir / old_file.parent.name / old_file.name
        target.parent.mkdir(exist_ok=True)
        os.link(old_file, target)
    if staged_dir is not None and staged_dir.exists():
        for staged in sorted(staged_dir.glob("month=*/*.parquet")):
            target = new_dir / staged.parent.name / staged.name
            assert not target.exists(), f"partition file {target} already exists"
            target.parent.mkdir(exist_ok=True)
            os.replace(staged, target)
    if pending_quarantine is not None:
        qdir = new_dir / PENDING_QUARANTINE_DIR
        qdir.mkdir()
        os.replace(pending_quarantine, qdir / pending_quarantine.name)
    assert len(manifest.batches) <= MAX_BATCHES_PER_TABLE, "too many batches: compact the lake"
    write_file_atomic(new_dir / MANIFEST_NAME, manifest.to_json())
    for month in new_dir.glob("month=*"):
        fsync_dir(month)
    fsync_dir(new_dir)
    return new_dir


def commit_version(lake_dir: Path, table: str, version: str) -> None:
    """The commit point: atomically point `<table>` at the new version."""
    link = table_link(lake_dir, table)
    new_dir = versions_root(lake_dir, table) / version
    assert (new_dir / MANIFEST_NAME).is_file(), f"{new_dir} is not a complete version"
    tmp_link = lake_dir / f".{table}.link.tmp"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    os.symlink(os.path.relpath(new_dir, lake_dir), tmp_link)
    os.replace(tmp_link, link)
    fsync_dir(lake_dir)


def deliver_quarantine(lake_dir: Path, quarantine_dir: Path, table: str) -> list[Path]:
    """Copy the live version's pending quarantine files to quarantine_dir/<table>/.

    Idempotent; returns the files it had to copy (none when everything was delivered).
    """
    version_dir = live_version_dir(lake_dir, table)
    if version_dir is None:
        return []
    delivered = []
    for pending in sorted((version_dir / PENDING_QUARANTINE_DIR).glob("*.parquet")):
        target = quarantine_dir / table / pending.name
        if not target.exists():
            copy_file_atomic(pending, target)
            delivered.append(target)
    return delivered


def drop_unkept_versions(lake_dir: Path, table: str) -> list[str]:
    """Delete every version except the live one and the one before it; returns what it did.

    The previous version is kept because a reader that listed files just before the last
    commit may still be reading it. Anything else is either garbage from an older commit or
    an uncommitted batch (a crash before the symlink swap).
    """
    actions: list[str] = []
    manifest = read_manifest(lake_dir, table)
    keep = {v for v in (manifest.version, manifest.previous) if v is not None}
    root = versions_root(lake_dir, table)
    if root.exists():
        for version_dir in sorted(root.iterdir()):
            if version_dir.name not in keep:
                shutil.rmtree(version_dir)
                if manifest.version is None or version_dir.name > manifest.version:
                    actions.append(f"{table}: rolled back uncommitted batch {version_dir.name}")
    return actions


def recover_table(lake_dir: Path, quarantine_dir: Path, table: str) -> list[str]:
    """Bring the table back to a clean committed state after a crash; returns what it did."""
    link = table_link(lake_dir, table)
    if link.exists() and not link.is_symlink():
        raise RuntimeError(
            f"{link} is a plain directory, not a lake managed by `fieldbank ingest`; "
            "move it away and ingest its files instead"
        )
    actions = drop_unkept_versions(lake_dir, table)
    for target in deliver_quarantine(lake_dir, quarantine_dir, table):
        actions.append(f"{table}: delivered quarantine file {target} of a committed batch")
    return actions


def clean_staging(lake_dir: Path) -> list[str]:
    """Delete staging directories left by a crashed run (their batches never committed)."""
    root = staging_root(lake_dir)
    actions = []
    if root.exists():
        for d in sorted(root.iterdir()):
            shutil.rmtree(d)
            actions.append(f"removed staging of crashed batch {d.name}")
    return actions


@contextmanager
def lake_lock(lake_dir: Path) -> Iterator[None]:
    """One ingest at a time per lake (an exclusive flock; released when the process dies)."""
    lake_dir.mkdir(parents=True, exist_ok=True)
    with open(lake_dir / LOCK_NAME, "w") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RuntimeError(f"another ingest is running on {lake_dir} (lock {fh.name})") from exc
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
