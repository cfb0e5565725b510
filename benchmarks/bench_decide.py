"""Benchmark: the decision service under load, one real `fieldbank serve` process on loopback,
every decision written to the database, on SQLite and on PostgreSQL.

For each database and each --workers count: start `fieldbank serve` (a separate process), then an
open-loop load generator (asyncio, raw HTTP/1.1 keep-alive connections, so the generator
costs little CPU on the shared cores) sends requests at a fixed rate for a fixed time:

* baseline: `GET /health` at the target rate (the app, the HTTP stack and the generator, no work);
* decisions: `POST /v1/applications` at each rate in --rates, parties cycling over the
  portrait, a fresh Idempotency-Key each.

Latency is measured from the request's scheduled send time (no coordinated omission) to the
last byte of the response. Reported: p50/p99 latency, the achieved rate, errors, the
per-step breakdown from the `Server-Timing` header (validation, fraud, portrait, scoring,
rules, write; "http+framework" = the rest of the server-side time is not measurable from
the header, so it is reported as total minus steps), and a check that the database holds
exactly one decision per 201 response.

    uv run --frozen python benchmarks/bench_decide.py                    # ~4 minutes incl. setup
    uv run --frozen python benchmarks/bench_decide.py --rates 100,300 --seconds 10
    uv run --frozen python benchmarks/bench_decide.py --rates 300 --repeat 3   # p99 per round, and its median
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

from fieldbank.api.process import Served, start_serve, stop

console = Console(width=200)
PG_URL = os.environ.get("FIELDBANK_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).parent / "results" / "decide.json"
CACHE = Path(__file__).resolve().parents[1] / "var" / "bench" / "decide_economy"
STEPS = ("lookup", "validation", "fraud", "portrait", "scoring", "rules", "write")
MAX_IN_FLIGHT = 256  # the generator's bound: beyond this the server is saturated, we stop waiting
PAUSE_BETWEEN_PHASES_S = 1.0  # lets the previous phase's backlog drain before the next is timed
STARTUP_LIMIT_S = 120


def build_economy(parties: int) -> Path:
    """Simulate, ingest, train and promote once; reused by later runs (same parameters)."""
    from fieldbank.risk.testing import trained_economy

    data_dir = CACHE / f"p{parties}"
    if (data_dir / ".complete").exists():
        return data_dir
    shutil.rmtree(data_dir, ignore_errors=True)
    console.print(f"building the economy once: {parties:,} parties x 18 months, portraits, models -> {data_dir}")
    trained_economy(data_dir, parties=parties, promote=True)
    shutil.rmtree(data_dir / "raw")
    (data_dir / ".complete").touch()
    return data_dir


def portrait_parties(data_dir: Path) -> list[str]:
    import pyarrow.parquet as pq

    from fieldbank.risk.scoring import newest_portrait_date

    day = newest_portrait_date(data_dir)
    return pq.read_table(data_dir / "portraits" / f"as_of={day}" / "part-0.parquet", columns=["party_id"])[
        "party_id"].to_pylist()


def start_server(data_dir: Path, database_url: str, workers: int) -> Served:
    """One `fieldbank serve`, returned once its decision service says it is ready (with several
    workers, the one that answers; the others load the same files at the same time). Its output
    goes to a log file beside the economy: a pipe nobody reads fills up, and a server logging
    errors then blocks on its next line instead of failing the run."""
    log_path = CACHE / f"serve_{database_url.split(':', 1)[0].split('+')[0]}_x{workers}.log"
    console.print(f"server output: {log_path}")
    return start_serve(data_dir, extra_args=["--database-url", database_url, "--workers", str(workers)],
                       output=log_path.open("w"),
                       startup_limit_s=STARTUP_LIMIT_S,
                       env={"FIELDBANK_API_KEYS": json.dumps(["bench-key"])}, ready_path="/v1/status",
                       headers={"X-API-Key": "bench-key"},
                       ready=lambda r: r.status_code == 200 and r.json().get("ready") is True)


class Conn:
    """One keep-alive HTTP/1.1 connection: send a request, read one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body


