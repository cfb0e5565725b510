"""The portrait: one row per party created before D, one column per catalog feature."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fieldbank.portrait.catalog import Feature, catalog
from fieldbank.portrait.cursors import CursorPool
from fieldbank.portrait.engine import (
    duckdb_arrow,
    duckdb_execute_arrow,
    engine_of,
    materialize,
    materialize_arrow,
    one_chunk,
    release_temporaries,
)
from fieldbank.portrait.families import (
    COMPUTED_FAMILIES,
    PAYMENT_FAMILIES,
    household,
    party,
    region,
    supply_chain,
    thin_file,
)
from fieldbank.portrait.graph import edge_weights, pagerank_arrow
from fieldbank.portrait.inputs import AsOf, Inputs
from fieldbank.portrait.raw_invoices import raw_supply_chain
from fieldbank.portrait.raw_payments import raw_payment_aggregates
from fieldbank.portrait.sqlcache import SqlTemplates, cache_key
from fieldbank.portrait.windows import (
    PaymentAggregates,
    bucket_sums,
    measures_of,
    pair_state,
    window_sums,
    window_sums_arrow,
    windows_from_buckets,
)

ARROW_TYPES = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
KEY_COLUMNS = ("party_id", "as_of")
MAX_AS_OF_DATES = 400  # a backfill of more dates than this is a mistake, not a job


def portrait_schema() -> pa.Schema:
    fields = [pa.field("party_id", pa.string(), nullable=False), pa.field("as_of", pa.date32(), nullable=False)]
    fields += [pa.field(f.name, ARROW_TYPES[f.dtype]) for f in catalog()]
    return pa.schema(fields)


ALL_WINDOWS = tuple(w for family in PAYMENT_FAMILIES for w in family.WINDOWS)


def payment_aggregates(inp: Inputs, a: AsOf, sql_cache: SqlTemplates | None = None) -> PaymentAggregates:
    """Every payment family's window sums in one pass over party_day, and the pair state in
    one pass over pair_day, materialized once for all families (see windows.py). On DuckDB
    the window sums are summed from per-bucket sums in numpy (`window_sums_arrow`, the same
    values as `window_sums`); from raw payments (`inp.payment_files`) the window sums and the
    customer aggregates are all computed in numpy from the Parquet files (raw_payments.py).

    `sql_cache` (DuckDB, inputs with fixed names: `payment_sql_templates`): both queries run
    from their cached compiled SQL and the results are kept under fixed names (replaced on
    the next call on the connection), so the families' SQL over them can be cached too."""
    con = inp.con
    raw_agg = None
    if inp.payment_files:
        raw_agg = raw_payment_aggregates(list(inp.payment_files), a.day, ALL_WINDOWS)
    if raw_agg is not None:
        if sql_cache is None:
            return PaymentAggregates(windows=materialize_arrow(con, raw_agg.windows), pairs=None,
                                     payees=materialize_arrow(con, raw_agg.payees),
                                     payers=materialize_arrow(con, raw_agg.payers))
        raw = con.con  # noqa: SLF001 - the DuckDB connection under the Ibis backend
        tables = {WINDOWS_TABLE: raw_agg.windows, PAYEES_TABLE: raw_agg.payees, PAYERS_TABLE: raw_agg.payers}
        for name, table in tables.items():
            raw.register(name, table)  # Arrow, read in place; replaces the previous call's
        # Ibis tables of the same names and schemas, unbound: they compile to the same SQL as
        # con.table(name), without a DESCRIBE query each (~5 ms); the SQL runs on `raw`.
        t = {name: ibis.table(ibis.Schema.from_pyarrow(table.schema), name=name) for name, table in tables.items()}
        return PaymentAggregates(windows=t[WINDOWS_TABLE], pairs=None, payees=t[PAYEES_TABLE], payers=t[PAYERS_TABLE],
                                 arrow_tables=tuple(tables.items()))
    if sql_cache is not None:
        raw = con.con  # noqa: SLF001 - the DuckDB connection under the Ibis backend
        buckets = raw.sql(sql_cache.sql(con, "bucket_sums", lambda d: bucket_sums(
            inp.party_day, d, measures_of(ALL_WINDOWS)), a.day)).to_arrow_table()
        windows = materialize_arrow(con, windows_from_buckets(buckets, ALL_WINDOWS), WINDOWS_TABLE)
        raw.execute(f"CREATE OR REPLACE TEMP TABLE {PAIRS_TABLE} AS "
                    + sql_cache.sql(con, "pair_state", lambda d: pair_state(inp.pair_day, d), a.day))
        sql_cache.save()
        return PaymentAggregates(windows=windows, pairs=con.table(PAIRS_TABLE))
    if engine_of(con) == "duckdb":
        windows = materialize_arrow(con, window_sums_arrow(con, inp.party_day, a, ALL_WINDOWS))
    else:
        windows = materialize(con, window_sums(inp.party_day, a, ALL_WINDOWS))
    return PaymentAggregates(windows=windows, pairs=materialize(con, pair_state(inp.pair_day, a)))


