"""`fieldbank simulate`: the CLI shell around fieldbank.simulate.simulate()."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from fieldbank.simulate.engine import SimReport, simulate
from fieldbank.simulate.params import MAX_MONTHS, MAX_PARTIES, MIN_PARTIES, SimParams

# Aim ranges of the realism figures (docs/simulator.md).
AIMS = {
    "default_rate_past_loans": (0.02, 0.08),
    "credit_history_share": (0.0, 0.30),
    "auc_traditional_logit": (0.65, 0.75),
}
LABELS = {
    "default_rate_past_loans": "default rate of past loans (90+ DPD, seasoned)",
    "credit_history_share": "share of parties with a credit history",
    "auc_traditional_logit": "AUC, logistic regression on traditional fields",
    "auc_alternative_logit": "AUC, logistic regression on simple alt-data features",
    "auc_traditional_plus_alternative_logit": "AUC, traditional + alt-data features",
    "auc_true_pd": "AUC, true PD of a standard new loan, at opening",
    "auc_late_bills_6m": "AUC, late-bill share in the 6 months before (alt data)",
    "population_default_rate_standard_loan": "counterfactual 90+ rate, standard loan, everyone",
    "mean_true_pd": "mean true 12-month PD, everyone",
    "auc_true_pd_vs_counterfactual": "AUC, true PD vs counterfactual label",
    "auc_loan_true_pd_365d": "AUC, loan truth (true PD of the label event) vs outcome",
    "mean_loan_true_pd_365d": "mean loan truth PD, open loans x month starts",
    "loan_default_rate_365d": "realized 365-day default rate, same rows",
}


def _value(option: object) -> object:
    """The default of a typer.Option when the function is called directly from Python."""
    return getattr(option, "default", option)


# Below this many defaults among the seasoned loans an AUC is too noisy to judge.
MIN_DEFAULTS_FOR_AUC = 50


def realism_table(report: SimReport) -> Table:
    r = report.realism
    seasoned = int(r.get("seasoned_loans", 0))
    defaults = int(round(r.get("default_rate_past_loans", 0.0) * seasoned)) if seasoned else 0
    few = defaults < MIN_DEFAULTS_FOR_AUC
    caption = f"{seasoned:,} seasoned loans, {defaults:,} defaults"
    if few:
        caption += ": too few for stable AUCs (simulate 10,000+ parties to judge them)"
    table = Table(title="realism of the simulated economy", caption=caption)
    for col in ("figure", "value", "aim"):
        table.add_column(col)
    for key, label in LABELS.items():
        value = r.get(key, float("nan"))
        aim = AIMS.get(key)
        if aim is None:
            aim_text = ""
        else:
            ok = aim[0] <= value <= aim[1]
            colour = "green" if ok else ("yellow" if few and key.startswith("auc") else "red")
            aim_text = f"[{colour}]{aim[0]:g} - {aim[1]:g}[/]"
        table.add_row(label, f"{value:.3f}", aim_text)
    return table


def simulate_command(
    parties: int = typer.Option(3000, min=MIN_PARTIES, max=MAX_PARTIES, help="number of parties (households + businesses)"),
    months: int = typer.Option(24, min=1, max=MAX_MONTHS, help="months of history to simulate"),
    seed: int = typer.Option(7, help="random seed; same seed, same economy"),
    start: str = typer.Option("2023-01-01", help="first simulated month (YYYY-MM-01)"),
    pd_paths: int = typer.Option(8, min=1, max=256, help="Monte Carlo paths per party and month for the true PD"),
    data_dir: Path = typer.Option(None, help="root data directory (default: settings)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> SimReport:
    """Simulate a rural and small-business economy: raw events to raw/, ground truth to truth/."""
    from fieldbank.config import load_settings

    parties, months, seed, start = _value(parties), _value(months), _value(seed), _value(start)
    pd_paths, data_dir, quiet = _value(pd_paths), _value(data_dir), _value(quiet)
    try:
        first = dt.date.fromisoformat(str(start))
        params = SimParams(parties=int(parties), months=int(months), seed=int(seed), start=first,
                           pd_paths=int(pd_paths))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    settings = load_settings(data_dir=data_dir)
    console = Console()
    report = simulate(params, settings.raw_dir, settings.truth_dir, progress=not quiet, console=console)
    console.print(realism_table(report))
    rows = ", ".join(f"{name} {count:,}" for name, count in report.rows.items())
    console.print(f"[green]simulated[/green] {params.parties:,} parties x {params.months} months "
                  f"(seed {params.seed}) in {report.seconds:.1f} s: {rows}; raw -> {report.raw_dir}, "
                  f"truth -> {report.truth_dir}")
    return report