def application_request(party: str, key: str) -> bytes:
    body = json.dumps({"party_id": party, "consent": True, "requested_amount_minor": 500_000, "term_days": 180,
                       "purpose": "working_capital"}).encode()
    return (f"POST /v1/applications HTTP/1.1\r\nHost: bench\r\nX-API-Key: bench-key\r\nIdempotency-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


HEALTH = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"


async def open_pool(port: int) -> asyncio.Queue[Conn]:
    """MAX_IN_FLIGHT keep-alive connections, each used once (GET /health) so the server has
    accepted and set up all of them before a phase: otherwise the first requests of a phase
    wait behind the server accepting hundreds of new connections, which measures the
    benchmark's connection storm, not the service."""
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    conns = [Conn(*await asyncio.open_connection("127.0.0.1", port)) for _ in range(MAX_IN_FLIGHT)]
    for status, _h, _b in await asyncio.gather(*(c.request(HEALTH) for c in conns)):
        assert status == 200, status
    for c in conns:
        pool.put_nowait(c)
    return pool


async def close_pool(pool: asyncio.Queue[Conn]) -> None:
    while not pool.empty():
        pool.get_nowait().writer.close()


async def run_phase(pool: asyncio.Queue[Conn], make_request, rate_per_s: float, seconds: float) -> dict:  # noqa: ANN001
    """Open loop: request i is due at start + i/rate and is started then, whatever the earlier
    ones are doing; latency counts from that due time (no coordinated omission). Each request
    becomes a task at its due time: creating thousands of tasks up front would itself delay
    the first requests, a cost of the generator, not of the server."""
    n = int(rate_per_s * seconds)
    latencies, statuses, timings = [], [], []

    async def one(i: int, due: float) -> None:
        conn = await pool.get()
        try:
            status, headers, _body = await conn.request(make_request(i))
        finally:
            pool.put_nowait(conn)
        latencies.append((time.perf_counter() - due) * 1000)
        statuses.append(status)
        if "server-timing" in headers:
            timings.append({p.split(";dur=")[0]: float(p.split(";dur=")[1])
                            for p in headers["server-timing"].split(", ")})

    lag_ms = [0.0]

    async def watch_lag() -> None:
        """How late this generator's own loop wakes up: a stall here is the generator's, not
        the server's, and would show in every latency of the phase."""
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lag_ms.append((time.perf_counter() - t - 0.005) * 1000)

    watcher = asyncio.create_task(watch_lag())
    # The generator's own garbage collector, off while a phase runs: its first full collection
    # walks every object of the libraries this script imports (pandas, pyarrow, rich, ...) and
    # paused the generator's loop for ~100 ms once per run, which then fired the requests due
    # meanwhile as one burst (seen as `gen lag max ms`). The phase's garbage is a few MB.
    gc.collect()
    gc.freeze()
    gc.disable()
    t0 = start = time.perf_counter()
    tasks = []
    for i in range(n):
        due = start + i / rate_per_s
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    gc.enable()
    watcher.cancel()
    lat = np.array(latencies)
    out = {
        "target_per_s": rate_per_s, "requests": n, "seconds": round(elapsed, 2),
        "achieved_per_s": round(n / elapsed, 1),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 2),
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 2),
        "latency_ms_max": round(float(lat.max()), 2),
        "generator_lag_ms_max": round(max(lag_ms), 2),
        "status_counts": {str(s): statuses.count(s) for s in sorted(set(statuses))},
    }
    if timings:
        out["steps_ms_mean"] = {s: round(float(np.mean([t.get(s, 0.0) for t in timings])), 3) for s in STEPS}
        out["steps_ms_p99"] = {s: round(float(np.percentile([t.get(s, 0.0) for t in timings], 99)), 3) for s in STEPS}
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server and its worker processes: a figure the other jobs
    on a shared machine cannot inflate, unlike latency."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def database_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL process by pid (none for SQLite, which runs inside the server)."""
    out = {}
    for proc in psutil.process_iter(["name", "username"]):
        if proc.info["name"] == "postgres" or proc.info["username"] == "postgres":
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
    return out


def machine_busy_seconds() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - t.iowait


