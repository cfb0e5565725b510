"""Model registry: models/<name>/<version>/ folders, and one champion at a time.

A version folder holds the model files, metadata.json (exact feature list, training window,
data fingerprint, library versions) and metrics.json. Folders are written to a temp name and
renamed into place, so a reader never sees half a model. The champion pointer
(models/champion.json) is replaced atomically too.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Callable

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")
MAX_NAME_LEN = 64
LIBRARIES = ("lightgbm", "optbinning", "scikit-learn", "numpy", "pandas", "fieldbank")


def _check_name(name: str) -> None:
    if not name or len(name) > MAX_NAME_LEN or not set(name) <= NAME_CHARS:
        raise ValueError(f"model name {name!r}: use 1-{MAX_NAME_LEN} of a-z, 0-9, '-', '_'")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib_metadata.version(lib)
        except importlib_metadata.PackageNotFoundError:
            versions[lib] = "not installed"
    return versions


def versions_of(models_dir: Path, name: str) -> list[int]:
    folder = Path(models_dir) / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def register(models_dir: Path, name: str, write_files: Callable[[Path], None], metadata: dict, metrics: dict) -> Path:
    """Write a new version of model `name`; returns its folder."""
    _check_name(name)
    base = Path(models_dir) / name
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=base))
    try:
        write_files(staging)
        version = (versions_of(models_dir, name) or [0])[-1] + 1
        metadata = {**metadata, "name": name, "version": version,
                    "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "libraries": library_versions()}
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=1, default=str))
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1))
        target = base / f"{version:04d}"
        os.rename(staging, target)  # fails if a concurrent trainer took the number: no overwrite
        return target
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def folder_of(models_dir: Path, name: str, version: int | None = None) -> Path:
    versions = versions_of(models_dir, name)
    if not versions:
        raise LookupError(f"no model named {name!r} in {models_dir}")
    version = versions[-1] if version is None else version
    if version not in versions:
        raise LookupError(f"model {name!r} has no version {version}; it has {versions}")
    return Path(models_dir) / name / f"{version:04d}"


def list_models(models_dir: Path) -> list[dict]:
    champion = get_champion(models_dir)
    rows = []
    root = Path(models_dir)
    for name_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for version in versions_of(root, name_dir.name):
            meta = json.loads((name_dir / f"{version:04d}" / "metadata.json").read_text())
            rows.append({**meta, "champion": champion == (name_dir.name, version)})
    return rows


def get_champion(models_dir: Path) -> tuple[str, int] | None:
    pointer = Path(models_dir) / "champion.json"
    if not pointer.exists():
        return None
    d = json.loads(pointer.read_text())
    return d["name"], int(d["version"])


def promote(models_dir: Path, name: str, version: int | None = None) -> Path:
    """Make name/version (default: the newest) the one champion the decision service uses."""
    folder = folder_of(models_dir, name, version)
    version = int(folder.name)
    pointer = Path(models_dir) / "champion.json"
    tmp = pointer.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"name": name, "version": version,
                               "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
    os.replace(tmp, pointer)
    return folder
