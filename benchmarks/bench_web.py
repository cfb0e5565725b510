"""Benchmark: how fast the web pages load on the demo data.

Starts `fieldbank serve` on a finished demo's data folder, signs in as staff and as a borrower,
and measures (1) the server's response time per page over real HTTP (median and p95 of N
requests) and (2) in Debian's chromium at a phone viewport, the time from navigation to the
page's `load` event and, for the dashboard, until every chart has drawn. Baseline measured in
the same run: GET /health (the framework's floor for one request), reported as a ratio.
Read-only apart from the sign-ins.

    uv run --frozen fieldbank demo --no-serve        # once: var/demo
    uv run --frozen python benchmarks/bench_web.py --data-dir var/demo
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

from fieldbank.api.process import start_serve, stop
from fieldbank.web.auth import access_code, load_secret

console = Console()
RESULTS = Path(__file__).parent / "results" / "web.json"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
STARTUP_LIMIT_S = 120


def _times_ms(client: httpx.Client, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        r = client.get(url)
        out.append(1000 * (time.perf_counter() - started))
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return out


def _sign_in(base: str, role: str, subject: str, secret: bytes) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=60)
    r = client.post("/login", data={"role": role, "user": subject, "code": access_code(secret, role, subject)})
    assert r.status_code in (200, 303), r.text[:300]
    return client


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=Path("var/demo"))
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--browser-runs", type=int, default=5)
    args = ap.parse_args()
    assert 1 <= args.requests <= 1000 and 1 <= args.browser_runs <= 50
    db = create_engine(f"sqlite:///{args.data_dir / 'bank.db'}")
    with db.connect() as conn:
        party, loan_id = conn.execute(text("SELECT party_id, loan_id FROM loans ORDER BY loan_id LIMIT 1")).one()
        n_loans = conn.execute(text("SELECT count(*) FROM loans")).scalar_one()
        # The dashboard caches its portfolio view until the book changes; time the recompute too.
        from fieldbank.monitor.portfolio import portfolio_view

        portfolio_view(conn)
        t = []
        for _ in range(min(args.requests, 10)):
            started = time.perf_counter()
            portfolio_view(conn)
            t.append(1000 * (time.perf_counter() - started))
        t.sort()
        uncached = {"what": "portfolio view recomputed (book changed)", "path": "monitor.portfolio_view",
                    "kind": "in-process", "median_ms": statistics.median(t), "p95_ms": t[-1]}
    db.dispose()
    served = start_serve(args.data_dir, output=subprocess.DEVNULL, startup_limit_s=STARTUP_LIMIT_S)
    server, base = served.process, served.base_url
    rows: list[dict] = []
    try:
        secret = load_secret(args.data_dir)
        anon = httpx.Client(base_url=base, timeout=60)
        ops = _sign_in(base, "ops", "ops", secret)
        me = _sign_in(base, "borrower", party, secret)
        pages = [("GET /health (baseline)", anon, "/health"), ("GET /bank/portfolio (JSON)", anon, "/bank/portfolio"),
                 ("sign-in page", anon, "/login"), ("borrower: my loans", me, "/me"),
                 ("borrower: loan, schedule", me, f"/me/loans/{loan_id}"), ("borrower: apply", me, "/me/apply"),
                 ("ops: dashboard", ops, "/ops"), ("ops: decision log", ops, "/ops/decisions"),
                 ("plotly.min.js (4.8 MB)", anon, "/static/plotly.min.js")]
        for name, client, path in pages:
            _times_ms(client, path, 2)  # warm: first-request imports are not the steady state
            t = sorted(_times_ms(client, path, args.requests))
            rows.append({"what": name, "path": path, "kind": "server", "median_ms": statistics.median(t),
                         "p95_ms": t[min(len(t) - 1, int(0.95 * len(t)))]})
            if path == "/ops":
                rows.append(uncached)
        # The browser: navigation to load, and the dashboard until every chart has drawn.
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            ctx = browser.new_context(viewport={"width": 390, "height": 844})
            ctx.add_cookies([{"name": "fieldbank_session", "value": ops.cookies["fieldbank_session"],
                              "url": base}])
            page = ctx.new_page()
            for name, path, charts in (("browser: dashboard, all charts drawn", "/ops", True),
                                       ("browser: decision log", "/ops/decisions", False)):
                t = []
                for _ in range(args.browser_runs):
                    started = time.perf_counter()
                    page.goto(base + path, wait_until="load")
                    if charts:
                        page.wait_for_function("() => [...document.querySelectorAll('.chart[data-figure]')]"
                                               ".every(el => el.querySelector('svg.main-svg'))")
                    t.append(1000 * (time.perf_counter() - started))
                t.sort()
                rows.append({"what": name, "path": path, "kind": "browser", "median_ms": statistics.median(t),
                             "p95_ms": t[-1]})
            bctx = browser.new_context(viewport={"width": 390, "height": 844})
            bctx.add_cookies([{"name": "fieldbank_session", "value": me.cookies["fieldbank_session"], "url": base}])
            bpage = bctx.new_page()
            for name, path in (("browser: borrower loan page", f"/me/loans/{loan_id}"),
                               ("browser: apply page", "/me/apply")):
                t = []
                for _ in range(args.browser_runs):
                    started = time.perf_counter()
                    bpage.goto(base + path, wait_until="load")
                    t.append(1000 * (time.perf_counter() - started))
                t.sort()
                rows.append({"what": name, "path": path, "kind": "browser", "median_ms": statistics.median(t),
                             "p95_ms": t[-1]})
            browser.close()
    finally:
        stop(server)
    baseline = rows[0]["median_ms"]
    table = Table(title=f"web pages on {args.data_dir} ({n_loans} loans): {args.requests} requests per page, "
                        f"{args.browser_runs} browser loads")
    for col in ("what", "median ms", "p95 / max ms", "x /health"):
        table.add_column(col, justify="left" if col == "what" else "right")
    for r in rows:
        r["ratio_to_health"] = r["median_ms"] / baseline
        table.add_row(r["what"], f"{r['median_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['ratio_to_health']:.1f}")
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"data_dir": str(args.data_dir), "loans": n_loans, "requests": args.requests,
                                   "browser_runs": args.browser_runs, "machine": platform.platform(),
                                   "cpus": __import__("os").cpu_count(), "rows": rows}, indent=1))
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