# The names of payment_aggregates' results with a cache (the same in every run).
WINDOWS_TABLE, PAIRS_TABLE = "portrait_windows", "portrait_pairs"
PAYEES_TABLE, PAYERS_TABLE = "portrait_payees", "portrait_payers"


def payment_sql_templates(inp: Inputs, directory: Path | None = None) -> SqlTemplates:
    """The compiled-SQL templates (sqlcache.py) of `payment_aggregates` and of the payment
    families over its results, for inputs read with `load_inputs(named_views=True)`."""
    assert engine_of(inp.con) == "duckdb", "the SQL cache is for DuckDB"
    return SqlTemplates.load(cache_key(inp.con, "payment_aggregates", [inp.party_day, inp.pair_day]), directory)


def payment_family_arrow(inp: Inputs, a: AsOf, family: ModuleType, agg: PaymentAggregates,
                         sql_cache: SqlTemplates | None = None) -> pa.Table:
    """One payment family's rows on DuckDB (one query to Arrow), from `agg`; with `sql_cache`
    (and `agg` from `payment_aggregates` with it) from the family's cached compiled SQL."""
    assert family in PAYMENT_FAMILIES, family
    if sql_cache is None:
        return duckdb_arrow(inp.con, family.compute(inp, a, agg))
    sql = sql_cache.sql(inp.con, family.__name__, lambda d: family.compute(inp, d, agg), a.day)
    sql_cache.save()
    return duckdb_execute_arrow(inp.con.con, sql)  # noqa: SLF001


def payment_families_arrow(inp: Inputs, a: AsOf, families: tuple[ModuleType, ...], agg: PaymentAggregates,
                           sql_cache: SqlTemplates) -> list[pa.Table]:
    """`payment_family_arrow` of each family, from cached SQL, two at a time: the first on the
    connection, the others on a cursor of it (with `agg`'s Arrow tables registered again: a
    cursor does not see the connection's). Planning a family's ~20 KB of SQL is most of its
    time and uses one core; side by side the business and household queries measured 50 ms
    against 75 ms (1M payments)."""
    sqls = [sql_cache.sql(inp.con, f.__name__, lambda d, f=f: f.compute(inp, d, agg), a.day) for f in families]
    sql_cache.save()
    if len(sqls) < 2 or not agg.arrow_tables:
        return [duckdb_execute_arrow(inp.con.con, sql) for sql in sqls]  # noqa: SLF001
    cursor = inp.con.con.cursor()  # noqa: SLF001
    for name, table in agg.arrow_tables:
        cursor.register(name, table)
    with ThreadPoolExecutor(max_workers=1) as pool:
        rest = pool.submit(lambda: [duckdb_execute_arrow(cursor, sql) for sql in sqls[1:]])
        first = duckdb_execute_arrow(inp.con.con, sqls[0])  # noqa: SLF001
        return [first, *rest.result()]


# A family's query as a function of the date: what the SQL cache (sqlcache.py) compiles once.
FamilyBuilder = Callable[[AsOf], ir.Table]


def family_builders(
    inp: Inputs, agg: PaymentAggregates | Callable[[AsOf], PaymentAggregates],
    ranks: Callable[[AsOf], ir.Table | None], precomputed: dict[str, FamilyBuilder] | None = None,
) -> list[tuple[str, FamilyBuilder]]:
    """(family name, builder) of the party family (the row set) then every computed family;
    each builder makes the family's Ibis expression keyed by party_id for a date, checking
    its columns against the catalog. `precomputed` (family module name -> builder) replaces a
    family's compute: the incremental path passes the families it keeps up to date itself."""
    def aggregates(a: AsOf) -> PaymentAggregates:
        return agg(a) if callable(agg) else agg

    def computed(family: ModuleType) -> FamilyBuilder:
        def build(a: AsOf) -> ir.Table:
            if precomputed and family.__name__ in precomputed:
                fam = precomputed[family.__name__](a)
            elif family in PAYMENT_FAMILIES:
                fam = family.compute(inp, a, aggregates(a))
            elif family is supply_chain:
                fam = supply_chain.compute(inp, a, ranks(a))
            else:
                fam = family.compute(inp, a)
            expected = {f.name for f in family.FEATURES}
            got = set(fam.columns) - {"party_id"}
            assert got == expected, f"{family.__name__}: columns {sorted(got ^ expected)} differ from the catalog"
            return fam
        return build

    out: list[tuple[str, FamilyBuilder]] = [(party.__name__, lambda a: party.compute(inp, a))]
    return out + [(family.__name__, computed(family)) for family in COMPUTED_FAMILIES]


