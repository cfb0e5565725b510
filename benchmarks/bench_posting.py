"""Benchmark: posting throughput on PostgreSQL: balanced transfers/s with idempotency keys,
one client and 8 concurrent clients, against a plain INSERT of the same rows as baseline.

A transfer = one transaction: claim the idempotency key (INSERT into idempotency_keys),
insert 2 journal lines, then the header (the database checks the entry balances and that the
lines are closed; the deferred constraint trigger runs at COMMIT), store the response.
Baseline = the same four rows INSERTed, one transaction each, into look-alike tables with no
triggers, no foreign keys and no checks: what durability alone costs. Ratio = transfers/s /
baseline rows-sets/s.

    uv run --frozen python benchmarks/bench_posting.py --transfers 2000          # quick
    uv run --frozen python benchmarks/bench_posting.py --transfers 20000         # the figure
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import threading
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, insert, text

from fieldbank.bank import ledger
from fieldbank.bank.db import make_engine, migrate
from fieldbank.bank.models import IdempotencyKey

console = Console()
PG_URL = os.environ.get("FIELDBANK_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).parent / "results" / "posting.json"
DAY = dt.date(2026, 6, 1)
ROUNDS = 2  # each figure = mean of ROUNDS interleaved measurements

BASELINE_DDL = [
    "CREATE TABLE plain_keys (key varchar(200) PRIMARY KEY, operation varchar(40), request_hash varchar(64), "
    "response_json text, created_at timestamptz DEFAULT now())",
    "CREATE TABLE plain_lines (entry_id varchar(120), line_no bigint, account_code varchar(40), loan_id bigint, "
    "amount_minor bigint, PRIMARY KEY (entry_id, line_no))",
    "CREATE TABLE plain_entries (entry_id varchar(120) PRIMARY KEY, business_date date, kind varchar(24), "
    "loan_id bigint, line_count int, reverses_entry_id varchar(120), memo varchar(200), created_at timestamptz DEFAULT now())",
]


def transfer(engine, client: int, i: int) -> None:  # noqa: ANN001
    key = f"c{client}-t{i}"
    amount = 100 + (i * 7919) % 100_000
    with engine.begin() as conn:
        conn.execute(insert(IdempotencyKey).values(key=key, operation="transfer", request_hash="h" * 64))
        ledger.post_entry(conn, entry_id=f"tx-{key}", business_date=DAY, kind="transfer",
                          lines=[ledger.Line(ledger.CLEARING, amount), ledger.Line(ledger.SUSPENSE, -amount)])
        conn.execute(text("UPDATE idempotency_keys SET response_json = :r WHERE key = :k"),
                     {"r": json.dumps({"entry_id": f"tx-{key}"}), "k": key})


def plain(engine, client: int, i: int) -> None:  # noqa: ANN001
    key = f"c{client}-t{i}"
    amount = 100 + (i * 7919) % 100_000
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO plain_keys (key, operation, request_hash) VALUES (:k, 'transfer', :h)"),
                     {"k": key, "h": "h" * 64})
        conn.execute(text("INSERT INTO plain_lines VALUES (:e, 1, 'CLEARING', NULL, :a), (:e, 2, 'SUSPENSE', NULL, :b)"),
                     {"e": f"tx-{key}", "a": amount, "b": -amount})
        conn.execute(text("INSERT INTO plain_entries (entry_id, business_date, kind, line_count, memo) "
                          "VALUES (:e, :d, 'transfer', 2, '')"), {"e": f"tx-{key}", "d": DAY})
        conn.execute(text("UPDATE plain_keys SET response_json = :r WHERE key = :k"),
                     {"r": json.dumps({"entry_id": f"tx-{key}"}), "k": key})


def measure(fn, engine, clients: int, per_client: int, offset: int) -> float:  # noqa: ANN001
    """Transfers per second with `clients` threads, each on its own connection."""
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def worker(c: int) -> None:
        barrier.wait()
        try:
            for i in range(per_client):
                fn(engine, offset + c, i)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert not errors, errors[:3]
    return clients * per_client / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfers", type=int, default=20_000, help="transfers per measurement")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    assert 80 <= args.transfers <= 1_000_000
    schema = f"bench_post_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(PG_URL, schema=schema, pool_size=10)
    rows = []
    try:
        migrate(engine)
        with engine.begin() as conn:
            for ddl in BASELINE_DDL:
                conn.execute(text(ddl))
        offset = 0
        for clients in (1, 8):
            per_client = max(10, args.transfers // clients // ROUNDS)
            baseline_rates, posted_rates = [], []
            for _ in range(ROUNDS):  # interleaved, so both see the same machine load
                with console.status(f"{clients} client(s): plain INSERT baseline"):
                    baseline_rates.append(measure(plain, engine, clients, per_client, offset))
                with console.status(f"{clients} client(s): balanced transfers with idempotency keys"):
                    posted_rates.append(measure(transfer, engine, clients, per_client, offset))
                offset += clients
            baseline = sum(baseline_rates) / ROUNDS
            posted = sum(posted_rates) / ROUNDS
            rows.append({"clients": clients, "transfers": clients * per_client * ROUNDS,
                         "transfers_per_s": round(posted), "plain_insert_per_s": round(baseline),
                         "ratio_vs_plain": round(posted / baseline, 3)})
        with engine.connect() as conn:
            check = ledger.check_books(conn)
        assert check.ok, check
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    table = Table(title="posting throughput on PostgreSQL (one transaction per transfer)")
    for col in ("clients", "transfers", "transfers/s (ledger + idempotency)", "plain INSERT sets/s", "ratio"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["clients"]), f"{r['transfers']:,}", f"{r['transfers_per_s']:,}",
                      f"{r['plain_insert_per_s']:,}", f"{r['ratio_vs_plain']:.2f}")
    console.print(table)
    payload = {"benchmark": "posting", "database": "postgresql",
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    console.print(f"posting: {rows[0]['transfers_per_s']:,}/s single client, {rows[1]['transfers_per_s']:,}/s with 8 "
                  f"clients ({rows[1]['ratio_vs_plain']:.2f}x plain INSERT); books balance; JSON in {args.out}")


if __name__ == "__main__":
    main()
