"""Portrait benchmark: the cost of the abstraction, throughput, incremental updates, Spark,
featuretools, and a full portrait at scale.

    uv run --frozen python benchmarks/bench_portrait.py                    # 5M payments
    uv run --frozen python benchmarks/bench_portrait.py --payments 200000 --featuretools-payments 50000  # quick
    uv run --frozen python benchmarks/bench_portrait.py --only scale --scale-payments 100000000  # the issue's size
    uv run --frozen python benchmarks/bench_portrait.py --only featuretools   # 1M-payment DFS comparison

Every figure is a ratio of two timings taken in the same run on the same synthetic lake
(seeded numpy/pyarrow, fieldbank.portrait.testing). Prints a table and writes
benchmarks/results/portrait.json; with --only, the sections run are replaced in the
existing JSON and the others are kept (each section records its own sizes and load).
Sections: abstraction, full, incremental, backfill (the --payments lake), spark
(--spark-payments), featuretools (--featuretools-payments), scale (--scale-payments, a lake
streamed to disk in chunks, so it can hold ~100M payments in bounded memory).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from fieldbank.portrait import connect, execute_portrait, load_inputs
from fieldbank.portrait.engine import duckdb_arrow, materialize, midnight_utc, release_temporaries
from fieldbank.portrait.families import COMPUTED_FAMILIES, business, household, party
from fieldbank.portrait.inputs import AsOf
from fieldbank.portrait.pipeline import (
    payment_aggregates,
    payment_families_arrow,
    payment_family_arrow,
    payment_sql_templates,
)
from fieldbank.portrait.rollups import rollups_dir, update_rollups
from fieldbank.portrait.state import STATE_DIR, latest_portrait
from fieldbank.portrait.testing import synthetic_tables, write_lake_table, write_synthetic_lake_streaming

console = Console()
START = dt.date(2024, 5, 1)
HISTORY_DAYS = 365


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def business_sql(files: list[str], as_of: dt.date) -> str:
    """One hand-written DuckDB query for the business-activity family's columns."""
    d = f"DATE '{as_of.isoformat()}'"

    def ago(days: int) -> str:
        return f"({d} - INTERVAL {days} DAY)::DATE"

    months = ",\n".join(
        f"sum(amount_minor) FILTER (day >= {ago(30 * (k + 1))}"
        + (f" AND day < {ago(30 * k)}" if k else "") + f") AS m{k}"
        for k in range(12)
    )
    m = [f"coalesce(m{k}, 0)::DOUBLE" for k in range(12)]
    mean = "(" + " + ".join(m) + ") / 12"
    var = "(" + " + ".join(f"({x} - {mean}) ** 2" for x in m) + ") / 12"
    file_list = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    windows = (30, 90, 365)
    per_window = ",\n".join(
        f"sum(amount_minor) FILTER (day >= {ago(w)}) AS biz_revenue_minor_{w}d, "
        f"count(*) FILTER (day >= {ago(w)}) AS biz_sales_n_{w}d, "
        f"count(DISTINCT day) FILTER (day >= {ago(w)}) AS biz_active_days_{w}d"
        for w in windows
    )
    return f"""
WITH p AS (
  SELECT payee_id, payer_id, kind, amount_minor, ts::DATE AS day
  FROM read_parquet({file_list}, hive_partitioning = false)
  WHERE ts < TIMESTAMPTZ '{as_of.isoformat()} 00:00:00+00'
    AND ts >= TIMESTAMPTZ '{(as_of - dt.timedelta(days=365)).isoformat()} 00:00:00+00'
    AND kind IN ('purchase', 'refund')
),
s AS (
  SELECT payee_id AS party_id, {per_window},
         sum(amount_minor) FILTER (day >= {ago(180)} AND day < {ago(90)}) AS prev90,
         {months}
  FROM p WHERE kind = 'purchase' GROUP BY 1
),
cust AS (
  SELECT payee_id, payer_id, count(DISTINCT day) AS days_n, sum(amount_minor) AS amt, max(day) AS last_day
  FROM p WHERE kind = 'purchase' GROUP BY 1, 2
),
c AS (
  SELECT payee_id AS party_id, count(*) FILTER (last_day >= {ago(90)}) AS biz_customers_n_90d,
         count(*) AS biz_customers_n_365d, count(*) FILTER (days_n >= 2) AS rep, max(amt) AS top, sum(amt) AS tot
  FROM cust GROUP BY 1
),
r AS (SELECT payer_id AS party_id, sum(amount_minor) AS refunds FROM p
      WHERE kind = 'refund' AND day >= {ago(90)} GROUP BY 1)
SELECT coalesce(s.party_id, c.party_id) AS party_id,
  {", ".join(f"s.biz_revenue_minor_{w}d, s.biz_sales_n_{w}d, s.biz_active_days_{w}d" for w in windows)},
  CASE WHEN prev90 > 0 THEN coalesce(biz_revenue_minor_90d, 0)::DOUBLE / prev90 - 1 END AS biz_revenue_growth_90d,
  CASE WHEN {mean} > 0 THEN sqrt({var}) / ({mean}) END AS biz_revenue_cv_360d,
  CASE WHEN {mean} > 0 THEN greatest({", ".join(m)}) / ({mean} * 12) END AS biz_peak_month_share_360d,
  c.biz_customers_n_90d, c.biz_customers_n_365d,
  rep::DOUBLE / c.biz_customers_n_365d AS biz_repeat_customer_share_365d,
  top::DOUBLE / tot AS biz_top_customer_share_365d,
  CASE WHEN biz_sales_n_90d > 0 THEN biz_revenue_minor_90d::DOUBLE / biz_sales_n_90d END AS biz_ticket_mean_minor_90d,
  CASE WHEN biz_revenue_minor_90d > 0 THEN coalesce(refunds, 0)::DOUBLE / biz_revenue_minor_90d END
    AS biz_refund_share_90d
FROM s FULL JOIN c ON s.party_id = c.party_id LEFT JOIN r ON r.party_id = coalesce(s.party_id, c.party_id)
ORDER BY 1
"""