def family_tables(
    inp: Inputs, as_of: dt.date, agg: PaymentAggregates | None = None, ranks: ir.Table | None = None,
    precomputed: dict[str, FamilyBuilder] | None = None,
) -> list[ir.Table]:
    """The party family (the row set) then every computed family, as Ibis expressions keyed
    by party_id (see `family_builders`); the payment aggregates and PageRank are computed
    here unless given."""
    a = AsOf(as_of)
    agg = agg if agg is not None else payment_aggregates(inp, a)
    return [build(a) for _, build in family_builders(inp, agg, lambda _: ranks, precomputed)]


def finish_portrait(t: ir.Table, as_of: dt.date) -> ir.Table:
    """The families' columns joined on party_id -> the portrait: one projection (fill, cast,
    derive the thin-file flags), which keeps the final query small to compile."""
    feats: dict[str, Feature] = {f.name: f for f in catalog()}
    cols: dict[str, ir.Value] = {}
    for name, f in feats.items():
        if f.family == "thin_file":
            continue
        col = t[name].fill_null(0) if f.fill_zero else t[name]
        cols[name] = col.cast(f.dtype)
    cols.update(thin_file.derive(cols))
    return t.select(
        party_id=t.party_id, as_of=ibis.literal(as_of, type="date"), **{name: cols[name] for name in feats}
    )


def build_portrait(
    inp: Inputs, as_of: dt.date, agg: PaymentAggregates | None = None, ranks: ir.Table | None = None,
    precomputed: dict[str, FamilyBuilder] | None = None,
) -> ir.Table:
    """The portrait of `as_of` as an Ibis expression. Each family's result is materialized
    first (see engine.materialize); the final join of the families is left to the caller.

    `agg` (payment aggregates) and `ranks` (PageRank of the invoice graph) are computed here
    unless given: the incremental path (state.py) passes its running totals, so both paths
    share every feature formula."""
    fams = family_tables(inp, as_of, agg, ranks, precomputed)
    t = fams[0]
    for fam in fams[1:]:
        t = t.left_join(materialize(inp.con, fam), "party_id").drop("party_id_right")
    return finish_portrait(t, as_of)


def _align_family(keys: pa.Array, t: pa.Table) -> dict[str, pa.ChunkedArray | pa.Array]:
    """One family's columns (not party_id) on the rows of `keys` (the portrait's sorted party
    ids): each key's row in the family, null where the family has no row (a left join)."""
    ids = one_chunk(t["party_id"])  # (not t.combine_chunks(): it copies every column, one chunk or not)
    if ids.equals(keys):
        return {name: t[name] for name in t.column_names if name != "party_id"}  # already aligned
    # Every family row matched once means no duplicates; otherwise count them (the slow check).
    idx = pc.index_in(keys, value_set=ids)
    if len(idx) - idx.null_count != t.num_rows:
        assert pc.count_distinct(ids).as_py() == t.num_rows, f"duplicate party rows in {t.column_names[1:3]}"
    return {name: t[name].take(idx) for name in t.column_names if name != "party_id"}


def _aligned_families(tables: list[pa.Table]) -> dict[str, pa.ChunkedArray | pa.Array]:
    """DuckDB: the families' tables (party first, sorted by party_id) side by side in Arrow,
    rows of the first, the others' rows looked up by party_id (null where a family has no
    row): what the chain of left joins computes, without hashing a growing payload of
    columns 6 times (0.45 s of the 5M-payment portrait's final query)."""
    base = tables[0]
    keys = base["party_id"].combine_chunks()
    columns: dict[str, pa.ChunkedArray | pa.Array] = dict(zip(base.column_names, base.columns, strict=True))
    for t in tables[1:]:
        columns.update(_align_family(keys, t))
    return columns