async def measured(server: subprocess.Popen, phase) -> dict:  # noqa: ANN001
    """The phase's latencies plus CPU per request of the server, the database, this load
    generator, and everything else on the machine (other jobs: a busy machine shows here)."""
    await asyncio.sleep(PAUSE_BETWEEN_PHASES_S)
    db_before = database_cpu()
    before = (cpu_seconds(server.pid), time.process_time(), machine_busy_seconds())
    out = await phase
    after = (cpu_seconds(server.pid), time.process_time(), machine_busy_seconds())
    db_after = database_cpu()
    server_s, generator_s, busy_s = (a - b for a, b in zip(after, before))
    # Backends that started or ended during the phase: new connections, i.e. the server's pool
    # overflowing (a backend started and gone within the phase is not seen; its CPU is in "other").
    db_s = sum(db_after[p] - db_before.get(p, 0.0) for p in db_after)
    out["database_processes_started"] = len(db_after.keys() - db_before.keys())
    out["database_processes_ended"] = len(db_before.keys() - db_after.keys())
    per_request = 1000 / out["requests"]
    out["server_cpu_ms_per_request"] = round(server_s * per_request, 3)
    out["database_cpu_ms_per_request"] = round(db_s * per_request, 3)
    out["generator_cpu_ms_per_request"] = round(generator_s * per_request, 3)
    out["other_cpu_ms_per_request"] = round(max(busy_s - server_s - db_s - generator_s, 0.0) * per_request, 3)
    out["machine_cpu_busy_share"] = round(busy_s / out["seconds"] / os.cpu_count(), 3)
    return out


def bench_database(label: str, data_dir: Path, database_url: str, parties: list[str], rates: list[float],
                   seconds: float, workers: int, repeat: int = 1) -> dict:
    served = start_server(data_dir, database_url, workers)
    server, port = served.process, int(served.base_url.rsplit(":", 1)[1])
    try:
        run = uuid.uuid4().hex[:6]
        counter = iter(range(10**9))

        def apply_request(i: int) -> bytes:
            j = next(counter)
            return application_request(parties[j % len(parties)], f"bench-{run}-{j}")

        async def drive() -> tuple[dict, dict]:
            pool = await open_pool(port)
            try:
                warmup = await run_phase(pool, apply_request, 50, 2)  # not reported
                phases = {}
                for r in range(1, repeat + 1):  # each round has its own baseline: the machine's speed then
                    tag = "" if r == 1 else f"#{r}"
                    phases[f"baseline_health{tag}"] = await measured(
                        server, run_phase(pool, lambda i: HEALTH, max(rates), seconds))
                    for rate in rates:
                        phases[f"decide_{int(rate)}{tag}"] = await measured(
                            server, run_phase(pool, apply_request, rate, seconds))
            finally:
                await close_pool(pool)
            return warmup, phases

        warmup, phases = asyncio.run(drive())
    finally:
        stop(server)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM decisions WHERE idempotency_key LIKE :k"),
                              {"k": f"bench-{run}-%"}).scalar_one()
        outcomes = dict(conn.execute(text("SELECT outcome, count(*) FROM decisions WHERE idempotency_key LIKE :k "
                                          "GROUP BY outcome"), {"k": f"bench-{run}-%"}).all())
    engine.dispose()
    created = sum(p["status_counts"].get("201", 0) for k, p in phases.items() if k.startswith("decide"))
    created += warmup["status_counts"].get("201", 0)
    return {"database": label, "workers": workers, "phases": phases, "decisions_stored": stored, "responses_201": created,
            "outcomes": outcomes}


