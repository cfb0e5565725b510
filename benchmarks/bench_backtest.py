"""Policy backtest at size: applicants, inclusion curves, and the policy replay's speed.

Runs on an economy that already has a lake, truth and a promoted portrait champion (e.g. the
one `fieldbank demo --parties 100000 --data-dir var/big100k` leaves behind):

    uv run python benchmarks/bench_backtest.py --data-dir var/big100k [--out benchmarks/results/backtest_100k.json]

Baseline in the same run: the decision service's own path, `Policy.evaluate` one applicant at
a time (with the engine's trace, as the service records every rule), on the same facts
(capped at --baseline-rows to stay in the time box), against the backtest's batch path
(`BatchPolicy.decide`: `ZenEngine.evaluate_batch` without a trace) on every applicant.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fieldbank.config import load_settings
from fieldbank.decision.backtest import BatchPolicy, applicant_facts, build_applicants, inclusion
from fieldbank.decision.policy import Policy
from fieldbank.decision.sources import Parties
import fieldbank.risk.scoring  # noqa: F401  (imported before the clock starts: lightgbm + sklearn take seconds)

MAX_BASELINE_ROWS = 100_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--policy", type=Path, default=None, help="default: the decision service's champion policy")
    ap.add_argument("--baseline-rows", type=int, default=20_000)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/backtest.json"))
    args = ap.parse_args()
    assert 1 <= args.baseline_rows <= MAX_BASELINE_ROWS, args.baseline_rows
    console = Console()
    settings = load_settings(data_dir=args.data_dir)
    policy_path = args.policy or settings.decision.policy_path
    load_before = os.getloadavg()

    t = time.perf_counter()
    app = build_applicants(settings, progress=lambda m: console.log(m))
    applicants_s = time.perf_counter() - t
    t = time.perf_counter()
    inc = inclusion(app, bootstrap=args.bootstrap)
    inclusion_s = time.perf_counter() - t

    parties = Parties.load(settings.lake_dir)
    t = time.perf_counter()
    sf = applicant_facts(app, settings.decision, parties)
    facts_s = time.perf_counter() - t
    batch = BatchPolicy(policy_path)
    t = time.perf_counter()
    decided = batch.decide(sf.facts)  # includes the sample check against Policy.evaluate
    batch_s = time.perf_counter() - t
    policy = Policy.load(policy_path)
    n_base = min(args.baseline_rows, len(sf.facts))
    t = time.perf_counter()
    base = [policy.evaluate(f) for f in sf.facts[:n_base]]
    base_s = time.perf_counter() - t
    same = sum((b.outcome, b.grade) == (d.outcome, d.grade) for b, d in zip(base, decided))
    assert same == n_base, f"batch and Policy.evaluate disagree on {n_base - same} of {n_base} applicants"

    n = len(app)
    batch_rate, base_rate = n / batch_s, n_base / base_s
    result = {
        "data_dir": str(args.data_dir), "as_of": app.as_of.isoformat(), "applicants": n,
        "population_bad_rate": float(app.frame["realized_default"].mean()),
        "no_credit_file_share": float((app.frame["thin_has_credit_file"].fillna(0) == 0).mean()),
        "approval_at_2pct": inc.approval, "approval_at_2pct_interval_90": inc.interval,
        "champion_over_traditional": inc.ratio, "champion_over_traditional_interval_90": inc.ratio_interval,
        "champion_over_traditional_bootstrap_median": inc.ratio_median,
        "approval_by_target": {r: {f"{k:g}": v for k, v in d.items()} for r, d in inc.approval_by_target.items()},
        "bad_rate_at_champion_approval": inc.bad_rate_at_champion_approval,
        "no_credit_file_approval_at_2pct": inc.no_credit_file_approval,
        "seconds": {"applicants": applicants_s, "inclusion_with_bootstrap": inclusion_s, "facts": facts_s,
                    "batch_policy": batch_s, "policy_evaluate_baseline": base_s},
        "batch_decisions_per_s": batch_rate, "policy_evaluate_decisions_per_s": base_rate,
        "baseline_rows": n_base, "speedup": batch_rate / base_rate, "bootstrap": args.bootstrap,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    t = Table(title=f"backtest on {n:,} applicants as of {app.as_of} ({args.data_dir})")
    for col in ("what", "value", "baseline (same run)"):
        t.add_column(col, justify="left" if col == "what" else "right")
    t.add_row("applicants built (portrait, 3 models, truth)", f"{applicants_s:.1f} s", "")
    t.add_row(f"inclusion curves + {args.bootstrap} bootstrap resamples", f"{inclusion_s:.1f} s", "")
    t.add_row("policy facts (service rules)", f"{facts_s:.1f} s", "")
    t.add_row("policy decisions/s", f"{batch_rate:,.0f} (batch, {n:,})",
              f"{base_rate:,.0f} (Policy.evaluate, {n_base:,}) = {batch_rate / base_rate:.1f}x")
    for role, v in inc.approval.items():
        lo, hi = inc.interval.get(role, (float("nan"), float("nan")))
        t.add_row(f"approval at 2% bad rate: {role}", f"{v:.2%}", f"90% {lo:.2%} .. {hi:.2%}")
    ratio = "unbounded" if inc.ratio is None else f"{inc.ratio:.1f}x"
    t.add_row("champion / traditional", ratio,
              f"90% {inc.ratio_interval[0]:.1f}x .. {inc.ratio_interval[1]:.1f}x, median {inc.ratio_median:.1f}x"
              if inc.ratio_interval else "")
    console.print(t)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=float))
    tmp.replace(args.out)
    console.print(f"bench_backtest: {n:,} applicants, batch {batch_rate:,.0f}/s vs Policy.evaluate "
                  f"{base_rate:,.0f}/s -> {args.out}")


if __name__ == "__main__":
    main()