PAGERANK_TABLE = "portrait_pagerank"  # the ranks of the cached path, under a name fixed across runs


def _family_arrow_cached(inp: Inputs, as_of: dt.date, agg: PaymentAggregates | Callable[[AsOf], PaymentAggregates],
                         precomputed: dict[str, FamilyBuilder] | None, cache: SqlTemplates) -> list[pa.Table]:
    """The families' rows (party first, by party_id) from the cached SQL of each query: the
    Ibis expressions are built and compiled only when a template is made (sqlcache.py)."""
    con = inp.con
    raw = con.con  # noqa: SLF001 - the DuckDB connection under the Ibis backend

    def edges(a: AsOf) -> ir.Table:
        return edge_weights(supply_chain.graph_edges(inp, a))

    # Supply chain (with PageRank) in numpy once its SQL has a template (`start_portrait`
    # needs them all): the first run of a key still makes it.
    numpy_rows = None
    if all(cache.rendered(name, as_of) for name in ("pagerank_edges", supply_chain.__name__)):
        numpy_rows = raw_supply_chain_rows(inp, as_of)
    if numpy_rows is None:
        ranks = pagerank_arrow(duckdb_execute_arrow(raw, cache.sql(con, "pagerank_edges", edges, as_of)))
        raw.register(PAGERANK_TABLE, ranks)
    builders = family_builders(inp, agg, lambda _: con.table(PAGERANK_TABLE), precomputed)
    (party_name, party_build), *others = builders
    tables = [duckdb_execute_arrow(raw, cache.sql(con, party_name, lambda a: party_build(a).order_by("party_id"), as_of))]
    for name, build in others:
        if name == supply_chain.__name__ and numpy_rows is not None:
            tables.append(numpy_rows)
        else:
            tables.append(duckdb_execute_arrow(raw, cache.sql(con, name, build, as_of)))
    cache.save()
    return tables


def raw_supply_chain_rows(inp: Inputs, as_of: dt.date) -> pa.Table | None:
    """The supply chain family computed in numpy from the lake's invoice and loan files
    (raw_invoices.py: the same rows and values as its SQL), or None: then run the SQL."""
    if inp.invoice_files is None or inp.loan_files is None:
        return None
    return raw_supply_chain(list(inp.invoice_files), list(inp.loan_files), as_of)


def _cached_query_names(precomputed: dict[str, FamilyBuilder] | None) -> tuple[list[str], list[str]]:
    """The latest portrait's family queries as (those that read only the lake: party, supply
    chain (with PageRank), credit; those that read the aggregates or a precomputed family)."""
    lake_only, rest = [party.__name__], []
    for family in COMPUTED_FAMILIES:
        reads_state = family in PAYMENT_FAMILIES or (precomputed is not None and family.__name__ in precomputed)
        (rest if reads_state else lake_only).append(family.__name__)
    return lake_only, rest


def _query_job(sql: str) -> Callable[[Any], pa.Table]:
    return lambda cur: duckdb_execute_arrow(cur, sql)


def _pagerank_job(edges_sql: str, family_sql: str,
                  numpy_rows: Callable[[], pa.Table | None] | None = None) -> Callable[[Any], pa.Table]:
    """Supply chain with its PageRank: `numpy_rows()` (raw_invoices.py) if given and not None,
    else PageRank in numpy from the edges, registered on the job's cursor, then its SQL."""
    def job(cur: Any) -> pa.Table:
        table = numpy_rows() if numpy_rows is not None else None
        if table is not None:
            return table
        cur.register(PAGERANK_TABLE, pagerank_arrow(duckdb_execute_arrow(cur, edges_sql)))
        return duckdb_execute_arrow(cur, family_sql)
    return job


@dataclass
class StartedPortrait:
    """The lake-only family queries of a portrait, running on a CursorPool (`start_portrait`)."""

    as_of: dt.date
    pool: CursorPool
    cache: SqlTemplates
    precomputed: dict[str, FamilyBuilder] | None
    running: dict[str, Future[pa.Table]]
    aligned: dict[str, Future[dict[str, Any]]]  # each family's columns on the party family's rows


def _submit_alignments(started: StartedPortrait) -> None:
    """Align each started family query not aligned yet on the party family's rows and finish
    its columns (`finish_columns`), in the pool's threads, as soon as both are done. An
    alignment job waits for its query's future; every query was submitted before its
    alignment and the pool takes jobs in order, so the query is running or done when the job
    starts (no deadlock)."""
    base = started.running[party.__name__]
    for name, fut in started.running.items():
        if name != party.__name__ and name not in started.aligned:
            started.aligned[name] = started.pool.submit(  # aligned and finished (cast, zero fill)
                lambda _cur, f=fut: finish_columns(_align_family(one_chunk(base.result()["party_id"]), f.result())))


