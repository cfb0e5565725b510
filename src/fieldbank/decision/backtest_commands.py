"""`fieldbank backtest`: the CLI verb over fieldbank.decision.backtest (heavy imports inside,
so the command line starts fast)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer
from rich.console import Console

# --------------------------------------------------------------------------- CLI verb



def backtest_command(
    policy: Path = typer.Option(None, "--policy", help="candidate policy (GoRules JDM JSON) to replay"),
    champion_policy: Path = typer.Option(None, "--champion-policy",
                                         help="current policy to compare with (default: the decision "
                                              "service's policy_path, policies/credit_policy.json)"),
    as_of: str = typer.Option(None, "--as-of", help="applicants' date YYYY-MM-DD (a month start after the models' "
                              "training window); default: the newest month with a ground-truth outcome"),
    target_bad_rate: float = typer.Option(0.02, min=0.001, max=0.5, help="bad rate at which approval is compared"),
    bootstrap: int = typer.Option(200, min=0, max=2_000, help="bootstrap resamples for the intervals"),
    term_days: int = typer.Option(365, min=30, max=1_825, help="loan term for the policy facts and the money"),
    amount_minor: int = typer.Option(None, "--amount-minor", min=1, help="amount every applicant asks for "
                                     "(default: the simulator's standard loan, from truth/)"),
    out: Path = typer.Option(None, help="HTML report path (default <data-dir>/reports/backtest_<as_of>.html); "
                             "a JSON of every figure is written next to it"),
    data_dir: Path = typer.Option(None, help="fieldbank data folder (default var/)"),
) -> None:
    """Replay applicants under a candidate policy vs the champion; inclusion curves by model."""
    from rich.progress import Progress

    from fieldbank.config import load_settings
    from fieldbank.decision.backtest import BacktestError, run_backtest
    from fieldbank.decision.backtest_report import print_tables, write_outputs
    from fieldbank.decision.policy import PolicyError

    console = Console()
    settings = load_settings(data_dir=data_dir)
    if champion_policy is None and settings.decision.policy_path.is_file():
        champion_policy = settings.decision.policy_path
    try:
        day = dt.date.fromisoformat(as_of) if as_of else None
    except ValueError:
        raise typer.BadParameter(f"{as_of!r} is not a date YYYY-MM-DD", param_hint="--as-of") from None
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("backtest", total=None)
        try:
            result = run_backtest(settings, policy, champion_policy, day, target_bad_rate, bootstrap,
                                  term_days, amount_minor,
                                  progress=lambda msg: bar.update(task, description=msg))
        except (BacktestError, PolicyError, LookupError) as e:
            console.print(f"[red]backtest: {e}[/red]")
            raise typer.Exit(2) from None
    print_tables(result, console)
    path = out or settings.data_dir / "reports" / f"backtest_{result.applicants.as_of.isoformat()}.html"
    html_path, json_path = write_outputs(result, path)
    total = sum(result.seconds.values())
    console.print(f"backtest: {len(result.applicants):,} applicants as of {result.applicants.as_of}, "
                  f"{len(result.policies)} polic{'y' if len(result.policies) == 1 else 'ies'} replayed in {total:.1f} s "
                  f"-> {html_path} (+ {json_path.name})")
