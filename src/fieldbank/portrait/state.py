"""Incremental portrait state: the payment families' window sums and the pair state kept as
running totals in the lake, and the bills family as per-party partials, so the latest
portrait costs one new day, not a year of rollups.

State for as_of S, in `lake_dir/_portrait_state/` (DuckDB only):

- `windows-<S>-<id>.arrow`: party_id + every payment window of `pipeline.ALL_WINDOWS` as of S
  + the customer aggregates (pairstate.AGGREGATES) (Arrow IPC, memory-mapped; updated in
  numpy, so a day does not rewrite and commit a 100k x 59 table in DuckDB, which measured
  0.5 s of the 1.1 s advance at 5M payments);
- `pairs-<date>-<id>.arrow` + `overlay-<S>-<id>.arrow`: per (payee, payer) with a purchase in
  [S - 365, S): days, amount, last day, as a base and an overlay of the pairs changed since
  (pairstate.py: a day's changes are found by binary search, only the overlay is rewritten);
- `days-<id>/<day>.arrow`: party x day measures (windows.MEASURES) of each day of
  [S - 365, S), the days that can still leave a window: one small file per day, so the 14
  boundary days of an advance are 14 memory maps;
- `state.duckdb`: `bills_partials` (one row per party, families/bills.py `partials`),
  `bills_events` (party, date of a future bill event), `bills_rows` (a copy of the lake's
  bills sorted by party: a day's ~2.6k parties' bills are found in it in half the time of a
  scan of the Parquet files) and `meta` (S, the definitions'
  fingerprint, the payment and bills files consumed, and the names of the current windows,
  pairs and overlay files and days directory).

Advancing S -> S + 1 (new day S): the new day's measures are written; for each window
[N - from, N - to) of the new as_of N = S + 1 the day N - 1 - to enters and N - 1 - from
leaves, so each running total changes by (measure that day) - (measure that day); the pair
state adds the new day's pairs and subtracts the pairs of the day leaving the 365-day window
(a pair whose day count reaches 0 is dropped; its last day is then the leaving day, so
`last_day` stays exact) and the customer aggregates change by the touched pairs' deltas. 14
distinct boundary days are read, whatever the history.

Bills: a bill's contribution to a party's partials changes only on its event days (due, a
whole day late, paid as known, out of the 90- and 365-day windows; `bills.events`), and the
days late of unpaid bills grow by one a day, which `bills.finish` adds in closed form. So
only the parties with an event in (S, N], or with a bill in a new bills file, are
recomputed from their bills; a changed or removed bills file (an edit after the fact)
rebuilds the bills partials.

Point in time and staleness: the state only ever holds days < S. If a payment file that the
state consumed changed or went away, or a new file has events before S (late arrivals,
corrections), the state is rebuilt from the rollups; so is it when the feature definitions
change (fingerprint). One writer at a time per lake (the CLI); an advance is one DuckDB
transaction whose meta names the new state files (written first, under new names), so a
crash leaves the previous state; files no longer named are deleted after the commit.

Invoices, loans and parties are read as of D each time: supply chain (distress of other
parties, PageRank over the whole graph, a 90th percentile), credit and region are
recomputed (PageRank in memory: graph.pagerank_local). `latest_portrait` = the state
advanced to D + those families, through the same `finish` formulas as the full path, so it
equals a full recompute (tests/portrait/test_portrait_state.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fieldbank.portrait import rollups
from fieldbank.portrait.engine import configure_duckdb, date_literal, duckdb_sql, one_chunk, parquet_files
from fieldbank.portrait.families import bills
from fieldbank.portrait.inputs import AsOf, Inputs, load_inputs
from fieldbank.portrait.cursors import CursorPool
from fieldbank.portrait.raw_invoices import raw_supply_chain
from fieldbank.portrait.pairstate import AGGREGATES, PairState, Pairs, aggregate_tables, full_aggregates, pair_keys
from fieldbank.portrait.pipeline import (
    ALL_WINDOWS,
    execute_portrait,
    finish_started_portrait,
    start_payment_families,
    start_portrait,
)
from fieldbank.portrait.sqlcache import SqlTemplates, cache_key
from fieldbank.portrait.windows import (
    MAX_WINDOW_DAYS,
    MEASURES,
    PaymentAggregates,
    day_measures,
    pair_state,
    window_sums,
)

STATE_VERSION = 9  # 8: pairs (base + overlay) and customer aggregates in numpy (pairstate.py); 9: bills_rows
MAX_ADVANCE_DAYS = 31  # further than this from the state's date: rebuild (cheaper than 31+ advances)
STATE_DIR = "_portrait_state"


def state_path(lake_dir: Path) -> Path:
    return Path(lake_dir) / STATE_DIR / "state.duckdb"


def _measures_used() -> tuple[str, ...]:
    return tuple(dict.fromkeys(w.measure for w in ALL_WINDOWS))


def definitions_fingerprint() -> str:
    """Changes whenever a window, a measure's name or the state layout changes."""
    spec = [STATE_VERSION, [(w.name, w.measure, w.from_days_ago, w.to_days_ago) for w in ALL_WINDOWS],
            list(MEASURES)]
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StateUpdate:
    """What `latest_portrait` did to the state: 'built' (from the rollups), 'advanced' (by
    `days` days), or 'current' (already at the date)."""

    action: str
    reason: str
    from_as_of: dt.date | None
    as_of: dt.date
    days: int
    bills: str = ""  # what was done to the bills partials: "built: <why>", "<n> parties recomputed", "current"
    rollups: rollups.RollupUpdate | None = None  # the rollups' update, made first