def p99_summary(results: list[dict], rates: list[float]) -> list[dict]:
    """Per server and rate: each round's p99 beside that round's /health CPU (the machine's
    speed at the time), their median and how many rounds met the issue's 25 ms."""
    out = []
    for r in results:
        phases = r["phases"]
        rounds = sorted({k.partition("#")[2] for k in phases}, key=lambda t: int(t or 1))
        for rate in rates:
            p99 = [phases[f"decide_{int(rate)}" + (f"#{t}" if t else "")]["latency_ms_p99"] for t in rounds]
            base = [phases["baseline_health" + (f"#{t}" if t else "")]["server_cpu_ms_per_request"] for t in rounds]
            out.append({"config": f"{r['database']} x{r['workers']}", "rate": rate, "p99_ms": p99,
                        "baseline_cpu_ms": base, "median_p99_ms": float(np.median(p99)),
                        "rounds_within_25ms": sum(p <= 25 for p in p99)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parties", type=int, default=5000)
    parser.add_argument("--rates", default="100,200,300,400", help="decisions/s to offer, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="per phase")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--workers", default="1,2", help="`fieldbank serve --workers`, comma-separated")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of (baseline, every rate) per server; the summary gives each round's p99")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    assert 1 <= args.repeat <= 10, "--repeat is 1..10"
    rates = [float(r) for r in args.rates.split(",")]
    data_dir = build_economy(args.parties)
    parties = portrait_parties(data_dir)
    results = []
    configs = [(label, int(w)) for label in args.databases.split(",") for w in args.workers.split(",")]
    for label, workers in configs:
        if label == "sqlite":
            db = data_dir.parent / f"bench_{args.parties}.db"
            db.unlink(missing_ok=True)
            url = f"sqlite:///{db}"
        else:
            admin = create_engine(PG_URL)
            schema = "bench_decide"
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
                conn.execute(text(f"CREATE SCHEMA {schema}"))
            admin.dispose()
            url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        console.print(f"[bold]{label}[/bold], {workers} worker(s): serving {data_dir} on {url}")
        results.append(bench_database(label, data_dir, url, parties, rates, args.seconds, workers, args.repeat))

    table = Table(title="decision service under load (one `fieldbank serve`, loopback)")
    for col in ("database", "phase", "offered/s", "achieved/s", "p50 ms", "p99 ms", "max ms",
                "CPU ms/req: server", "db", "load gen", "other jobs", "machine busy", "gen lag max ms", "statuses"):
        table.add_column(col, justify="right" if col not in ("database", "phase", "statuses") else "left")
    for r in results:
        for name, p in r["phases"].items():
            table.add_row(f"{r['database']} x{r['workers']}", name, f"{p['target_per_s']:.0f}", f"{p['achieved_per_s']:.0f}",
                          f"{p['latency_ms_p50']:.2f}", f"{p['latency_ms_p99']:.2f}", f"{p['latency_ms_max']:.0f}",
                          f"{p['server_cpu_ms_per_request']:.2f}", f"{p['database_cpu_ms_per_request']:.2f}",
                          f"{p['generator_cpu_ms_per_request']:.2f}", f"{p['other_cpu_ms_per_request']:.2f}",
                          f"{p['machine_cpu_busy_share']:.0%}", f"{p['generator_lag_ms_max']:.0f}",
                          json.dumps(p["status_counts"]))
    console.print(table)
    console.print(f"machine load average at the end: {os.getloadavg()} on {os.cpu_count()} CPUs")
    steps = Table(title="time per step inside the server, mean (p99) ms, from Server-Timing")
    steps.add_column("database / phase")
    for s in STEPS:
        steps.add_column(s, justify="right")
    steps.add_column("sum of steps", justify="right")
    for r in results:
        for name, p in r["phases"].items():
            if "steps_ms_mean" in p:
                steps.add_row(f"{r['database']} x{r['workers']} {name}",
                              *[f"{p['steps_ms_mean'][s]:.2f} ({p['steps_ms_p99'][s]:.1f})" for s in STEPS],
                              f"{sum(p['steps_ms_mean'].values()):.2f}")
    console.print(steps)
    summary = p99_summary(results, rates)
    if args.repeat > 1:
        table = Table(title=f"p99 ms per round ({args.repeat} rounds; in brackets the round's /health server CPU ms)")
        for col in ("database", "offered/s", "p99 per round", "median p99", "rounds with p99 <= 25 ms"):
            table.add_column(col)
        for row in summary:
            table.add_row(row["config"], f"{row['rate']:.0f}",
                          "  ".join(f"{p:.1f} ({b:.2f})" for p, b in zip(row["p99_ms"], row["baseline_cpu_ms"])),
                          f"{row['median_p99_ms']:.1f}", f"{row['rounds_within_25ms']}/{len(row['p99_ms'])}")
        console.print(table)
    for r in results:
        console.print(f"{r['database']} x{r['workers']}: {r['decisions_stored']} decisions stored for {r['responses_201']} created "
                      f"responses (incl. warm-up); outcomes {r['outcomes']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
        "cpus": os.cpu_count(), "load_average_end": os.getloadavg(), "parties": args.parties, "seconds_per_phase": args.seconds,
        "repeat": args.repeat, "p99_summary": summary, "results": results,
    }, indent=1))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
