"""Compiled SQL of the portrait's queries, kept across portraits and runs (DuckDB).

Building a family's Ibis expression and compiling it costs more than running it on DuckDB
for most families (0.35-0.5 s of the 1.1 s latest portrait at 5M payments, docs/portrait.md).
A query's SQL depends on the date D only through literals derived from it, so each query is
compiled once into a *template*: compiled at a sentinel date, every literal derived from the
sentinel (the DATE and the midnight-UTC TIMESTAMPTZ k days before it, its year, its epoch
day) becomes a marker, and `render` writes the same derivation of the real date back.

The Ibis definitions stay the only definitions; the templates only store their compiled SQL:

- a template is checked when it is made: rendered at the real date and at a second sentinel
  it must equal, character for character, what Ibis compiles at those dates; otherwise it is
  not kept (that query is compiled every time, as without the cache);
- templates are keyed by a hash of the portrait package's and the data contract's source, the
  versions of Ibis, sqlglot and DuckDB, the state's definitions fingerprint, and the SQL and
  schema of every input table, so any change to a definition or an input makes a new key;
- the inputs must have the same names in every process (`load_inputs(named_views=True)`, the
  state's tables), or the key changes each run and nothing is reused.

Templates live in memory (per process) and, when given a directory, in
`<directory>/<key>.json` (the incremental state keeps them in `lake/_portrait_state/sql/`).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import ibis
import ibis.expr.types as ir
import sqlglot

from fieldbank.portrait.engine import duckdb_sql
from fieldbank.portrait.inputs import AsOf

# Far from any real date, with year, month, day and weekday all different between the two, so
# a literal derived from the date in some other way (its month, say) fails the check.
SENTINEL = dt.date(2901, 3, 17)
CHECK_DATE = dt.date(2817, 11, 5)
EPOCH = dt.date(1970, 1, 1)
MAX_OFFSET_DAYS = 4000  # a literal within this many days of the sentinel is derived from it
NOT_CACHEABLE = ""  # stored for a query whose template failed the check

_DATE = re.compile(r"MAKE_DATE\((\d+), (\d+), (\d+)\)")
_TS = re.compile(r"MAKE_TIMESTAMPTZ\((\d+), (\d+), (\d+), 0, 0, 0\.0, 'UTC'\)")
_MARK = re.compile(r"\x00(date|ts|year|epoch):(-?\d+)\x00")


def _offset(m: re.Match[str], sentinel: dt.date) -> int | None:
    """Days from the literal's date back to the sentinel, if it is near it."""
    try:
        day = dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None
    k = (sentinel - day).days
    return k if abs(k) <= MAX_OFFSET_DAYS else None


def make_template(sql: str, sentinel: dt.date = SENTINEL) -> str:
    """`sql` compiled at `sentinel` -> the template (literals derived from it -> markers)."""
    assert "\x00" not in sql

    def dates(kind: str) -> Callable[[re.Match[str]], str]:
        def sub(m: re.Match[str]) -> str:
            k = _offset(m, sentinel)
            return m[0] if k is None else f"\x00{kind}:{k}\x00"
        return sub

    out = _TS.sub(dates("ts"), _DATE.sub(dates("date"), sql))
    out = re.sub(rf"(?<![\w.]){(sentinel - EPOCH).days}(?![\w.])", "\x00epoch:0\x00", out)
    return re.sub(rf"(?<![\w.]){sentinel.year}(?![\w.])", "\x00year:0\x00", out)


def render(template: str, day: dt.date) -> str:
    """The template's SQL at `day` (each marker: the same derivation of `day`)."""
    def sub(m: re.Match[str]) -> str:
        kind, k = m[1], int(m[2])
        if kind == "year":
            return str(day.year)
        if kind == "epoch":
            return str((day - EPOCH).days)
        d = day - dt.timedelta(days=k)
        if kind == "date":
            return f"MAKE_DATE({d.year}, {d.month}, {d.day})"
        return f"MAKE_TIMESTAMPTZ({d.year}, {d.month}, {d.day}, 0, 0, 0.0, 'UTC')"

    return _MARK.sub(sub, template)


@functools.cache
def _code_fingerprint() -> str:
    """The source of every definition the SQL can depend on, and the compilers' versions."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted([*root.rglob("*.py"), root.parent / "contract.py"]):
        h.update(str(path.relative_to(root.parent)).encode())
        h.update(path.read_bytes())
    h.update(f"ibis {ibis.__version__} sqlglot {sqlglot.__version__} duckdb {duckdb.__version__}".encode())
    return h.hexdigest()


def cache_key(con: ibis.BaseBackend, context: str, inputs: list[ir.Table]) -> str:
    """The key of the templates of queries over `inputs` (their SQL and schemas are part of it)."""
    h = hashlib.sha256(_code_fingerprint().encode())
    h.update(context.encode())
    for t in inputs:
        h.update(con.compile(t).encode())
        h.update(str(t.schema()).encode())
    return h.hexdigest()[:24]


_IN_MEMORY: dict[str, dict[str, str]] = {}  # key -> query name -> template (this process)


@dataclass
class SqlTemplates:
    """The templates of one key; `sql` renders one (making it first if missing), `save` persists."""

    key: str
    directory: Path | None = None
    templates: dict[str, str] = field(default_factory=dict)
    made: int = 0  # templates made (compiled) in this object's life, for tests and profiling
    dirty: bool = False  # made templates not saved yet
    # Templates are made one at a time: the incremental state's advance and bills update (two
    # threads) may both make theirs on a state's first advance; rendering needs no lock.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def load(cls, key: str, directory: Path | None = None) -> SqlTemplates:
        templates = _IN_MEMORY.setdefault(key, {})
        on_disk = directory is not None and (Path(directory) / f"{key}.json").exists()
        if not templates and on_disk:
            try:
                templates.update(json.loads((Path(directory) / f"{key}.json").read_text()))
            except (OSError, ValueError):  # a torn or foreign file: remake the templates
                templates.clear()
        # Templates made in this process for another directory (or whose file was deleted)
        # are written to this one on the next save.
        return cls(key, directory, templates, dirty=bool(templates) and directory is not None and not on_disk)

    def sql(self, con: ibis.BaseBackend, name: str, build: Callable[[AsOf], ir.Table], day: dt.date) -> str:
        """The SQL of `build(AsOf(day))`, from its template; `build` runs only to make one."""
        template = self.templates.get(name)
        if template:
            return render(template, day)
        with self.lock:
            real = duckdb_sql(con, build(AsOf(day)))
            if self.templates.get(name) is None:  # not tried yet (NOT_CACHEABLE: tried and failed the check)
                made = make_template(duckdb_sql(con, build(AsOf(SENTINEL))))
                ok = render(made, day) == real and render(made, CHECK_DATE) == duckdb_sql(con, build(AsOf(CHECK_DATE)))
                self.templates[name] = made if ok else NOT_CACHEABLE
                self.made += 1
                self.dirty = True
            return real

    def rendered(self, name: str, day: dt.date) -> str | None:
        """The SQL of query `name` at `day` from its template, or None when there is none (not
        made yet, or not cacheable): then `sql` must compile it."""
        template = self.templates.get(name)
        return render(template, day) if template else None

    def save(self) -> None:
        """Write the templates to `directory` (atomically) if any were made; drop other keys' files."""
        if self.directory is None or not self.dirty:
            return
        directory = Path(self.directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.key}.json"
        tmp = directory / f".{self.key}.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(self.templates))
        os.replace(tmp, path)
        for old in directory.glob("*.json"):
            if old != path:
                old.unlink(missing_ok=True)
        self.dirty = False