def _connect(lake_dir: Path) -> ibis.BaseBackend:
    path = state_path(lake_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = ibis.duckdb.connect(str(path))
    configure_duckdb(con)
    # A day's queries are small and run side by side, one per thread of ours (cursors.py): each
    # runs on its caller's thread. With DuckDB's shared worker threads, the state's small
    # queries on the critical path waited behind the pool's (a 27 ms-CPU query took 0.2 s),
    # and a day measured 0.70-0.85 s against 0.70-0.77 s. A rebuild resets it (_update_state).
    con.raw_sql("SET threads = 1")
    return con


def _manifest_files(lake_dir: Path) -> dict[str, dict]:
    manifest = rollups.rollups_dir(lake_dir) / "_manifest.json"
    return json.loads(manifest.read_text())["files"] if manifest.exists() else {}


def _read_meta(con: ibis.BaseBackend) -> dict | None:
    # Raw DuckDB: Ibis' list_tables does not work with this DuckDB version.
    raw = con.con  # noqa: SLF001 - the DuckDB connection under the Ibis backend
    exists = raw.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'meta' AND NOT temporary").fetchone()
    if not exists or exists[0] == 0:
        return None
    row = raw.execute("SELECT doc FROM meta").fetchone()
    return json.loads(row[0]) if row else None


def _stale_reason(meta: dict | None, files_now: dict[str, dict], as_of: dt.date,
                  lake_dir: Path | None = None) -> str | None:
    """Why the stored state cannot be advanced to `as_of`, or None if it can."""
    if meta is None:
        return "no state"
    if meta["fingerprint"] != definitions_fingerprint():
        return "feature definitions changed"
    state_as_of = dt.date.fromisoformat(meta["as_of"])
    if lake_dir is not None and not all((state_path(lake_dir).parent / meta.get(k, "-")).exists()
                                        for k in ("windows_file", "pairs_file", "overlay_file", "days_dir")):
        return "window totals, pairs or day measures missing"
    if as_of < state_as_of:
        return f"state is at {state_as_of}, later than {as_of}"
    if (as_of - state_as_of).days > MAX_ADVANCE_DAYS:
        return f"state is {(as_of - state_as_of).days} days old (> {MAX_ADVANCE_DAYS})"
    seen: dict[str, dict] = meta["files"]
    for rel, old in seen.items():
        new = files_now.get(rel)
        if new is None or (new["size"], new["mtime_ns"]) != (old["size"], old["mtime_ns"]):
            return f"payment file {rel} changed or was removed"
    for rel, new in files_now.items():
        if rel not in seen and new.get("first_day") and dt.date.fromisoformat(new["first_day"]) < state_as_of:
            return f"new payment file {rel} has events before {state_as_of}"
    return None


def _write_meta(con: ibis.BaseBackend, as_of: dt.date, files: dict[str, dict], state_files: dict[str, str],
                days_dir: str, bills_files: dict[str, list[int]]) -> None:
    doc = json.dumps({"as_of": as_of.isoformat(), "fingerprint": definitions_fingerprint(), "files": files,
                      **state_files, "days_dir": days_dir, "bills_files": bills_files})
    con.con.execute("CREATE OR REPLACE TABLE meta AS SELECT ?::VARCHAR AS doc", [doc])  # noqa: SLF001


# Raw SQL for writes: Ibis' create_table(overwrite=True) emits SQL this DuckDB rejects, and the
# state tables must be persistent (not temp) and written inside the caller's transaction.
def _create(con: ibis.BaseBackend, name: str, expr: ir.Table) -> None:
    con.raw_sql(f'CREATE OR REPLACE TABLE "{name}" AS {duckdb_sql(con, expr)}')


def _insert(con: ibis.BaseBackend, name: str, expr: ir.Table) -> None:
    cols = ", ".join(f'"{c}"' for c in expr.columns)
    con.raw_sql(f'INSERT INTO "{name}" ({cols}) {duckdb_sql(con, expr)}')


EPOCH_DAY = dt.date(1970, 1, 1)
@dataclass
class _Windows:
    """party_windows in memory: party ids and one int64 numpy array per window (same order).
    The arrays have spare rows beyond the parties (`cols[k][:len(parties)]` are the totals), so
    a day's new parties are appended without copying 59 x 100k numbers (0.05 s at 5M)."""

    parties: pa.Array
    cols: dict[str, np.ndarray]

    @classmethod
    def from_table(cls, t: pa.Table) -> _Windows:
        n = t.num_rows
        cols = {}
        for name in _WINDOW_COLUMNS:
            col = np.empty(n + _spare_rows(n), np.int64)  # one pass: np.zeros would write every page twice
            col[:n] = t[name].to_numpy(zero_copy_only=False)
            col[n:] = 0
            cols[name] = col
        return cls(one_chunk(t["party_id"]), cols)

    def _append(self, new: pa.Array) -> int:
        """Append parties with zero windows; returns the first new row."""
        first = len(self.parties)
        self.parties = pa.concat_arrays([self.parties, new.cast(self.parties.type)])
        if len(self.parties) > len(next(iter(self.cols.values()))):
            n = len(self.parties)
            self.cols = {k: np.concatenate([v[:first], np.zeros(n - first + _spare_rows(n), np.int64)])
                         for k, v in self.cols.items()}
        return first

    def index_of(self, party_ids: pa.ChunkedArray) -> np.ndarray:
        """Row of each party id, parties not seen before appended with zero windows."""
        idx = pc.index_in(party_ids, value_set=self.parties)
        if idx.null_count:
            self._append(pc.unique(party_ids.filter(pc.is_null(idx)).combine_chunks()))
            idx = pc.index_in(party_ids, value_set=self.parties)
        return idx.to_numpy(zero_copy_only=False)

    def rows_table(self) -> pa.Table:
        """(party_id, party_row): each party's row, for a join in DuckDB."""
        return pa.table({"party_id": self.parties, "party_row": pa.array(np.arange(len(self.parties), dtype=np.int32))})

    def rows_of_unseen(self, party_ids: pa.Array) -> np.ndarray:
        """Rows of party ids none of which is in the windows yet: appended with zero windows."""
        new = pc.unique(party_ids)
        first = self._append(new)
        return first + pc.index_in(party_ids, value_set=new).to_numpy(zero_copy_only=False)

    def table(self) -> pa.Table:
        n = len(self.parties)
        return pa.table({"party_id": self.parties, **{name: self.cols[name][:n] for name in _WINDOW_COLUMNS}})


# The windows file: every window's running total, then the customer aggregates (pairstate.py).
_WINDOW_COLUMNS = (*(w.name for w in ALL_WINDOWS), *AGGREGATES)


def _spare_rows(parties_n: int) -> int:
    return 1024 + parties_n // 50


def _day_schema() -> pa.Schema:
    """A day file of the day measures: the party's row in the windows file (`party_row`, stable:
    parties are only appended, and a rebuild rewrites both) + one int64 per measure, so an
    advance reads the boundary days without looking 140k party ids up again."""
    return pa.schema([pa.field("party_row", pa.int32()), *(pa.field(m, pa.int64()) for m in _measures_used())])


def _day_table(windows: _Windows, t: pa.Table) -> pa.Table:
    """Day measures keyed by party_id -> the day file's columns (party_row)."""
    rows = pa.array(windows.index_of(t["party_id"]).astype(np.int32))
    return t.drop_columns(["party_id"]).add_column(0, "party_row", rows).select(_day_schema().names).cast(_day_schema())


def _state_file(lake_dir: Path, kind: str, as_of: dt.date) -> Path:
    return state_path(lake_dir).parent / f"{kind}-{as_of.isoformat()}-{uuid.uuid4().hex[:8]}.arrow"


def _write_arrow(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    os.replace(tmp, path)


def _read_arrow(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _build(con: ibis.BaseBackend, inp: Inputs, as_of: dt.date, days_dir: Path) -> tuple[_Windows, PairState]:
    """The state as of `as_of`, from the rollups (the full path's definitions); the day
    measures go to `days_dir`, the windows and the pairs are returned (the caller writes them)."""
    a = AsOf(as_of)
    sums = con.con.sql(duckdb_sql(con, window_sums(inp.party_day, a, ALL_WINDOWS))).to_arrow_table()  # noqa: SLF001
    for name in AGGREGATES:  # the customer aggregates: set below, from the pairs
        sums = sums.append_column(name, pa.array(np.zeros(sums.num_rows, np.int64)))
    windows = _Windows.from_table(sums)
    con.raw_sql("DROP TABLE IF EXISTS party_windows")  # state version 2 kept them in the database
    con.raw_sql("DROP TABLE IF EXISTS day_measures")  # state version 2 kept them in the database
    r = inp.party_day
    r = r.filter(r.day < a.date, r.day >= a.start_date(MAX_WINDOW_DAYS))
    t = con.con.sql(duckdb_sql(con, day_measures(r, _measures_used()).order_by("day", "party_id"))).to_arrow_table()  # noqa: SLF001
    day_num = t["day"].cast(pa.int32()).to_numpy()
    t = _day_table(windows, t.drop_columns(["day"]))
    for k in range(MAX_WINDOW_DAYS, 0, -1):  # one file per day, empty files for days without payments
        day = as_of - dt.timedelta(days=k)
        n = (day - EPOCH_DAY).days
        lo, hi = np.searchsorted(day_num, n, "left"), np.searchsorted(day_num, n, "right")
        _write_arrow(days_dir / f"{day}.arrow", t.slice(lo, hi - lo))
    for table in ("pair_state", "payee_aggregates", "payer_aggregates"):  # state version <= 6 kept them here
        con.raw_sql(f"DROP TABLE IF EXISTS {table}")
    t = _with_party_rows(con, windows,
                         f"SELECT r1.party_row AS payee_row, r2.party_row AS payer_row, p.days_n::BIGINT AS days_n, "
                         "p.amount_minor::BIGINT AS amount_minor, p.last_day "  # SUM is a HUGEINT: a checked cast
                         f"FROM ({duckdb_sql(con, pair_state(inp.pair_day, a))}) p "
                         f"LEFT JOIN {PARTY_ROWS} r1 ON p.payee_id = r1.party_id "
                         f"LEFT JOIN {PARTY_ROWS} r2 ON p.payer_id = r2.party_id")
    pairs = PairState.from_columns(
        pair_keys(*(_rows_array(t[c]) for c in ("payee_row", "payer_row"))),
        t["days_n"].to_numpy(), t["amount_minor"].to_numpy(), _day_numbers(t["last_day"]))
    n = len(windows.parties)
    for name, values in full_aggregates(pairs.base, n, as_of).items():
        windows.cols[name][:n] = values
    return windows, pairs


PARTY_ROWS = "_state_party_rows"  # (party_id, party_row): the window totals' rows, for a join in DuckDB


def _with_party_rows(con: ibis.BaseBackend, windows: _Windows, sql: str) -> pa.Table:
    """The Arrow result of `sql`, which joins PARTY_ROWS to find each party's row in `windows`."""
    raw = con.con  # noqa: SLF001
    raw.register(PARTY_ROWS, windows.rows_table())
    try:
        return raw.sql(sql).to_arrow_table()
    finally:
        raw.unregister(PARTY_ROWS)


def _rows_array(rows: pa.ChunkedArray) -> np.ndarray:
    """Party rows from a LEFT JOIN on the window totals' rows; -1 (refused by pair_keys) where
    a party has none."""
    return rows.combine_chunks().fill_null(-1).to_numpy()


def _day_numbers(days: pa.ChunkedArray) -> np.ndarray:
    return days.combine_chunks().cast(pa.int32()).to_numpy()


def _new_day(a: AsOf) -> dt.date:
    return a.day - dt.timedelta(days=1)


def _leave_day(a: AsOf) -> dt.date:  # the day leaving the 365-day window when as_of becomes a.day
    return a.day - dt.timedelta(days=MAX_WINDOW_DAYS + 1)


def _advance_one_day(con: ibis.BaseBackend, lake_dir: Path, new_as_of: dt.date, windows: _Windows,
                     pairs: PairState, days_dir: Path, cache: SqlTemplates) -> None:
    """The state from as_of new_as_of - 1 to new_as_of (the new day is new_as_of - 1)."""
    new_day = new_as_of - dt.timedelta(days=1)
    r = rollups.rollup_days_files(con, lake_dir, "party_day", [new_day], "state_party_day_days")

    def measures(a: AsOf) -> ir.Table:
        return day_measures(rollups.filter_days(r, [_new_day(a)]), _measures_used())

    # Each party's row in the windows by a join in DuckDB (a hash of the day's ~20k parties,
    # probed by the windows' 100k), not by hashing the 100k ids in Arrow (0.1-0.16 s at 5M).
    t = _with_party_rows(con, windows,
                         f"SELECT m.*, r.party_row FROM ({cache.sql(con, 'state_day_measures', measures, new_as_of)}) m "
                         f"LEFT JOIN {PARTY_ROWS} r ON m.party_id = r.party_id")
    rows = t["party_row"].combine_chunks()
    if rows.null_count:  # parties with their first payments: appended to the windows
        unseen = pc.is_null(rows)
        new_rows = windows.rows_of_unseen(t["party_id"].combine_chunks().filter(unseen))
        rows = pc.replace_with_mask(rows, unseen, pa.array(new_rows.astype(np.int32)))
    day = t.drop_columns(["day", "party_id", "party_row"]).add_column(0, "party_row", rows)
    _write_arrow(days_dir / f"{new_day}.arrow", day.select(_day_schema().names).cast(_day_schema()))

    def back(days: int) -> dt.date:  # the day `days` days before the new day
        return new_day - dt.timedelta(days=days)

    # The boundary days' measures (one memory-mapped file per day), then each window's
    # running total gains its entering day and loses its leaving day, in numpy (a party has
    # one row per day, so fancy-indexed += never sees a party twice).
    boundary = sorted({back(w.to_days_ago) for w in ALL_WINDOWS} | {back(w.from_days_ago) for w in ALL_WINDOWS})
    rows = {}
    for d in boundary:  # each day's columns read in place (the files' schema: int32 rows, int64 measures)
        path = days_dir / f"{d}.arrow"
        assert path.exists(), f"{path} missing: delete {days_dir.parent} to rebuild the state"
        part = _read_arrow(path)
        rows[d] = (one_chunk(part["party_row"]).to_numpy(zero_copy_only=False),
                   {m: one_chunk(part[m]).to_numpy(zero_copy_only=False) for m in _measures_used()})
    for w in ALL_WINDOWS:
        col = windows.cols[w.name]
        i, m = rows[back(w.to_days_ago)]
        col[i] += m[w.measure]
        i, m = rows[back(w.from_days_ago)]
        col[i] -= m[w.measure]
    # Days that can no longer leave a window are deleted after the commit (update_state).
    _advance_pairs(con, lake_dir, new_as_of, windows, pairs, cache)


def _advance_pairs(con: ibis.BaseBackend, lake_dir: Path, new_as_of: dt.date, windows: _Windows, pairs: PairState,
                   cache: SqlTemplates) -> None:
    """Pairs: add the new day, subtract the day leaving the 365-day window (pairstate.py). Only
    the two days' pair rollup rows are read (~27k at 5M payments), each party's row found by a
    join on the window totals' rows; the 3.5M pairs are searched in numpy."""
    new_day = new_as_of - dt.timedelta(days=1)
    leave_day = new_as_of - dt.timedelta(days=MAX_WINDOW_DAYS + 1)
    files = rollups.rollup_days_files(con, lake_dir, "pair_day", [new_day, leave_day], "state_pair_day_days")

    def pair_changes(a: AsOf) -> ir.Table:
        changes = rollups.filter_days(files, [_new_day(a), _leave_day(a)])
        entered = changes.day == date_literal(_new_day(a))
        sign = ibis.ifelse(entered, 1, -1)
        return changes.group_by("payee_id", "payer_id").aggregate(
            d_days=sign.sum().cast("int64"),
            d_amount=(sign * changes.amount_minor).sum().cast("int64"),
            entered=entered.any(),
        )

    # SUM is a HUGEINT in DuckDB (Ibis drops the cast to int64): cast here, checked.
    t = _with_party_rows(con, windows,
                         f"SELECT r1.party_row AS payee_row, r2.party_row AS payer_row, c.d_days::BIGINT AS d_days, "
                         "c.d_amount::BIGINT AS d_amount, c.entered "
                         f"FROM ({cache.sql(con, 'state_pair_changes', pair_changes, new_as_of)}) c "
                         f"LEFT JOIN {PARTY_ROWS} r1 ON c.payee_id = r1.party_id "
                         f"LEFT JOIN {PARTY_ROWS} r2 ON c.payer_id = r2.party_id")
    pairs.apply(pair_keys(_rows_array(t["payee_row"]), _rows_array(t["payer_row"])),
                t["d_days"].to_numpy(), t["d_amount"].to_numpy(), t["entered"].to_numpy(zero_copy_only=False),
                new_day, windows.cols)


def update_state(lake_dir: Path, as_of: dt.date) -> tuple[ibis.BaseBackend, Inputs, StateUpdate]:
    """Bring the state to `as_of` (advance day by day, or rebuild; see the module doc).
    Returns the state's connection, the lake's inputs on it, and what was done."""
    con, inp, cache, rollup_update = _open(Path(lake_dir))
    update = _update_state(con, inp, cache, Path(lake_dir), as_of)
    return con, inp, dataclasses.replace(update, rollups=rollup_update)


def _open(lake_dir: Path) -> tuple[ibis.BaseBackend, Inputs, SqlTemplates, rollups.RollupUpdate]:
    """The state's connection, the lake's inputs on it (the rollups updated first, on it), the
    compiled-SQL cache and what the rollups' update did."""
    con = _connect(lake_dir)
    rollup_update = rollups.update_rollups(lake_dir, con)
    inp = load_inputs(con, lake_dir, use_rollups=True, named_views=True, update_rollups=False)
    return con, inp, sql_templates(con, inp, lake_dir), rollup_update


def _update_state(con: ibis.BaseBackend, inp: Inputs, cache: SqlTemplates, lake_dir: Path, as_of: dt.date,
                  payments_ready: Callable[[dict[str, pa.Table]], None] | None = None,
                  ) -> StateUpdate:
    """`update_state` on an opened state; the Arrow tables the portrait reads (the window
    totals, the customer aggregates: STATE_ARROW_TABLES) are left registered on `con`.
    `payments_ready(tables)` is called with them as soon as they are final (the payment
    families' queries can start): after the commit when the state advances, before the bills
    partials are updated and the state committed when it is rebuilt."""
    files_now = _manifest_files(lake_dir)
    meta = _read_meta(con)
    reason = _stale_reason(meta, files_now, as_of, lake_dir)
    state_dir = state_path(lake_dir).parent
    # The state's files (names in the meta): window totals, pairs' base and overlay.
    names = {k: None if meta is None else meta.get(k) for k in ("windows_file", "pairs_file", "overlay_file")}
    bills_files = _bills_files(lake_dir)
    bills_done: str | None = None
    con.raw_sql("BEGIN TRANSACTION")
    try:
        windows: _Windows | None = None
        pairs: PairState | None = None
        if reason is not None:
            con.raw_sql("RESET threads")  # a rebuild's queries are big: every core
            days_dir = state_dir / f"days-{uuid.uuid4().hex[:8]}"
            days_dir.mkdir()
            windows, pairs = _build(con, inp, as_of, days_dir)
            update = StateUpdate("built", reason, None, as_of, 0)
        else:
            assert meta is not None and all(names.values())
            days_dir = state_dir / meta["days_dir"]
            start = dt.date.fromisoformat(meta["as_of"])
            days = (as_of - start).days
            if days:
                # The advance writes only files: it runs in a thread, its queries on a cursor of
                # the state's database, while this thread updates the bills partials in the
                # transaction (~0.1 s each a day at 5M payments; side by side, the bills no
                # longer compete with the payment families' queries after the advance).
                cursor = ibis.duckdb.from_connection(con.con.cursor())  # noqa: SLF001 - UTC, as con
                try:
                    with ThreadPoolExecutor(1, thread_name_prefix="portrait-advance") as advancing:
                        advanced = advancing.submit(_advance_days, cursor, lake_dir, state_dir, names, days_dir,
                                                    start, days, cache)
                        bills_done = _update_bills(con, inp, lake_dir, meta, reason, as_of, bills_files, cache)
                        windows, pairs = advanced.result()
                finally:
                    cursor.disconnect()
            update = StateUpdate("advanced" if days else "current", "new days" if days else "", start, as_of, days)
        if windows is not None and pairs is not None:  # new files, named in the meta of the same transaction
            base_changed = reason is not None or pairs.needs_compaction()
            if base_changed and pairs.overlay.key.size:  # (a built state's overlay is empty)
                pairs.compact()
            for kind, key, table in (("windows", "windows_file", windows.table()),
                                     ("pairs", "pairs_file", pairs.base.table() if base_changed else None),
                                     ("overlay", "overlay_file", pairs.overlay.table())):
                if table is not None:
                    path = _state_file(lake_dir, kind, as_of)
                    _write_arrow(path, table)
                    names[key] = path.name
        tables = _arrow_tables(state_dir / str(names["windows_file"]))
        if bills_done is None:
            if payments_ready is not None:
                payments_ready(tables)
            bills_done = _update_bills(con, inp, lake_dir, meta, reason, as_of, bills_files, cache)
        update = dataclasses.replace(update, bills=bills_done)
        assert all(names.values())
        _write_meta(con, as_of, files_now, names, days_dir.name, bills_files)
        con.raw_sql("COMMIT")
    except BaseException:
        con.raw_sql("ROLLBACK")
        raise
    if update.action == "advanced" and payments_ready is not None:
        payments_ready(tables)
    for kind in ("windows", "pairs", "overlay"):  # only the committed files are kept
        for old in state_dir.glob(f"{kind}-*.arrow"):
            if old.name not in names.values():
                old.unlink(missing_ok=True)
    for old_dir in state_dir.glob("days-*"):
        if old_dir.name != days_dir.name:
            shutil.rmtree(old_dir, ignore_errors=True)
    oldest = as_of - dt.timedelta(days=MAX_WINDOW_DAYS)  # days that can no longer leave a window
    for path in days_dir.glob("*.arrow"):
        if dt.date.fromisoformat(path.stem) < oldest:
            path.unlink()
    cache.save()  # templates made by this update (the portrait's are saved after it)
    for name, table in tables.items():
        con.con.register(name, table)  # noqa: SLF001
    return update


def _advance_days(con: ibis.BaseBackend, lake_dir: Path, state_dir: Path, names: dict[str, str | None],
                  days_dir: Path, start: dt.date, days: int, cache: SqlTemplates) -> tuple[_Windows, PairState]:
    """The window totals and the pairs (files named in `names`) advanced from `start` by `days`."""
    windows = _Windows.from_table(_read_arrow(state_dir / str(names["windows_file"])))
    pairs = PairState(*(Pairs.from_table(_read_arrow(state_dir / str(names[k]))) for k in ("pairs_file", "overlay_file")))
    for k in range(1, days + 1):
        _advance_one_day(con, lake_dir, start + dt.timedelta(days=k), windows, pairs, days_dir, cache)
    return windows, pairs


def _arrow_tables(windows_file: Path) -> dict[str, pa.Table]:
    """STATE_ARROW_TABLES: the window totals from the file (memory-mapped, no copy) and the
    customer aggregates' tables from its columns."""
    window_totals = _read_arrow(windows_file)
    payees, payers = aggregate_tables(one_chunk(window_totals["party_id"]),
                                      {name: one_chunk(window_totals[name]).to_numpy() for name in AGGREGATES})
    return dict(zip(STATE_ARROW_TABLES, (window_totals, payees, payers), strict=True))


# The state's Arrow tables the portrait's queries read, by name (registered on the connection).
STATE_ARROW_TABLES = ("party_windows", "payee_aggregates", "payer_aggregates")


def _bills_files(lake_dir: Path) -> dict[str, list[int]]:
    """The bills table's files (relative path -> [size, mtime_ns]): new, changed or removed
    files are how edits after the fact (a bill paid, a correction) reach the state."""
    root = Path(lake_dir) / "bills"
    out = {}
    for path in parquet_files(root):
        st = path.stat()
        out[str(path.relative_to(root))] = [st.st_size, st.st_mtime_ns]
    return out


def _update_bills(con: ibis.BaseBackend, inp: Inputs, lake_dir: Path, meta: dict | None, rebuild: str | None,
                  as_of: dt.date, files_now: dict[str, list[int]], cache: SqlTemplates) -> str:
    """Bring `bills_partials` (families/bills.py partials, one row per party) to `as_of`.

    Rebuilt from all bills when the state is rebuilt or a bills file the state read changed
    or disappeared (an edit after the fact: rows changed in place). Otherwise only the
    parties with a bill event (bills.events: due, late, paid, out of a window) in
    (S, as_of], or with a bill in a new file, are recomputed from their bills; every other
    party's partials are unchanged by construction, and `bills.finish` adds the days that
    pass in closed form."""
    seen = None if meta is None else meta.get("bills_files")
    if rebuild is None and seen is None:
        rebuild = "no bills state"
    if rebuild is None and any(files_now.get(rel) != old for rel, old in seen.items()):
        rebuild = "a bills file changed or was removed"
    if rebuild is not None:
        con.raw_sql(f"CREATE OR REPLACE TABLE bills_rows AS {duckdb_sql(con, inp.bills.order_by('party_id'))}")
        _create(con, "bills_partials", bills.partials(con.table("bills_rows"), AsOf(as_of)))
        _create(con, "bills_events", bills.events(inp.bills).order_by("day"))
        con.raw_sql(f"DELETE FROM bills_events WHERE day <= DATE '{as_of}'")
        return f"built: {rebuild}"
    assert meta is not None and seen is not None
    start = dt.date.fromisoformat(meta["as_of"])
    new_files = [Path(lake_dir) / "bills" / rel for rel in sorted(files_now) if rel not in seen]
    if start == as_of and not new_files:
        return "current"
    con.raw_sql(f"CREATE OR REPLACE TEMP TABLE _bills_dirty AS SELECT DISTINCT party_id FROM bills_events "
                f"WHERE day > DATE '{start}' AND day <= DATE '{as_of}'")
    if new_files:
        new = con.read_parquet([str(f) for f in new_files], hive_partitioning=False).select(
            *inp.bills.columns)
        con.raw_sql(f"INSERT INTO _bills_dirty SELECT DISTINCT party_id FROM ({duckdb_sql(con, new)})")
        _insert(con, "bills_events", bills.events(new))
        _insert(con, "bills_rows", new)

    def fresh(a: AsOf) -> ir.Table:
        return bills.partials(con.table("bills_rows").semi_join(con.table("_bills_dirty"), "party_id"), a)

    con.raw_sql("DELETE FROM bills_partials WHERE party_id IN (SELECT party_id FROM _bills_dirty)")
    con.raw_sql(f"INSERT INTO bills_partials BY NAME {cache.sql(con, 'state_bills_partials', fresh, as_of)}")
    con.raw_sql(f"DELETE FROM bills_events WHERE day <= DATE '{as_of}'")
    n = con.con.execute("SELECT count(DISTINCT party_id) FROM _bills_dirty").fetchone()  # noqa: SLF001
    return f"{n[0] if n else 0} parties recomputed"


def state_families(con: ibis.BaseBackend) -> dict[str, Callable[[AsOf], ir.Table]]:
    """The families the state keeps up to date itself, for `execute_portrait(precomputed=...)`."""
    return {bills.__name__: lambda a: bills.finish(con.table("bills_partials"), a)}


def state_aggregates(con: ibis.BaseBackend) -> PaymentAggregates:
    return PaymentAggregates(windows=con.table("party_windows"), pairs=None,
                             payees=con.table("payee_aggregates"), payers=con.table("payer_aggregates"))


def sql_templates(con: ibis.BaseBackend, inp: Inputs, lake_dir: Path) -> SqlTemplates:
    """The compiled-SQL cache of the state's updates and of the portrait from the state
    (sqlcache.py), kept in the state's directory: the lake's views, the state's tables and the
    views of the new day's rollup files (`state_*_days`, rollup schemas) have the same names
    in every run."""
    inputs = [inp.parties, inp.party_day, inp.pair_day, inp.invoices, inp.bills, inp.loans]
    key = cache_key(con, f"portrait from state, {definitions_fingerprint()}", inputs)
    return SqlTemplates.load(key, state_path(lake_dir).parent / "sql")


def portrait_from_state(con: ibis.BaseBackend, inp: Inputs, as_of: dt.date, lake_dir: Path | None = None) -> pa.Table:
    """The portrait of `as_of` from a state brought to `as_of` by `update_state`. The queries'
    compiled SQL is cached in this process and, given `lake_dir`, in the state's directory."""
    cache = sql_templates(con, inp, lake_dir) if lake_dir is not None else None
    return _portrait_from_state(con, inp, as_of, cache)


def _portrait_from_state(con: ibis.BaseBackend, inp: Inputs, as_of: dt.date, cache: SqlTemplates | None) -> pa.Table:
    if cache is None:
        return execute_portrait(inp, as_of, agg=state_aggregates(con), precomputed=state_families(con))
    # The aggregates' tables are looked up only if a query's template must be made.
    return execute_portrait(inp, as_of, agg=lambda _: state_aggregates(con), precomputed=state_families(con),
                            sql_cache=cache)


def latest_portrait(lake_dir: Path, as_of: dt.date,
                    seconds: dict[str, float] | None = None) -> tuple[pa.Table, StateUpdate]:
    """The portrait of `as_of` from the incremental state (advanced or built first); same
    columns and values as `execute_portrait` on the full path.

    The supply chain family (numpy, invoice and loan files only) starts first. When every
    query of the portrait has a cached template, the other queries that read only the lake
    (party, credit) start on the cursors' pool while the state advances (in a thread, beside
    the bills partials' update), and the payment families after the commit (cursors.py;
    docs/portrait.md, Session 8). `seconds`, if given,
    receives "open" (opening the state, updating the rollups for new payment files, the lake's
    views), "state" (that and the state's update) and "portrait" (the time after the update
    until the table is ready)."""
    lake_dir = Path(lake_dir)
    t0 = time.perf_counter()
    # The supply chain family reads only the invoice and loan files: it starts now, on the
    # core the opening leaves idle (raw_invoices.py, numpy; None: the pool runs its SQL).
    early = ThreadPoolExecutor(1, thread_name_prefix="portrait-supply-chain")
    supply_chain_rows = early.submit(raw_supply_chain, parquet_files(lake_dir / "invoices"),
                                     parquet_files(lake_dir / "loans"), as_of)
    try:
        con, inp, cache, rollup_update = _open(lake_dir)
    except BaseException:
        early.shutdown(cancel_futures=True)
        raise
    t_open = time.perf_counter() - t0
    pool = CursorPool(con)
    try:
        started = start_portrait(pool, as_of, cache, state_families(con), supply_chain_rows.result)

        def payments_ready(tables: dict[str, pa.Table]) -> None:  # the window totals and aggregates final
            if started is not None:
                for name, arrow in tables.items():
                    pool.register(name, arrow)
                start_payment_families(started)

        update = dataclasses.replace(_update_state(con, inp, cache, lake_dir, as_of, payments_ready),
                                     rollups=rollup_update)
        t1 = time.perf_counter()
        if started is None:
            table = _portrait_from_state(con, inp, as_of, cache)
        else:
            table = finish_started_portrait(started)
    finally:
        pool.close()
        early.shutdown()
        con.disconnect()
    if seconds is not None:
        seconds.update(open=t_open, state=t1 - t0, portrait=time.perf_counter() - t1)
    return table, update
