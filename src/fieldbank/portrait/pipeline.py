"""The portrait: one row per party created before D, one column per catalog feature."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fieldbank.portrait.catalog import Feature, catalog
from fieldbank.portrait.engine import materialize, release_temporaries
from fieldbank.portrait.families import COMPUTED_FAMILIES, PAYMENT_FAMILIES, party, supply_chain, thin_file
from fieldbank.portrait.inputs import AsOf, Inputs
from fieldbank.portrait.windows import PaymentAggregates, pair_state, window_sums

ARROW_TYPES = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
KEY_COLUMNS = ("party_id", "as_of")
MAX_AS_OF_DATES = 400  # a backfill of more dates than this is a mistake, not a job


def portrait_schema() -> pa.Schema:
    fields = [pa.field("party_id", pa.string(), nullable=False), pa.field("as_of", pa.date32(), nullable=False)]
    fields += [pa.field(f.name, ARROW_TYPES[f.dtype]) for f in catalog()]
    return pa.schema(fields)


ALL_WINDOWS = tuple(w for family in PAYMENT_FAMILIES for w in family.WINDOWS)


def payment_aggregates(inp: Inputs, a: AsOf) -> PaymentAggregates:
    """Every payment family's window sums in one pass over party_day, and the pair state in
    one pass over pair_day, materialized once for all families (see windows.py)."""
    return PaymentAggregates(
        windows=materialize(inp.con, window_sums(inp.party_day, a, ALL_WINDOWS)),
        pairs=materialize(inp.con, pair_state(inp.pair_day, a)),
    )


def build_portrait(
    inp: Inputs, as_of: dt.date, agg: PaymentAggregates | None = None, ranks: ir.Table | None = None
) -> ir.Table:
    """The portrait of `as_of` as an Ibis expression. Each family's result is materialized
    first (see engine.materialize); the final join of the families is left to the caller.

    `agg` (payment aggregates) and `ranks` (PageRank of the invoice graph) are computed here
    unless given: the incremental path (state.py) passes its running totals and warm-started
    ranks, so both paths share every feature formula."""
    a = AsOf(as_of)
    feats: dict[str, Feature] = {f.name: f for f in catalog()}
    agg = agg if agg is not None else payment_aggregates(inp, a)
    t = party.compute(inp, a)
    for family in COMPUTED_FAMILIES:
        if family in PAYMENT_FAMILIES:
            fam = family.compute(inp, a, agg)
        elif family is supply_chain:
            fam = supply_chain.compute(inp, a, ranks)
        else:
            fam = family.compute(inp, a)
        expected = {f.name for f in family.FEATURES}
        got = set(fam.columns) - {"party_id"}
        assert got == expected, f"{family.__name__}: columns {sorted(got ^ expected)} differ from the catalog"
        t = t.left_join(materialize(inp.con, fam), "party_id").drop("party_id_right")
    # One projection (fill, cast, derive) keeps the final query small to compile.
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


def execute_portrait(
    inp: Inputs, as_of: dt.date, agg: PaymentAggregates | None = None, ranks: ir.Table | None = None
) -> pa.Table:
    """Run the portrait on the inputs' engine; rows sorted by party_id, columns as the catalog."""
    try:
        table = build_portrait(inp, as_of, agg, ranks).to_pyarrow()
    finally:
        release_temporaries(inp.con)
    schema = portrait_schema()
    table = table.select(schema.names).cast(schema)
    distinct = pc.count_distinct(table["party_id"]).as_py()
    assert distinct == table.num_rows, f"portrait {as_of}: {table.num_rows - distinct} duplicate party rows"
    return table.sort_by("party_id")


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