def start_portrait(pool: CursorPool, as_of: dt.date, cache: SqlTemplates,
                   precomputed: dict[str, FamilyBuilder] | None,
                   supply_chain_rows: Callable[[], pa.Table | None] | None = None) -> StartedPortrait | None:
    """Start the portrait's queries that read only the lake (party, PageRank then supply chain,
    credit) on `pool`, from their cached SQL; they need nothing from the payment aggregates, so
    they can run while the incremental state advances. None if a query has no template (the
    first run of a key: `execute_portrait` makes them). `supply_chain_rows()`, if given, is
    the supply chain family's rows (raw_invoices.py, numpy) or None: then its SQL runs."""
    lake_only, rest = _cached_query_names(precomputed)
    sql = {name: cache.rendered(name, as_of) for name in ["pagerank_edges", *lake_only, *rest]}
    if not all(sql.values()):
        return None
    running: dict[str, Future[pa.Table]] = {}
    edges_sql, supply_sql = sql.pop("pagerank_edges"), sql[supply_chain.__name__]
    assert edges_sql is not None and supply_sql is not None
    for name in lake_only:
        query_sql = sql[name]
        assert query_sql is not None
        if name != supply_chain.__name__:
            running[name] = pool.submit(_query_job(query_sql))
    # Last: its rows are usually computed already by the caller's thread (it waits for them),
    # so it does not hold a pool thread while the other queries could run.
    running[supply_chain.__name__] = pool.submit(_pagerank_job(edges_sql, supply_sql, supply_chain_rows))
    started = StartedPortrait(as_of, pool, cache, precomputed, running, {})
    _submit_alignments(started)  # the lake-only families are aligned while the state advances
    return started


def start_payment_families(started: StartedPortrait) -> None:
    """Start the payment families' queries of a `start_portrait` (they read the window totals
    and the customer aggregates, which the caller has registered on the pool). The longest
    first, so the two threads end together: region and household ~0.1 CPU-s each, business
    ~0.05 at 5M payments (measured)."""
    for family in sorted(PAYMENT_FAMILIES, key=lambda f: (f is not region, f is not household)):
        sql = started.cache.rendered(family.__name__, started.as_of)
        assert sql is not None, f"{family.__name__}: no template"
        if family.__name__ not in started.running:
            started.running[family.__name__] = started.pool.submit(_query_job(sql))
    _submit_alignments(started)


def finish_started_portrait(started: StartedPortrait) -> pa.Table:
    """The portrait of a `start_portrait`: the other queries (the precomputed families, which
    the caller has committed), each family aligned on the party ids, then the Arrow finish.
    The queries that could not start before (they read what the state's commit made) run in
    the calling thread, idle until the portrait is ready, rather than queue behind the pool's
    jobs (the bills family waited 0.15 s there, measured)."""
    _, rest = _cached_query_names(started.precomputed)
    base = started.running[party.__name__].result()
    for name in rest:
        if name in started.running:  # started already (start_payment_families)
            continue
        sql = started.cache.rendered(name, started.as_of)
        assert sql is not None, f"{name}: no template"
        table = started.pool.run_here(_query_job(sql))
        done: Future[dict[str, Any]] = Future()
        done.set_result(finish_columns(_align_family(one_chunk(base["party_id"]), table)))
        started.aligned[name] = done
    columns: dict[str, pa.ChunkedArray | pa.Array] = dict(zip(base.column_names, base.columns, strict=True))
    for family in COMPUTED_FAMILIES:  # the catalog's order, as the sequential path
        columns.update(started.aligned[family.__name__].result())
    return _checked_portrait(finish_portrait_arrow(columns, started.as_of), started.as_of)


def finish_columns(columns: dict[str, pa.ChunkedArray | pa.Array]) -> dict[str, pa.ChunkedArray | pa.Array]:
    """The catalog's cast and zero fill (`fill_zero`) of the features among `columns` (a no-op
    for columns already finished): what `finish_portrait` does to each column."""
    feats = {f.name: f for f in catalog() if f.family != "thin_file"}
    out = {}
    for name, col in columns.items():
        f = feats.get(name)
        if f is not None:
            target = ARROW_TYPES[f.dtype]
            col = col if col.type == target else pc.cast(col, target)
            col = pc.fill_null(col, pa.scalar(0, target)) if f.fill_zero and col.null_count else col
        out[name] = col
    return out


