"""Incremental portrait state: the payment families' window sums and the pair state kept as
running totals in the lake, and the bills family as per-party partials, so the latest
portrait costs one new day, not a year of rollups.

State for as_of S, in `lake_dir/_portrait_state/` (DuckDB only):

- `windows-<S>-<id>.arrow`: party_id + every payment window of `pipeline.ALL_WINDOWS` as of S
  (Arrow IPC, memory-mapped; updated in numpy, so a day does not rewrite and commit a
  100k x 59 table in DuckDB, which measured 0.5 s of the 1.1 s advance at 5M payments);
- `days-<id>/<day>.arrow`: party x day measures (windows.MEASURES) of each day of
  [S - 365, S), the days that can still leave a window: one small file per day, so the 14
  boundary days of an advance are 14 memory maps;
- `state.duckdb`: `pair_state` (per (payee, payer) with a purchase in [S - 365, S): days,
  amount, last day), `payee_aggregates`, `payer_aggregates`, `bills_partials` (one row per
  party, families/bills.py `partials`), `bills_events` (party, date of a future bill event)
  and `meta` (S, the definitions' fingerprint, the payment and bills files consumed, and the
  names of the current windows file and days directory).

Advancing S -> S + 1 (new day S): the new day's measures are written; for each window
[N - from, N - to) of the new as_of N = S + 1 the day N - 1 - to enters and N - 1 - from
leaves, so each running total changes by (measure that day) - (measure that day); the pair
state adds the new day's pairs and subtracts the pairs of the day leaving the 365-day window
(a pair whose day count reaches 0 is dropped; its last day is then the leaving day, so
`last_day` stays exact). 14 distinct boundary days are read, whatever the history.

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
transaction whose meta names the new windows file (written first, under a new name), so a
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
import uuid
from dataclasses import dataclass
from pathlib import Path

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fieldbank.portrait import rollups
from fieldbank.portrait.engine import configure_duckdb, duckdb_sql, parquet_files
from fieldbank.portrait.families import bills
from fieldbank.portrait.inputs import AsOf, Inputs, load_inputs
from fieldbank.portrait.pipeline import ALL_WINDOWS, execute_portrait
from fieldbank.portrait.windows import (
    MAX_WINDOW_DAYS,
    MEASURES,
    PaymentAggregates,
    day_measures,
    pair_state,
    window_sums,
)

STATE_VERSION = 5
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


def _connect(lake_dir: Path) -> ibis.BaseBackend:
    path = state_path(lake_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = ibis.duckdb.connect(str(path))
    configure_duckdb(con)
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
                                        for k in ("windows_file", "days_dir", "pairs_file")):
        return "window totals or day measures missing"
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


def _write_meta(con: ibis.BaseBackend, as_of: dt.date, files: dict[str, dict], windows_file: str, days_dir: str,
                bills_files: dict[str, list[int]], pairs_file: str) -> None:
    doc = json.dumps({"as_of": as_of.isoformat(), "fingerprint": definitions_fingerprint(), "files": files,
                      "windows_file": windows_file, "days_dir": days_dir, "bills_files": bills_files,
                      "pairs_file": pairs_file})
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
    """party_windows in memory: party ids and one int64 numpy array per window (same order)."""

    parties: pa.Array
    cols: dict[str, np.ndarray]

    @classmethod
    def from_table(cls, t: pa.Table) -> _Windows:
        return cls(t["party_id"].combine_chunks(),
                   {w.name: t[w.name].to_numpy(zero_copy_only=False).astype(np.int64, copy=True) for w in ALL_WINDOWS})

    def index_of(self, party_ids: pa.ChunkedArray) -> np.ndarray:
        """Row of each party id, parties not seen before appended with zero windows."""
        idx = pc.index_in(party_ids, value_set=self.parties)
        if idx.null_count:
            new = pc.unique(party_ids.filter(pc.is_null(idx)).combine_chunks())
            self.parties = pa.concat_arrays([self.parties, new.cast(self.parties.type)])
            self.cols = {k: np.concatenate([v, np.zeros(len(new), np.int64)]) for k, v in self.cols.items()}
            idx = pc.index_in(party_ids, value_set=self.parties)
        return idx.to_numpy(zero_copy_only=False)

    def table(self) -> pa.Table:
        return pa.table({"party_id": self.parties, **{w.name: self.cols[w.name] for w in ALL_WINDOWS}})


PAIRS_SCHEMA = pa.schema([
    pa.field("payee", pa.dictionary(pa.int32(), pa.string())), pa.field("payer", pa.dictionary(pa.int32(), pa.string())),
    pa.field("days_n", pa.int64()), pa.field("amount_minor", pa.int64()), pa.field("last_day", pa.int32()),
])


@dataclass
class _Pairs:
    """The pair state in memory: per (payee, payer) with a purchase in the 365 days before the
    state's date, days with a purchase, amount, last day (days since 1970-01-01). Parties are
    int32 positions in `ids` (append-only), rows sorted by (payee, payer), so a day's changes
    are found by binary search and each payee's pairs are one contiguous run."""

    ids: pa.Array
    payee: np.ndarray
    payer: np.ndarray
    days_n: np.ndarray
    amount: np.ndarray
    last_day: np.ndarray

    @classmethod
    def from_pair_state(cls, t: pa.Table) -> _Pairs:
        """From `windows.pair_state` rows (payee_id, payer_id, days_n, amount_minor, last_day)."""
        ids = pc.unique(pa.chunked_array(t["payee_id"].chunks + t["payer_id"].chunks, type=pa.string()))
        out = cls(ids, pc.index_in(t["payee_id"], value_set=ids).to_numpy().astype(np.int32),
                  pc.index_in(t["payer_id"], value_set=ids).to_numpy().astype(np.int32),
                  t["days_n"].to_numpy().astype(np.int64), t["amount_minor"].to_numpy().astype(np.int64),
                  t["last_day"].cast(pa.int32()).to_numpy().astype(np.int32))
        order = np.argsort(out.keys(), kind="stable")
        for name in ("payee", "payer", "days_n", "amount", "last_day"):
            setattr(out, name, getattr(out, name)[order])
        return out

    @classmethod
    def from_file(cls, t: pa.Table) -> _Pairs:
        payee, payer = t["payee"].combine_chunks(), t["payer"].combine_chunks()
        return cls(payee.dictionary, payee.indices.to_numpy().astype(np.int32),
                   payer.indices.to_numpy().astype(np.int32),
                   *(t[c].to_numpy().astype(np.int64 if c != "last_day" else np.int32)
                     for c in ("days_n", "amount_minor", "last_day")))

    def table(self) -> pa.Table:
        return pa.table({
            "payee": pa.DictionaryArray.from_arrays(pa.array(self.payee, pa.int32()), self.ids),
            "payer": pa.DictionaryArray.from_arrays(pa.array(self.payer, pa.int32()), self.ids),
            "days_n": self.days_n, "amount_minor": self.amount, "last_day": self.last_day,
        }, schema=PAIRS_SCHEMA)

    def keys(self) -> np.ndarray:
        return (self.payee.astype(np.int64) << 32) | self.payer.astype(np.int64)

    def _index(self, party_ids: pa.Array) -> np.ndarray:
        """Positions of `party_ids` in `ids`, new ids appended."""
        idx = pc.index_in(party_ids, value_set=self.ids)
        if idx.null_count:
            new = pc.unique(party_ids.filter(pc.is_null(idx)))
            self.ids = pa.concat_arrays([self.ids, new.cast(pa.string())])
            idx = pc.index_in(party_ids, value_set=self.ids)
        return idx.to_numpy().astype(np.int64)

    def advance(self, changes: pa.Table, new_day: dt.date) -> None:
        """Add the pair_day rows of `new_day` in `changes`, subtract the others (the day
        leaving the 365-day window); pairs left with no day are dropped (their last day was
        then the leaving day, so every kept pair's last day stays exact)."""
        n = changes.num_rows
        if n == 0:
            return
        ids = pa.concat_arrays([changes["payee_id"].combine_chunks().cast(pa.string()),
                                changes["payer_id"].combine_chunks().cast(pa.string())])
        both = self._index(ids)
        ch_keys = (both[:n] << 32) | both[n:]
        entered = (changes["day"].cast(pa.int32()).to_numpy() == (new_day - EPOCH_DAY).days)
        sign = np.where(entered, 1, -1).astype(np.int64)
        uk, inv = np.unique(ch_keys, return_inverse=True)
        d_days = np.zeros(len(uk), np.int64)
        d_amount = np.zeros(len(uk), np.int64)
        ent = np.zeros(len(uk), bool)
        np.add.at(d_days, inv, sign)
        np.add.at(d_amount, inv, sign * changes["amount_minor"].to_numpy().astype(np.int64))
        ent[inv[entered]] = True
        keys = self.keys()
        pos = np.searchsorted(keys, uk)
        found = pos < len(keys)
        found[found] = keys[pos[found]] == uk[found]
        i = pos[found]
        self.days_n[i] += d_days[found]
        self.amount[i] += d_amount[found]
        self.last_day[i] = np.where(ent[found], (new_day - EPOCH_DAY).days, self.last_day[i])
        new = ~found
        assert (d_days[new] > 0).all(), "a pair left the window without being in the state: state and rollups disagree"
        at = pos[new]
        self.payee = np.insert(self.payee, at, (uk[new] >> 32).astype(np.int32))
        self.payer = np.insert(self.payer, at, (uk[new] & 0xFFFFFFFF).astype(np.int32))
        self.days_n = np.insert(self.days_n, at, d_days[new])
        self.amount = np.insert(self.amount, at, d_amount[new])
        self.last_day = np.insert(self.last_day, at, np.full(int(new.sum()), (new_day - EPOCH_DAY).days, np.int32))
        bad = (self.days_n < 0) | (self.amount < 0) | ((self.days_n == 0) != (self.amount == 0))
        assert not bad.any(), f"pair state went negative for {int(bad.sum())} pairs: state and rollups disagree"
        keep = self.days_n > 0
        if not keep.all():
            for name in ("payee", "payer", "days_n", "amount", "last_day"):
                setattr(self, name, getattr(self, name)[keep])

    def aggregates(self, as_of: dt.date) -> tuple[pa.Table, pa.Table]:
        """`windows.payee_aggregates` and `windows.payer_aggregates` of the pairs as of
        `as_of` (same columns and values), computed whole in numpy: each payee's pairs are a
        contiguous run, so a group-by is a reduce over runs."""
        recent = self.last_day >= (as_of - dt.timedelta(days=90) - EPOCH_DAY).days  # a.start_date(90)
        n = len(self.payee)
        starts = np.flatnonzero(np.r_[True, self.payee[1:] != self.payee[:-1]]) if n else np.zeros(0, np.int64)

        def per_payee(values: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
            return ufunc.reduceat(values, starts) if n else np.zeros(0, np.int64)

        payees = pa.table({
            "party_id": self.ids.take(pa.array(self.payee[starts])),
            "cust_n_90d": per_payee(recent.astype(np.int64), np.add),
            "cust_n_365d": np.diff(np.r_[starts, n]).astype(np.int64),
            "cust_repeat_n_365d": per_payee((self.days_n >= 2).astype(np.int64), np.add),
            "cust_top_minor_365d": per_payee(self.amount, np.maximum),
            "cust_total_minor_365d": per_payee(self.amount, np.add),
        })
        merchants = np.bincount(self.payer[recent], minlength=len(self.ids)).astype(np.int64)
        payers_at = np.flatnonzero(merchants)
        payers = pa.table({"party_id": self.ids.take(pa.array(payers_at)), "merchants_n_90d": merchants[payers_at]})
        return payees, payers


def _day_schema() -> pa.Schema:
    """A day file of the day measures: party_id + one int64 per measure."""
    return pa.schema([pa.field("party_id", pa.string()), *(pa.field(m, pa.int64()) for m in _measures_used())])


def _windows_file(lake_dir: Path, as_of: dt.date) -> Path:
    return state_path(lake_dir).parent / f"windows-{as_of.isoformat()}-{uuid.uuid4().hex[:8]}.arrow"


def _write_arrow(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    os.replace(tmp, path)


def _read_arrow(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _build(con: ibis.BaseBackend, inp: Inputs, as_of: dt.date, days_dir: Path) -> tuple[_Windows, _Pairs]:
    """The state as of `as_of`, from the rollups (the full path's definitions); the day
    measures go to `days_dir`, the windows and pairs are returned (the caller writes them)."""
    a = AsOf(as_of)
    windows = _Windows.from_table(con.con.sql(duckdb_sql(con, window_sums(inp.party_day, a, ALL_WINDOWS)))  # noqa: SLF001
                                  .to_arrow_table())
    con.raw_sql("DROP TABLE IF EXISTS party_windows")  # state version 2 kept them in the database
    con.raw_sql("DROP TABLE IF EXISTS day_measures")  # state version 2 kept them in the database
    r = inp.party_day
    r = r.filter(r.day < a.date, r.day >= a.start_date(MAX_WINDOW_DAYS))
    t = con.con.sql(duckdb_sql(con, day_measures(r, _measures_used()).order_by("day", "party_id"))).to_arrow_table()  # noqa: SLF001
    day_num = t["day"].cast(pa.int32()).to_numpy()
    t = t.drop_columns(["day"])
    for k in range(MAX_WINDOW_DAYS, 0, -1):  # one file per day, empty files for days without payments
        day = as_of - dt.timedelta(days=k)
        n = (day - EPOCH_DAY).days
        lo, hi = np.searchsorted(day_num, n, "left"), np.searchsorted(day_num, n, "right")
        _write_arrow(days_dir / f"{day}.arrow", t.slice(lo, hi - lo).cast(_day_schema()))
    for old in ("pair_state", "payee_aggregates", "payer_aggregates"):  # state version 4 kept them in the database
        con.raw_sql(f"DROP TABLE IF EXISTS {old}")
    pairs = _Pairs.from_pair_state(con.con.sql(duckdb_sql(con, pair_state(inp.pair_day, a))).to_arrow_table())  # noqa: SLF001
    return windows, pairs


def _advance_one_day(con: ibis.BaseBackend, lake_dir: Path, new_as_of: dt.date, windows: _Windows,
                     pairs: _Pairs, days_dir: Path) -> None:
    """The state from as_of new_as_of - 1 to new_as_of (the new day is new_as_of - 1)."""
    new_day = new_as_of - dt.timedelta(days=1)
    r = rollups.read_rollup_days(con, lake_dir, "party_day", [new_day])
    t = con.con.sql(duckdb_sql(con, day_measures(r, _measures_used()))).to_arrow_table()  # noqa: SLF001
    _write_arrow(days_dir / f"{new_day}.arrow", t.drop_columns(["day"]).cast(_day_schema()))

    def back(days: int) -> dt.date:  # the day `days` days before the new day
        return new_day - dt.timedelta(days=days)

    # The boundary days' measures (one memory-mapped file per day), then each window's
    # running total gains its entering day and loses its leaving day, in numpy (a party has
    # one row per day, so fancy-indexed += never sees a party twice).
    boundary = sorted({back(w.to_days_ago) for w in ALL_WINDOWS} | {back(w.from_days_ago) for w in ALL_WINDOWS})
    parts = []
    for d in boundary:
        path = days_dir / f"{d}.arrow"
        assert path.exists(), f"{path} missing: delete {days_dir.parent} to rebuild the state"
        parts.append(_read_arrow(path))
    b = pa.concat_tables(parts)
    idx = windows.index_of(b["party_id"])
    measures = {m: b[m].cast(pa.int64()).to_numpy(zero_copy_only=False) for m in _measures_used()}
    rows = {}
    lo = 0
    for d, part in zip(boundary, parts, strict=True):
        sl = slice(lo, lo + part.num_rows)
        rows[d] = (idx[sl], {m: v[sl] for m, v in measures.items()})
        lo += part.num_rows
    for w in ALL_WINDOWS:
        col = windows.cols[w.name]
        i, m = rows[back(w.to_days_ago)]
        col[i] += m[w.measure]
        i, m = rows[back(w.from_days_ago)]
        col[i] -= m[w.measure]
    # Days that can no longer leave a window are deleted after the commit (update_state).
    # Pairs: the new day's purchases enter, the day leaving the 365-day window leaves.
    leave_day = new_as_of - dt.timedelta(days=MAX_WINDOW_DAYS + 1)
    changes = rollups.read_rollup_days(con, lake_dir, "pair_day", [new_day, leave_day])
    changes = changes.select("payee_id", "payer_id", "day", "amount_minor")
    pairs.advance(con.con.sql(duckdb_sql(con, changes)).to_arrow_table(), new_day)  # noqa: SLF001


def update_state(lake_dir: Path, as_of: dt.date) -> tuple[ibis.BaseBackend, Inputs, StateUpdate]:
    """Bring the state to `as_of` (advance day by day, or rebuild; see the module doc).
    Returns the state's connection, the lake's inputs on it, and what was done."""
    lake_dir = Path(lake_dir)
    con = _connect(lake_dir)
    inp = load_inputs(con, lake_dir, use_rollups=True)  # updates the rollups first
    files_now = _manifest_files(lake_dir)
    meta = _read_meta(con)
    reason = _stale_reason(meta, files_now, as_of, lake_dir)
    windows_file = None if meta is None else meta.get("windows_file")
    state_dir = state_path(lake_dir).parent
    con.raw_sql("BEGIN TRANSACTION")
    try:
        pairs: _Pairs | None = None
        if reason is not None:
            days_dir = state_dir / f"days-{uuid.uuid4().hex[:8]}"
            days_dir.mkdir()
            windows, pairs = _build(con, inp, as_of, days_dir)
            update = StateUpdate("built", reason, None, as_of, 0)
        else:
            assert meta is not None and windows_file is not None
            days_dir = state_dir / meta["days_dir"]
            start = dt.date.fromisoformat(meta["as_of"])
            days = (as_of - start).days
            windows = _Windows.from_table(_read_arrow(state_dir / windows_file)) if days else None
            pairs = _Pairs.from_file(_read_arrow(state_dir / meta["pairs_file"])) if days else None
            for k in range(1, days + 1):
                assert windows is not None and pairs is not None
                _advance_one_day(con, lake_dir, start + dt.timedelta(days=k), windows, pairs, days_dir)
            update = StateUpdate("advanced" if days else "current", "new days" if days else "", start, as_of, days)
        bills_files = _bills_files(lake_dir)
        update = dataclasses.replace(update, bills=_update_bills(con, inp, lake_dir, meta, reason, as_of, bills_files))
        pairs_file = None if meta is None else meta.get("pairs_file")
        if windows is not None:  # new files, named in the meta of the same transaction
            path = _windows_file(lake_dir, as_of)
            _write_arrow(path, windows.table())
            windows_file = path.name
            assert pairs is not None
            path = path.with_name(path.name.replace("windows-", "pairs-", 1))
            _write_arrow(path, pairs.table())
            pairs_file = path.name
        assert windows_file is not None and pairs_file is not None
        _write_meta(con, as_of, files_now, windows_file, days_dir.name, bills_files, pairs_file)
        con.raw_sql("COMMIT")
    except BaseException:
        con.raw_sql("ROLLBACK")
        raise
    for old in [*state_dir.glob("windows-*.arrow"), *state_dir.glob("pairs-*.arrow")]:  # only the committed files
        if old.name not in (windows_file, pairs_file):
            old.unlink(missing_ok=True)
    for old_dir in state_dir.glob("days-*"):
        if old_dir.name != days_dir.name:
            shutil.rmtree(old_dir, ignore_errors=True)
    oldest = as_of - dt.timedelta(days=MAX_WINDOW_DAYS)  # days that can no longer leave a window
    for path in days_dir.glob("*.arrow"):
        if dt.date.fromisoformat(path.stem) < oldest:
            path.unlink()
    # The portrait reads the window totals from the file (memory-mapped, no copy) and the
    # customer aggregates computed from the pairs (numpy, whole: a reduce over 3.5M pairs
    # costs less than keeping deltas).
    con.con.register("party_windows", _read_arrow(state_dir / windows_file))  # noqa: SLF001
    if pairs is None:
        pairs = _Pairs.from_file(_read_arrow(state_dir / pairs_file))
    payees, payers = pairs.aggregates(as_of)
    con.con.register("payee_aggregates", payees)  # noqa: SLF001
    con.con.register("payer_aggregates", payers)  # noqa: SLF001
    return con, inp, update


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
                  as_of: dt.date, files_now: dict[str, list[int]]) -> str:
    """Bring `bills_partials` (families/bills.py partials, one row per party) to `as_of`.

    Rebuilt from all bills when the state is rebuilt or a bills file the state read changed
    or disappeared (an edit after the fact: rows changed in place). Otherwise only the
    parties with a bill event (bills.events: due, late, paid, out of a window) in
    (S, as_of], or with a bill in a new file, are recomputed from their bills; every other
    party's partials are unchanged by construction, and `bills.finish` adds the days that
    pass in closed form."""
    a = AsOf(as_of)
    seen = None if meta is None else meta.get("bills_files")
    if rebuild is None and seen is None:
        rebuild = "no bills state"
    if rebuild is None and any(files_now.get(rel) != old for rel, old in seen.items()):
        rebuild = "a bills file changed or was removed"
    if rebuild is not None:
        _create(con, "bills_partials", bills.partials(inp.bills, a))
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
    dirty = con.table("_bills_dirty")
    fresh = bills.partials(inp.bills.semi_join(dirty, "party_id"), a)
    con.raw_sql("DELETE FROM bills_partials WHERE party_id IN (SELECT party_id FROM _bills_dirty)")
    _insert(con, "bills_partials", fresh)
    con.raw_sql(f"DELETE FROM bills_events WHERE day <= DATE '{as_of}'")
    n = con.con.execute("SELECT count(DISTINCT party_id) FROM _bills_dirty").fetchone()  # noqa: SLF001
    return f"{n[0] if n else 0} parties recomputed"


def state_families(con: ibis.BaseBackend, as_of: dt.date) -> dict[str, ir.Table]:
    """The families the state keeps up to date itself, for `execute_portrait(precomputed=...)`."""
    return {bills.__name__: bills.finish(con.table("bills_partials"), AsOf(as_of))}


def state_aggregates(con: ibis.BaseBackend) -> PaymentAggregates:
    return PaymentAggregates(windows=con.table("party_windows"), pairs=None,
                             payees=con.table("payee_aggregates"), payers=con.table("payer_aggregates"))


def portrait_from_state(con: ibis.BaseBackend, inp: Inputs, as_of: dt.date) -> pa.Table:
    """The portrait of `as_of` from a state brought to `as_of` by `update_state`."""
    return execute_portrait(inp, as_of, agg=state_aggregates(con), precomputed=state_families(con, as_of))


def latest_portrait(lake_dir: Path, as_of: dt.date) -> tuple[pa.Table, StateUpdate]:
    """The portrait of `as_of` from the incremental state (advanced or built first); same
    columns and values as `execute_portrait` on the full path."""
    con, inp, update = update_state(lake_dir, as_of)
    try:
        table = portrait_from_state(con, inp, as_of)
    finally:
        con.disconnect()
    return table, update
