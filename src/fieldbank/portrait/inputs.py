"""What a feature family sees: the lake's tables (payments as rollups) and the as_of date."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import ibis
import ibis.expr.types as ir

from fieldbank.portrait import rollups
from fieldbank.portrait.engine import (
    date_literal,
    engine_of,
    parquet_files,
    read_lake_table,
    ts_literal,
)


@dataclass(frozen=True)
class AsOf:
    """The portrait date D: features see events with timestamp < D 00:00:00 UTC only."""

    day: dt.date

    def __post_init__(self) -> None:
        assert isinstance(self.day, dt.date) and not isinstance(self.day, dt.datetime), self.day

    @property
    def ts(self) -> ir.TimestampScalar:
        """D at midnight UTC, the exclusive upper bound of every event time."""
        return ts_literal(self.day)

    def start_day(self, window_days: int) -> dt.date:
        """First day of the window [D - window_days, D)."""
        assert 0 < window_days <= 3660, window_days
        return self.day - dt.timedelta(days=window_days)

    def start_date(self, window_days: int) -> ir.DateScalar:
        return date_literal(self.start_day(window_days))

    def start_ts(self, window_days: int) -> ir.TimestampScalar:
        return ts_literal(self.start_day(window_days))

    @property
    def date(self) -> ir.DateScalar:
        return date_literal(self.day)


@dataclass(frozen=True)
class Inputs:
    """The lake as Ibis tables on one backend. Payments appear only through their rollups."""

    con: ibis.BaseBackend
    parties: ir.Table
    party_day: ir.Table
    pair_day: ir.Table
    invoices: ir.Table
    bills: ir.Table
    loans: ir.Table
    # The raw payments' Parquet files, when payments are read raw on DuckDB (no rollups):
    # the payment aggregates are then computed from them in numpy (raw_payments.py).
    payment_files: tuple[Path, ...] | None = None
    # DuckDB: the invoices' and loans' Parquet files the views read; the supply chain family
    # is then computed from them in numpy (raw_invoices.py).
    invoice_files: tuple[Path, ...] | None = None
    loan_files: tuple[Path, ...] | None = None


def load_inputs(con: ibis.BaseBackend, lake_dir: Path, use_rollups: bool = True,
                named_views: bool = False, update_rollups: bool = True) -> Inputs:
    """Tables of the lake at `lake_dir`. With `use_rollups`, payments come from the persisted
    daily rollups (updated first, incrementally); otherwise the rollups are expressions over
    the raw payments, evaluated inside each portrait's queries (the pipeline reads them once
    per date: one pass for all window sums, one for the pair state), so the engine pushes
    each query's filters and projections down to the raw scan.

    `named_views` (DuckDB): every table read is a view named `lake_<table>` (replacing any
    view of that name on `con`; without rollups the payments are `lake_payments`), so the SQL
    compiled over the inputs is the same in every process and connection and can be kept
    (sqlcache.py). Otherwise the names are generated per process. `update_rollups=False`: the
    caller has just updated the rollups itself."""
    lake_dir = Path(lake_dir)

    def _name(table: str) -> str | None:
        return f"lake_{table}" if named_views else None

    payment_files = None
    if use_rollups:
        if update_rollups:  # on `con` when it is DuckDB (no second connection)
            rollups.update_rollups(lake_dir, con if engine_of(con) == "duckdb" else None)
        party_day = rollups.read_rollup(con, lake_dir, "party_day", _name("party_day"))
        pair_day = rollups.read_rollup(con, lake_dir, "pair_day", _name("pair_day"))
    else:
        payments = read_lake_table(con, lake_dir, "payments", _name("payments"))
        party_day = rollups.party_day_rows(payments, engine_of(con))  # the same sums, without grouping first
        pair_day = rollups.pair_day(payments, engine_of(con))
        if engine_of(con) == "duckdb":
            payment_files = tuple(parquet_files(lake_dir / "payments"))  # the files the view reads
    return Inputs(
        con=con,
        parties=read_lake_table(con, lake_dir, "parties", _name("parties")),
        party_day=party_day,
        pair_day=pair_day,
        invoices=read_lake_table(con, lake_dir, "invoices", _name("invoices")),
        bills=read_lake_table(con, lake_dir, "bills", _name("bills")),
        loans=read_lake_table(con, lake_dir, "loans", _name("loans")),
        payment_files=payment_files,
        invoice_files=tuple(parquet_files(lake_dir / "invoices")) if engine_of(con) == "duckdb" else None,
        loan_files=tuple(parquet_files(lake_dir / "loans")) if engine_of(con) == "duckdb" else None,
    )