def finish_portrait_arrow(columns: dict[str, pa.ChunkedArray | pa.Array], as_of: dt.date) -> pa.Table:
    """`finish_portrait` on Arrow columns (the families' columns aligned on party_id): the same
    fill, cast and thin-file flags, without a query over a 100k x 89 in-memory table."""
    schema = portrait_schema()
    n = len(columns["party_id"])
    out: dict[str, pa.ChunkedArray | pa.Array] = {
        "party_id": columns["party_id"], "as_of": pa.repeat(pa.scalar(as_of, pa.date32()), n)}
    finished = finish_columns(columns)
    out.update({f.name: finished[f.name] for f in catalog() if f.family != "thin_file"})
    out.update(thin_file.derive_arrow(out))
    return pa.table({name: out[name] for name in schema.names}).cast(schema)


def execute_portrait(
    inp: Inputs, as_of: dt.date, agg: PaymentAggregates | None = None, ranks: ir.Table | None = None,
    precomputed: dict[str, FamilyBuilder] | None = None, sql_cache: SqlTemplates | None = None,
) -> pa.Table:
    """Run the portrait on the inputs' engine; rows sorted by party_id, columns as the catalog.

    `sql_cache` (DuckDB, with `agg` given and `ranks` not): run each query from its cached
    compiled SQL; the inputs and `agg` must have the same names in every process (sqlcache.py)."""
    try:
        if engine_of(inp.con) == "duckdb":
            if sql_cache is not None:
                assert agg is not None and ranks is None, "the cached path takes the aggregates, computes PageRank"
                tables = _family_arrow_cached(inp, as_of, agg, precomputed, sql_cache)
            else:
                fams = family_tables(inp, as_of, agg, ranks, precomputed)
                tables = [duckdb_arrow(inp.con, fams[0].order_by("party_id"))]
                tables += [duckdb_arrow(inp.con, fam) for fam in fams[1:]]
            table = finish_portrait_arrow(_aligned_families(tables), as_of)
        else:
            table = build_portrait(inp, as_of, agg, ranks, precomputed).order_by("party_id").to_pyarrow()
    finally:
        release_temporaries(inp.con)
    return _checked_portrait(table, as_of)


def _checked_portrait(table: pa.Table, as_of: dt.date) -> pa.Table:
    """Rows sorted by party_id, the portrait's schema, no party twice."""
    ids = table["party_id"]
    # Strictly increasing ids (the usual case: DuckDB keeps a scan's order in a projection) are
    # sorted and distinct, so the distinct count (0.04 s at 100k rows) is needed only otherwise.
    increasing = table.num_rows < 2 or pc.all(pc.less(ids[:-1], ids[1:])).as_py()
    if not increasing:
        table = table.sort_by("party_id")  # a safety net
    schema = portrait_schema()
    table = table.select(schema.names).cast(schema)
    if not increasing:
        distinct = pc.count_distinct(table["party_id"]).as_py()
        assert distinct == table.num_rows, f"portrait {as_of}: {table.num_rows - distinct} duplicate party rows"
    return table


def portrait_path(data_dir: Path, as_of: dt.date) -> Path:
    return Path(data_dir) / "portraits" / f"as_of={as_of.isoformat()}" / "part-0.parquet"


def write_portrait(data_dir: Path, as_of: dt.date, table: pa.Table) -> Path:
    """Atomic: write into a temp dir next to the target, then swap directories."""
    final = portrait_path(data_dir, as_of).parent
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    pq.write_table(table, tmp / "part-0.parquet")
    old = final.parent / f".old-{final.name}-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final / "part-0.parquet"


def parse_as_of(values: list[str]) -> list[dt.date]:
    """ISO dates, deduplicated and sorted; a clear error names a bad value."""
    days: set[dt.date] = set()
    for v in values:
        try:
            days.add(dt.date.fromisoformat(v))
        except ValueError as err:
            raise ValueError(f"--as-of {v!r}: not a date YYYY-MM-DD") from err
    if not days:
        raise ValueError("--as-of: give at least one date")
    if len(days) > MAX_AS_OF_DATES:
        raise ValueError(f"--as-of: {len(days)} dates, the limit is {MAX_AS_OF_DATES}")
    return sorted(days)