def write_lake(lake: Path, tables: dict[str, pa.Table], hold_back_days: list[dt.date]) -> list[pa.Table]:
    """All tables into the lake, except the payments of `hold_back_days` (returned, per day)."""
    payments = tables["payments"]
    held, held_mask = [], pa.array(np.zeros(payments.num_rows, dtype=bool))
    for day in hold_back_days:
        lo = pa.scalar(midnight_utc(day), pa.timestamp("us", tz="UTC"))
        hi = pa.scalar(midnight_utc(day + dt.timedelta(days=1)), pa.timestamp("us", tz="UTC"))
        in_day = pc.and_(pc.greater_equal(payments["ts"], lo), pc.less(payments["ts"], hi))
        held.append(payments.filter(in_day))
        held_mask = pc.or_(held_mask, in_day)
    for name, table in tables.items():
        if name == "payments":
            table = table.filter(pc.invert(held_mask))
        write_lake_table(lake, name, table, file_tag="0")
    return held


def fresh_rollups(lake: Path) -> None:
    shutil.rmtree(rollups_dir(lake), ignore_errors=True)
    update_rollups(lake)


INCREMENTAL_RUNS = 5  # the new day, each time from yesterday's state: the median is the figure
RECOMPUTE_RUNS = 3  # the full recompute it is compared with: the median

SECTIONS = ("abstraction", "full", "incremental", "backfill", "spark", "featuretools", "scale")
FT_WINDOWS_DAYS = (30, 90, 365)


def import_featuretools() -> Any:
    """featuretools 1.31 / woodwork 0.31 predate pandas 3 and setuptools 81, and fail to
    import or to keep their table schemas there. Two compatibility shims, for this benchmark
    only: `pkg_resources.iter_entry_points` (plugin discovery) on importlib.metadata, and a
    caching `.ww` accessor (pandas 3 builds a new accessor object on every attribute access, so
    woodwork's schema was lost between calls; pandas 2 cached it on the object, as here)."""
    import importlib.metadata
    import types

    try:
        import pkg_resources  # noqa: F401
    except ModuleNotFoundError:
        shim = types.ModuleType("pkg_resources")
        shim.iter_entry_points = lambda group, name=None: [  # type: ignore[attr-defined]
            e for e in importlib.metadata.entry_points(group=group) if name is None or e.name == name
        ]
        sys.modules["pkg_resources"] = shim
    import pandas as pd
    import woodwork  # noqa: F401  (registers the .ww accessors)

    class CachedAccessor:
        def __init__(self, name: str, accessor: type) -> None:
            self.name, self.accessor = name, accessor

        def __get__(self, obj: Any, cls: type) -> Any:
            if obj is None:
                return self.accessor
            value = self.accessor(obj)
            object.__setattr__(obj, self.name, value)
            return value

    for klass in (pd.DataFrame, pd.Series):
        acc = klass.__dict__["ww"]
        if not isinstance(acc, CachedAccessor) and hasattr(acc, "_accessor"):
            setattr(klass, "ww", CachedAccessor("ww", acc._accessor))  # noqa: B010, SLF001
    import featuretools

    return featuretools


def featuretools_figure(work: Path, payments_n: int, seed: int, as_of: dt.date) -> tuple[dict, list]:
    """fieldbank's business + household families vs featuretools DFS on the same payments.

    Comparable aggregates: both read the same payments, as_of D, windows of the last 30, 90 and
    365 days. featuretools gets 4 child dataframes of payments (purchases by payee = sales,
    purchases by payer = spend, wage/harvest_sale by payee = income, refunds by payer) and the
    agg primitives sum, mean, count, std, max, num_unique (counterparty), depth 1, one dfs call
    per window (training_window): 6 aggregates x 4 children x 3 windows. fieldbank computes its
    36 business + household features (window sums/counts, distinct customers/merchants/active
    days, growth, monthly CV, shares) from raw Parquet, rollups included. featuretools gets its
    frames already in pandas (loading them is not timed); fieldbank's time includes reading Parquet.
    """
    ft = import_featuretools()
    import pandas as pd

    parties_n = max(200, payments_n // 50)
    lake = work / "lake-featuretools"
    shutil.rmtree(lake, ignore_errors=True)
    tables = synthetic_tables(parties_n, payments_n, START, HISTORY_DAYS, seed=seed)
    for name, table in tables.items():
        write_lake_table(lake, name, table, file_tag="0")

    def fieldbank_families(lake: Path = lake, cached_sql: bool = True) -> list[pa.Table]:
        # A new DuckDB connection per call; the lake's payments under a fixed view name, so the
        # compiled SQL of a call is kept (in memory, sqlcache.py) and the next call renders it.
        inp = load_inputs(connect("duckdb"), lake, use_rollups=False, named_views=cached_sql)
        a = AsOf(as_of)
        cache = payment_sql_templates(inp) if cached_sql else None
        agg = payment_aggregates(inp, a, cache)  # what the pipeline does: one pass for both families
        # What the pipeline does with each family on DuckDB (execute_portrait): one query to
        # Arrow; from cached SQL two at a time, as the latest portrait runs its queries.
        if cache is None:
            return [payment_family_arrow(inp, a, fam, agg) for fam in (business, household)]
        return payment_families_arrow(inp, a, (business, household), agg, cache)

    # The first call in a process pays one-off costs (DuckDB and Ibis warm-up, ~1 s, and making
    # the SQL templates); featuretools' import is not timed either, so the ratio uses the warm
    # calls, which run from the compiled SQL kept by the first: the median of 5 (since session
    # 7: one ~0.4 s call on the shared cores varied 0.3-0.6 s; featuretools' one call lasts
    # ~20 s); all are reported, the second call alone too, and the same warm call compiling
    # its SQL through Ibis again.
    fb_cold_s, _ = timed(fieldbank_families)
    fb_warm = [timed(fieldbank_families) for _ in range(5)]
    fb_warm_s = [t for t, _ in fb_warm]
    fb_s, fb_out = sorted(fb_warm, key=lambda x: x[0])[len(fb_warm) // 2]
    fb_uncached_s, fb_uncached_out = timed(lambda: fieldbank_families(cached_sql=False))
    for got, want in zip(fb_out, fb_uncached_out, strict=True):  # the cached SQL computes the same
        assert got.sort_by("party_id").equals(want.sort_by("party_id")), "cached and compiled SQL differ"
    # Fixed cost (Ibis expression building and compiling, DuckDB planning, opening files): the
    # same call on a lake of 1% of the payments.
    tiny = work / "lake-featuretools-tiny"
    shutil.rmtree(tiny, ignore_errors=True)
    for name, table in synthetic_tables(parties_n, max(1_000, payments_n // 100), START, HISTORY_DAYS,
                                        seed=seed).items():
        write_lake_table(tiny, name, table, file_tag="0")
    fb_tiny_s, _ = timed(lambda: fieldbank_families(tiny))
    shutil.rmtree(tiny, ignore_errors=True)

    pay = tables["payments"].select(["txn_id", "ts", "payer_id", "payee_id", "amount_minor", "kind"]).to_pandas()
    pay["ts"] = pay["ts"].dt.tz_convert(None)  # featuretools wants naive times (UTC here)
    pay = pay[pay["ts"] < pd.Timestamp(as_of)]
    children = {
        "sales": (pay.kind == "purchase", "payee_id", "payer_id"),
        "spend": (pay.kind == "purchase", "payer_id", "payee_id"),
        "income": (pay.kind.isin(["wage", "harvest_sale"]), "payee_id", "payer_id"),
        "refunds": (pay.kind == "refund", "payer_id", "payee_id"),
    }
    frames = {
        name: pay.loc[mask, ["txn_id", "ts", "amount_minor"]].assign(
            party_id=pay.loc[mask, party].to_numpy(), counterparty_id=pay.loc[mask, other].to_numpy())
        for name, (mask, party, other) in children.items()
    }
    parties = tables["parties"].select(["party_id"]).to_pandas()
    cutoff = pd.DataFrame({"party_id": parties.party_id, "time": pd.Timestamp(as_of)})

    def featuretools_dfs() -> list[Any]:
        es = ft.EntitySet("fieldbank")
        es.add_dataframe(dataframe_name="parties", dataframe=parties.copy(), index="party_id")
        for name, frame in frames.items():
            es.add_dataframe(dataframe_name=name, dataframe=frame.copy(), index="txn_id", time_index="ts",
                             logical_types={"counterparty_id": "Categorical", "party_id": "Categorical"})
            es.add_relationship("parties", "party_id", name, "party_id")
        out = []
        for w in FT_WINDOWS_DAYS:
            fm, _ = ft.dfs(entityset=es, target_dataframe_name="parties", cutoff_time=cutoff,
                           training_window=f"{w} days", agg_primitives=["sum", "mean", "count", "std", "max",
                                                                        "num_unique"],
                           trans_primitives=[], max_depth=1, n_jobs=1, verbose=False)
            out.append(fm)
        return out

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ft_s, ft_out = timed(featuretools_dfs)
    # Same input, same windows: featuretools' 90-day sales sum equals fieldbank's 90-day revenue.
    ft90 = ft_out[1]["SUM(sales.amount_minor)"]
    fb_biz = fb_out[0].to_pandas().set_index("party_id")["biz_revenue_minor_90d"].dropna()
    joined = pd.concat([fb_biz.rename("fb"), ft90.rename("ft")], axis=1, join="inner")
    mismatches = int((joined.fb.astype("float64") != joined.ft.astype("float64")).sum())
    assert mismatches == 0, f"featuretools and fieldbank disagree on 90-day revenue for {mismatches} parties"
    ft_features = sum(fm.shape[1] for fm in ft_out)
    fb_features = sum(t.num_columns - 1 for t in fb_out)
    fig = {
        "payments": payments_n, "parties": parties_n, "as_of": as_of.isoformat(), "windows_days": FT_WINDOWS_DAYS,
        "featuretools_version": ft.__version__, "featuretools_s": ft_s, "featuretools_features": ft_features,
        "fieldbank_s": fb_s, "fieldbank_warm_calls_s": fb_warm_s, "fieldbank_second_call_s": fb_warm_s[0],
        "speedup_vs_second_call": ft_s / fb_warm_s[0],
        "fieldbank_first_call_s": fb_cold_s, "fieldbank_without_sql_cache_s": fb_uncached_s,
        "fieldbank_same_call_on_1pct_of_payments_s": fb_tiny_s, "fieldbank_features": fb_features,
        "fieldbank_families": ["business", "household"],
        "speedup": ft_s / fb_s, "speedup_vs_first_call": ft_s / fb_cold_s,
        "speedup_without_sql_cache": ft_s / fb_uncached_s, "goal_speedup_min": 50,
        "checked_equal": f"90-day revenue of {len(joined)} parties: featuretools SUM(sales.amount_minor) "
                         "== fieldbank biz_revenue_minor_90d",
        "load_average": os.getloadavg(),
    }
    row = (f"featuretools DFS / fieldbank business+household ({payments_n:,} payments)",
           f"{ft_s:.2f} s / {fb_s:.2f} s ({ft_features} / {fb_features} features)", f"{ft_s / fb_s:.1f}x faster",
           ">= 50x")
    shutil.rmtree(lake, ignore_errors=True)
    return fig, [row]


def business_abstraction(lake: Path, as_of: dt.date, build_rollups: bool = True) -> tuple[dict, list]:
    """The business family by fieldbank (from raw payments, then from rollups, built from scratch
    first unless the caller just did) against one hand-written DuckDB query on the same raw
    payments; the outputs are checked equal first."""
    files = [str(f) for f in sorted((lake / "payments").rglob("*.parquet"))]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    sql_s, sql_out = timed(lambda: con.sql(business_sql(files, as_of)).to_arrow_table())
    con.close()

    def fieldbank_business(use_rollups: bool) -> pa.Table:
        inp = load_inputs(connect("duckdb"), lake, use_rollups=use_rollups)
        return duckdb_arrow(inp.con, business.compute(inp, AsOf(as_of)))

    fb_s, fb_out = timed(lambda: fieldbank_business(False))
    fb_out = fb_out.sort_by("party_id").select(sql_out.column_names)
    for name in sql_out.column_names:  # same numbers, or the comparison means nothing
        a, b = fb_out[name], sql_out[name]
        if pa.types.is_floating(a.type):
            assert np.allclose(a.fill_null(-1).to_numpy(), b.fill_null(-1).to_numpy(), rtol=1e-9), name
        else:
            assert a.cast(pa.int64()).fill_null(0).equals(b.cast(pa.int64()).fill_null(0)) if name != "party_id" \
                else a.equals(b), name
    rows_n = sql_out.num_rows
    del fb_out, sql_out
    if build_rollups:
        fresh_rollups(lake)
    fbr_s, _ = timed(lambda: fieldbank_business(True))
    fig = {"hand_sql_s": sql_s, "fieldbank_from_raw_s": fb_s, "fieldbank_from_rollups_s": fbr_s,
           "ratio_from_raw": fb_s / sql_s, "ratio_from_rollups": fbr_s / sql_s, "goal_ratio_max": 1.3,
           "rows": rows_n, "load_average": os.getloadavg()}
    rows = [("business family: fieldbank (raw) / hand SQL", f"{fb_s:.2f} s / {sql_s:.2f} s",
             f"{fb_s / sql_s:.2f}x", "<= 1.3x"),
            ("business family: fieldbank (rollups) / hand SQL", f"{fbr_s:.2f} s / {sql_s:.2f} s",
             f"{fbr_s / sql_s:.2f}x", "<= 1.3x")]
    return fig, rows


def scale_figure(work: Path, payments_n: int, seed: int, as_of: dt.date) -> tuple[dict, list]:
    """The full portrait (all families, all parties) on a lake of `payments_n` payments streamed
    to disk: rollups built from scratch, then the portrait from them."""
    parties_n = max(200, payments_n // 50)
    lake = work / "lake-scale"
    shutil.rmtree(lake, ignore_errors=True)
    load_start = os.getloadavg()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"streaming {payments_n:,} payments to Parquet", total=payments_n)
        gen_s, counts = timed(lambda: write_synthetic_lake_streaming(
            lake, parties_n, payments_n, START, HISTORY_DAYS, seed,
            on_chunk=lambda n: progress.advance(task, n)))
    lake_bytes = sum(f.stat().st_size for f in lake.rglob("*.parquet"))
    console.print(f"scale lake: {counts} in {gen_s:.0f} s, {lake_bytes / 1e9:.1f} GB")
    with console.status("rollups from scratch"):
        rollup_s, _ = timed(lambda: fresh_rollups(lake))
    with console.status("full portrait from the rollups"):
        portrait_s, portrait = timed(lambda: execute_portrait(load_inputs(connect("duckdb"), lake), as_of))
    total_s = rollup_s + portrait_s
    rows_n, features_n = portrait.num_rows, portrait.num_columns - 2
    del portrait
    with console.status("business family: fieldbank vs one hand-written query, on the same payments"):
        abstraction, abstraction_rows = business_abstraction(lake, as_of, build_rollups=False)
    fig = {
        "payments": payments_n, "parties": parties_n, "rows_per_table": counts, "lake_gb": lake_bytes / 1e9,
        "generate_s": gen_s, "rollup_build_s": rollup_s, "portrait_from_rollups_s": portrait_s, "total_s": total_s,
        "rows": rows_n, "features": features_n, "rows_per_s": rows_n / total_s,
        "payments_per_s": payments_n / total_s, "goal": "100M payments <= 300 s",
        "linear_extrapolation_to_100M_s": total_s * 100_000_000 / payments_n,
        "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(),
        "business_family": abstraction,
    }
    rows = [(f"full portrait at scale ({payments_n:,} payments, {parties_n:,} parties)",
             f"{rollup_s:.0f} s rollups + {portrait_s:.0f} s portrait",
             f"{payments_n / total_s:,.0f} payments/s, {rows_n / total_s:,.0f} rows/s",
             "100M payments <= 300 s")] + [(f"{what} ({payments_n:,} payments)", *rest) for what, *rest in abstraction_rows]
    shutil.rmtree(lake, ignore_errors=True)
    return fig, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--payments", type=int, default=5_000_000, help="payments in the lake (issue: 100M)")
    ap.add_argument("--parties", type=int, default=None, help="parties (default payments / 50)")
    ap.add_argument("--spark-payments", type=int, default=10_000_000,
                    help="payments for the Spark-vs-DuckDB comparison (issue: 10M); 0 skips Spark")
    ap.add_argument("--featuretools-payments", type=int, default=1_000_000,
                    help="payments for the featuretools DFS comparison (issue: 1M); 0 skips it")
    ap.add_argument("--scale-payments", type=int, default=0,
                    help="payments in the streamed lake of the scale figure (issue: 100M); 0 skips it")
    ap.add_argument("--only", default=None,
                    help=f"comma-separated sections to run ({', '.join(SECTIONS)}); the JSON keeps the others")
    ap.add_argument("--backfill", type=int, default=3, help="month-start dates in the backfill figure")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", type=Path, default=None, help="where the synthetic lakes go (default: temp)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "portrait.json")
    args = ap.parse_args()
    assert 1_000 <= args.payments <= 200_000_000, "payments out of range"
    parties = args.parties or max(200, args.payments // 50)
    sections = set(SECTIONS if args.only is None else args.only.split(","))
    assert sections <= set(SECTIONS), f"unknown sections {sorted(sections - set(SECTIONS))}"
    if not args.spark_payments:
        sections.discard("spark")
    if not args.featuretools_payments:
        sections.discard("featuretools")
    if not args.scale_payments:
        sections.discard("scale")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-portrait-"))
    work.mkdir(parents=True, exist_ok=True)
    as_of = START + dt.timedelta(days=HISTORY_DAYS)  # the new day is as_of - 1
    new_day = as_of - dt.timedelta(days=1)
    results: dict[str, Any] = {
        "config": {"payments": args.payments, "parties": parties, "history_days": HISTORY_DAYS,
                   "as_of": as_of.isoformat(), "seed": args.seed, "spark_payments": args.spark_payments},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "duckdb": duckdb.__version__,
                    "load_average_at_start": os.getloadavg()},
        "figures": {},
    }
    if args.only is not None and args.out.exists():  # keep the sections not run now
        previous = json.loads(args.out.read_text())
        results = {**previous, "figures": previous.get("figures", {})}
        results["machine"] = {**previous.get("machine", {}), "python": platform.python_version(),
                              "duckdb": duckdb.__version__}
    rows: list[tuple[str, str, str, str]] = []

    lake_sections = sections & {"abstraction", "full", "incremental", "backfill"}
    if lake_sections:
        main_lake_figures(args, parties, work, as_of, new_day, sections, results, rows)
    if "spark" in sections:
        spark_figure(args, work, as_of, results, rows)
    if "featuretools" in sections:
        fig, new_rows = featuretools_figure(work, args.featuretools_payments, args.seed, as_of)
        results["figures"]["featuretools"] = fig
        rows += new_rows
    if "scale" in sections:
        fig, new_rows = scale_figure(work, args.scale_payments, args.seed, as_of)
        results["figures"]["full_portrait_at_scale"] = fig
        rows += new_rows
    results["machine"]["load_average_at_end"] = os.getloadavg()

    table = Table(title=f"portrait benchmark (sections: {', '.join(s for s in SECTIONS if s in sections)})")
    for col in ("figure", "timings", "result", "goal"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    console.print(f"[green]bench_portrait[/green]: {len(rows)} figures -> {args.out}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


def main_lake_figures(args: argparse.Namespace, parties: int, work: Path, as_of: dt.date, new_day: dt.date,
                      sections: set[str], results: dict[str, Any], rows: list) -> None:
    """abstraction, full, incremental, backfill: all on the --payments lake."""
    results["config"] = {"payments": args.payments, "parties": parties, "history_days": HISTORY_DAYS,
                         "as_of": as_of.isoformat(), "seed": args.seed, "spark_payments": args.spark_payments}
    results["machine"]["load_average_at_start"] = os.getloadavg()
    with console.status("generating the synthetic lake"):
        gen_s, tables = timed(lambda: synthetic_tables(parties, args.payments, START, HISTORY_DAYS, seed=args.seed))
        lake = work / "lake"
        shutil.rmtree(lake, ignore_errors=True)
        # The last two days are held back: yesterday's run (the warm-up of the incremental section), today's.
        prev_day = new_day - dt.timedelta(days=1)
        held_prev, held = write_lake(lake, tables, [prev_day, new_day])
    console.print(f"lake: {args.payments:,} payments, {parties:,} parties in {gen_s:.1f} s -> {lake}")

    # 1. Business activity: fieldbank (Ibis) vs one hand-written DuckDB query, same raw payments.
    # The held-back day goes in too, so both see all payments.
    write_lake_table(lake, "payments", held_prev, file_tag="prev-day")
    write_lake_table(lake, "payments", held, file_tag="new-day")
    if "abstraction" in sections:
        fig, new_rows = business_abstraction(lake, as_of)
        results["figures"]["business_family"] = fig
        rows += new_rows

    # 2. Full portrait, all families, all parties: from scratch (rollups built) and from raw.
    if "full" in sections:
        def full_portrait(use_rollups: bool) -> pa.Table:
            if use_rollups:
                fresh_rollups(lake)
            return execute_portrait(load_inputs(connect("duckdb"), lake, use_rollups=use_rollups), as_of)

        full_s, portrait = timed(lambda: full_portrait(True))
        raw_s, _ = timed(lambda: full_portrait(False))
        results["figures"]["full_portrait"] = {
            "seconds_with_rollup_build": full_s, "seconds_from_raw": raw_s, "rows": portrait.num_rows,
            "features": portrait.num_columns - 2, "rows_per_s": portrait.num_rows / full_s,
            "payments_per_s": args.payments / full_s, "load_average": os.getloadavg(),
        }
        rows.append(("full portrait (rollups built from scratch)", f"{full_s:.2f} s",
                     f"{portrait.num_rows / full_s:,.0f} rows/s", "100M payments <= 300 s"))
        rows.append(("full portrait (raw, no persisted rollups)", f"{raw_s:.2f} s",
                     f"{portrait.num_rows / raw_s:,.0f} rows/s", ""))

    # 3. Incremental: one new day on top of 365 days vs a full recompute. The state (running
    # window totals, pairs) is built two days before and advanced by "yesterday's run" (untimed).
    if "incremental" in sections:
        for day, tag in ((prev_day, "prev-day"), (new_day, "new-day")):
            (lake / "payments").joinpath("month=" + day.strftime("%Y-%m"), f"part-{tag}.parquet").unlink()
        fresh_rollups(lake)  # rollups for the 365 days before the day before the new day
        shutil.rmtree(lake / STATE_DIR, ignore_errors=True)
        build_s, (_, built) = timed(lambda: latest_portrait(lake, prev_day))
        assert built.action == "built", built
        # Yesterday's run (the day before the new day), as a daily job would have done it: its
        # rollup update and advance make the compiled-SQL templates today's run reuses
        # (sqlcache.py). Timed too: the first advance after a build, templates made.
        write_lake_table(lake, "payments", held_prev, file_tag="prev-day")
        first_s, (_, first) = timed(lambda: latest_portrait(lake, new_day))
        assert (first.action, first.days) == ("advanced", 1), first

        # Today's run, the daily job: one call updates the rollups with the new day's payment
        # file, advances the state and computes the portrait (the lake-only families' queries
        # run beside the state's advance, state.latest_portrait). A single 0.6 s call varies by
        # +-15% here, so the day is run INCREMENTAL_RUNS times from copies of yesterday's state
        # and rollups (the new day's file removed) and the median is the figure.
        saved = work / "yesterday"
        shutil.rmtree(saved, ignore_errors=True)
        for name in (STATE_DIR, rollups_dir(lake).name):
            shutil.copytree(lake / name, saved / name)
        days: list[tuple[float, dict[str, float]]] = []
        for run in range(INCREMENTAL_RUNS):
            (new_file,) = write_lake_table(lake, "payments", held, file_tag="new-day")
            split: dict[str, float] = {}
            day_s, (inc, update) = timed(lambda: latest_portrait(lake, as_of, seconds=split))
            assert (update.action, update.days) == ("advanced", 1), update
            upd = update.rollups
            assert upd is not None and upd.days_rebuilt == 1 and upd.files_read == 1, upd
            days.append((day_s, {**split, "rollups": upd.seconds}))
            if run < INCREMENTAL_RUNS - 1:  # back to yesterday (the last run's state stays)
                new_file.unlink()
                for name in (STATE_DIR, rollups_dir(lake).name):
                    shutil.rmtree(lake / name)
                    shutil.copytree(saved / name, lake / name)
        days.sort(key=lambda d: d[0])
        incremental_s, split = days[len(days) // 2]
        recomputes = []
        for _ in range(RECOMPUTE_RUNS):
            rebuild_s, _ = timed(lambda: fresh_rollups(lake))
            full_again_s, full = timed(lambda: execute_portrait(load_inputs(connect("duckdb"), lake), as_of))
            recomputes.append((rebuild_s + full_again_s, rebuild_s, full_again_s))
        recomputes.sort()
        recompute_s, rebuild_s, full_again_s = recomputes[len(recomputes) // 2]
        assert_same_values(inc, full)  # the incremental portrait is the full one
        open_s, state_s, inc_portrait_s = split["open"], split["state"] - split["open"], split["portrait"]
        rollup_s = split["rollups"]
        results["figures"]["incremental"] = {
            "new_day_payments": held.num_rows, "rollup_update_s": rollup_s, "rollup_rebuild_s": rebuild_s,
            "rollup_ratio": rebuild_s / rollup_s, "open_and_rollups_s": open_s, "state_advance_s": state_s,
            "state_build_s": build_s,
            "first_advance_after_build_s": {"rollups_state_and_portrait_s": first_s,
                                            "note": "yesterday's run: compiles the SQL templates today reuses"},
            "portrait_from_state_s": inc_portrait_s,
            "incremental_total_s": incremental_s, "full_recompute_s": recompute_s,
            "incremental_runs_s": [d[0] for d in days], "full_recompute_runs_s": [r[0] for r in recomputes],
            "method": f"median of {INCREMENTAL_RUNS} runs of the day (each from yesterday's state) against the "
                      f"median of {RECOMPUTE_RUNS} full recomputes (rollups rebuilt + full portrait)",
            "full_portrait_from_rollups_s": full_again_s,
            "end_to_end_ratio": recompute_s / incremental_s,
            "checked_equal": "incremental portrait == full recompute (ints/strings exact, floats 1e-9 relative)",
            "goal_ratio_min": 20,
            "portrait_seconds_by_family": family_seconds(lake, as_of),
            "load_average": os.getloadavg(),
        }
        rows.append(("new day: rollup update / rebuild of 365 days", f"{rollup_s:.2f} s / {rebuild_s:.2f} s",
                     f"{rebuild_s / rollup_s:.1f}x faster", ""))
        rows.append((f"new day (median of {INCREMENTAL_RUNS}): open + rollups, state, portrait / full recompute "
                     f"(median of {RECOMPUTE_RUNS})",
                     f"{open_s:.2f} + {state_s:.2f} + {inc_portrait_s:.2f} s / {recompute_s:.2f} s "
                     f"(runs {min(d[0] for d in days):.2f}-{max(d[0] for d in days):.2f} s)",
                     f"{recompute_s / incremental_s:.1f}x faster", ">= 20x"))

    # 4. Backfill: month-start dates reuse the rollups.
    if "backfill" in sections:
        dates = [dt.date(as_of.year - (1 if as_of.month - k <= 0 else 0), (as_of.month - k - 1) % 12 + 1, 1)
                 for k in range(args.backfill)]
        inp = load_inputs(connect("duckdb"), lake)
        bf_s, _ = timed(lambda: [execute_portrait(inp, d) for d in dates])
        results["figures"]["backfill"] = {"dates": [d.isoformat() for d in dates], "seconds": bf_s,
                                          "seconds_per_date": bf_s / max(1, len(dates)),
                                          "load_average": os.getloadavg()}
        rows.append((f"backfill: {len(dates)} dates on shared rollups", f"{bf_s:.2f} s",
                     f"{bf_s / max(1, len(dates)):.2f} s/date", ""))


def assert_same_values(got: pa.Table, expected: pa.Table) -> None:
    """Same rows, columns and values: integers and strings exactly, floats within 1e-9 relative."""
    assert got.schema == expected.schema and got["party_id"].equals(expected["party_id"])
    for name in expected.column_names:
        g, e = got[name], expected[name]
        if pa.types.is_floating(e.type):
            assert g.is_null().equals(e.is_null()), name
            assert np.allclose(g.drop_null().to_numpy(), e.drop_null().to_numpy(), rtol=1e-9, atol=0), name
        else:
            assert g.equals(e), name


def family_seconds(lake: Path, as_of: dt.date) -> dict[str, float]:
    """Where the latest portrait's time goes: each family alone, from the persisted rollups."""
    inp = load_inputs(connect("duckdb"), lake)
    a = AsOf(as_of)
    out = {}
    for family in (party, *COMPUTED_FAMILIES):
        out[family.__name__.rsplit(".", 1)[-1]], _ = timed(lambda f=family: materialize(inp.con, f.compute(inp, a)))
    release_temporaries(inp.con)
    return out


def spark_figure(args: argparse.Namespace, work: Path, as_of: dt.date, results: dict[str, Any], rows: list) -> None:
    """Spark local[2] vs DuckDB, same (smaller) lake, portraits from the same rollups."""
    small = work / "lake-spark"
    shutil.rmtree(small, ignore_errors=True)
    sp = synthetic_tables(max(200, args.spark_payments // 50), args.spark_payments, START, HISTORY_DAYS,
                          seed=args.seed)
    for name, table in sp.items():
        write_lake_table(small, name, table, file_tag="0")
    update_rollups(small)
    duck_s, duck = timed(lambda: execute_portrait(load_inputs(connect("duckdb"), small), as_of))
    from fieldbank.portrait.engine import spark_session

    start_s, session = timed(spark_session)
    spark_s, spark_out = timed(lambda: execute_portrait(load_inputs(connect("spark", spark=session), small),
                                                        as_of))
    session.stop()
    assert spark_out.num_rows == duck.num_rows
    results["figures"]["spark_vs_duckdb"] = {
        "payments": args.spark_payments, "duckdb_s": duck_s, "spark_s": spark_s,
        "spark_session_start_s": start_s, "spark_over_duckdb": spark_s / duck_s,
        "load_average": os.getloadavg(),
    }
    rows.append((f"Spark local[2] / DuckDB ({args.spark_payments:,} payments)",
                 f"{spark_s:.2f} s / {duck_s:.2f} s", f"{spark_s / duck_s:.1f}x", "reported"))


if __name__ == "__main__":
    main()
