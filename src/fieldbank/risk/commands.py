"""CLI verbs of the risk stage: `fieldbank train` and `fieldbank models list|show|promote`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from fieldbank.config import load_settings
from fieldbank.risk import registry
from fieldbank.risk.features import FeatureSpec
from fieldbank.risk.tabular import fit_all, load_table, validate

console = Console()
models_app = typer.Typer(help="The model registry: list, show and promote models.", no_args_is_help=True)


def _metrics_table(title: str, summary: dict) -> Table:
    t = Table(title=title)
    for col in ("model", "AUC", "± sd", "KS", "Brier", "ECE"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for model in summary:
        m = summary[model]
        t.add_row(model, f"{m['auc']['mean']:.4f}", f"{m['auc']['sd']:.4f}",
                  *(f"{m[k]['mean']:.4f}" for k in ("ks", "brier", "ece")))
    return t


def train_command(
    table: Path = typer.Option(None, "--table", help="generic mode: CSV or Parquet file, one row per applicant"),
    target: str = typer.Option(None, "--target", help="column saying who went bad (0/1, or see --bad-value)"),
    as_of: list[str] = typer.Option(None, "--as-of", help="portrait mode: monthly as_of dates YYYY-MM-DD "
                                    "(repeat; the newest labelled one is the out-of-time set); default: "
                                    "planned from the lake (up to 10 training months + 1 OOT month)"),
    horizon_days: int = typer.Option(365, min=30, max=1095, help="portrait mode: default within this many days"),
    population: str = typer.Option("open_at_d", help="portrait mode: open_at_d (a loan open at D) or exposed"),
    observed_until: str = typer.Option(None, help="portrait mode: end of the observed period (default: the "
                                       "day after the lake's last payment)"),
    bad_value: list[str] = typer.Option(None, "--bad-value", help="value(s) of the target that mean bad"),
    time_column: str = typer.Option(None, "--time-column", help="validate out-of-time on the newest 20%"),
    drop: list[str] = typer.Option(None, "--drop", help="columns that are not features (ids, leaks)"),
    increasing_risk: list[str] = typer.Option(None, "--increasing-risk", help="numeric columns where more = riskier"),
    decreasing_risk: list[str] = typer.Option(None, "--decreasing-risk", help="numeric columns where more = safer"),
    name: str = typer.Option(None, "--name", help="registry name; default: the file's stem"),
    folds: int = typer.Option(5, min=2, max=20, help="cross-validation folds (no time column)"),
    repeats: int = typer.Option(None, min=1, max=20, help="CV repeats; default 5 below 5,000 rows, else 1"),
    seed: int = typer.Option(0, help="random seed"),
    data_dir: Path = typer.Option(None, help="fieldbank data folder (default var/)"),
) -> None:
    """Train, validate and register credit models: on portraits (--as-of ...) or on any table (--table)."""
    settings = load_settings(data_dir=data_dir)
    if table is None:
        train_portraits(settings, as_of, name or "portrait", seed, horizon_days, population, observed_until)
        return
    if target is None:
        raise typer.BadParameter("--table needs --target", param_hint="--target")
    data = load_table(table, target, bad_value, time_column, drop)
    monotone = {c: 1 for c in increasing_risk or []} | {c: -1 for c in decreasing_risk or []}
    spec = FeatureSpec.infer(data.x, monotone)
    console.print(
        f"{data.source.name}: {len(data.y_bad):,} rows, bad rate {data.y_bad.mean():.3f}, "
        f"{len(spec.numeric)} numeric + {len(spec.categorical)} categorical features"
        + (f", {data.dropped_rows} rows without a target dropped" if data.dropped_rows else "")
    )
    n_fits = 1 if time_column else folds * (repeats or (5 if len(data.y_bad) < 5000 else 1))
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("validating", total=n_fits)
        validation = validate(data, spec, seed, folds, repeats, progress=lambda: bar.advance(task))
        bar.update(task, description="fitting the final models on all rows", completed=n_fits)
        final = fit_all(spec, data.x, data.y_bad, data.time, seed)
    summary = validation.summary()
    metrics = {"validation": validation.method, "summary": summary, "folds": validation.folds,
               "train": validation.train, "rows": int(len(data.y_bad)), "bad_rate": float(data.y_bad.mean())}

    def write(folder: Path) -> None:
        (folder / "features.json").write_text(json.dumps(spec.to_json(), indent=1))
        final.lgbm.save(folder)
        final.scorecard.save(folder)

    window = None
    if data.time is not None:
        window = {"from": data.time.min().isoformat(), "to": data.time.max().isoformat()}
    metadata = {
        "mode": "tabular", "source": str(data.source), "data_sha256": data.fingerprint, "target": target,
        "bad_values": bad_value or [1], "features": spec.columns, "training_window": window,
        "champion_model": "lgbm", "challenger_model": "scorecard", "validation": validation.method,
        "final_fit": "refit on all rows with the same procedure as each validation fit", "seed": seed,
    }
    folder = registry.register(settings.models_dir, name or data.source.stem.lower().replace(".", "_"),
                               write, metadata, metrics)
    console.print(_metrics_table(f"validated: {validation.method}", summary))
    lg = summary["lgbm"]
    console.print(
        f"[bold]registered {folder}[/bold]: LightGBM AUC {lg['auc']['mean']:.4f}, KS {lg['ks']['mean']:.4f}, "
        f"ECE {lg['ece']['mean']:.4f}; every metric in {folder / 'metrics.json'}"
    )


def train_portraits(settings, as_of: list[str], name: str, seed: int, horizon_days: int, population: str,
                     observed_until: str | None) -> None:
    import datetime as dt

    from fieldbank.portrait.pipeline import parse_as_of
    from fieldbank.risk.dataset import POPULATIONS, plan_as_of_dates
    from fieldbank.risk.portrait_training import MODEL_KEYS, train_on_portraits

    if population not in POPULATIONS:
        raise typer.BadParameter(f"--population {population!r}: must be one of {', '.join(POPULATIONS)}")
    try:
        until = dt.date.fromisoformat(observed_until) if observed_until else None
        days = parse_as_of(as_of) if as_of else plan_as_of_dates(settings.lake_dir, horizon_days, observed_until=until)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    if not as_of:
        console.print(f"as_of dates (planned): {', '.join(map(str, days))}")
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("modelling table", total=None)
        result = train_on_portraits(settings, days, name, seed, horizon_days, population, until,
                                    progress=lambda msg: bar.update(task, description=msg))
    console.print(result.table.describe())
    t = Table(title="AUC / KS / ECE, train vs out-of-time")
    for col in ("model", "train AUC", "train KS", "train ECE", "OOT AUC", "OOT KS", "OOT ECE"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for k in MODEL_KEYS:
        tr, oo = result.metrics[k]["train"], result.metrics[k]["oot"]
        t.add_row(k, *(f"{m[c]:.4f}" for m in (tr, oo) for c in ("auc", "ks", "ece")))
    console.print(t)
    u = Table(title=f"uplift on the same {result.metrics['lgbm_both']['oot']['rows']:,} out-of-time rows")
    for col in ("model", "features", "n", "OOT AUC", "vs traditional", "OOT ECE"):
        u.add_column(col, justify="left" if col in ("model", "features") else "right")
    for row in result.uplift:
        u.add_row(row["model"], row["features"], str(row["n_features"]), f"{row['oot_auc']:.4f}",
                  f"{row['auc_minus_traditional']:+.4f}", f"{row['oot_ece']:.4f}")
    console.print(u)
    champ = result.metrics["lgbm_both"]["oot"]
    console.print(f"[green]train[/green]: registered {result.folder} in {result.seconds:.1f} s: champion lgbm_both "
                  f"OOT AUC {champ['auc']:.4f}, KS {champ['ks']:.4f}, ECE {champ['ece']:.4f}"
                  + (f" (true-PD ceiling {result.truth_auc_oot:.4f})" if result.truth_auc_oot is not None else "")
                  + f"; report {result.report_path}")


def score_command(
    party_id: str = typer.Option(..., "--party-id", help="the party to score"),
    as_of: str = typer.Option(None, "--as-of", help="portrait date YYYY-MM-DD (default: the newest portrait)"),
    name: str = typer.Option(None, "--name", help="model name (default: the champion, else the newest 'portrait')"),
    version: int = typer.Option(None, "--version"),
    data_dir: Path = typer.Option(None, help="fieldbank data folder (default var/)"),
) -> None:
    """PD, score points and the top 4 reasons for one party, from a portrait-mode model."""
    import datetime as dt

    from fieldbank.risk.scoring import score_party

    settings = load_settings(data_dir=data_dir)
    try:
        day = dt.date.fromisoformat(as_of) if as_of else None
        scored = score_party(settings, party_id, day, name, version)
    except (ValueError, LookupError) as err:
        raise typer.BadParameter(str(err)) from err
    console.print(f"[bold]{party_id}[/bold] as of {scored.as_of}: PD {scored.pd:.4f}, score {scored.points:.0f} "
                  f"points, model {scored.model} ({scored.folder})")
    for i, reason in enumerate(scored.reasons, 1):
        console.print(f"  {i}. {reason.text}  [dim](+{reason.impact:.3f} {reason.unit})[/dim]")
    if not scored.reasons:
        console.print("  no feature pushed this party's risk above the model's baseline")


@models_app.command("list")
def models_list(data_dir: Path = typer.Option(None)) -> None:
    """Every registered model version, champion marked."""
    settings = load_settings(data_dir=data_dir)
    t = Table(title=f"models in {settings.models_dir}")
    for col in ("name", "version", "created", "mode", "rows", "validated AUC", "champion"):
        t.add_column(col)
    for row in registry.list_models(settings.models_dir):
        metrics = json.loads((registry.folder_of(settings.models_dir, row["name"], row["version"]) / "metrics.json").read_text())
        auc = metrics["summary"][row["champion_model"]]["auc"]["mean"]  # OOT AUC in portrait mode
        t.add_row(row["name"], str(row["version"]), row["created_at"], row["mode"], f"{metrics['rows']:,}",
                  f"{auc:.4f}", "★" if row["champion"] else "")
    console.print(t)


@models_app.command("show")
def models_show(name: str, version: int = typer.Option(None), data_dir: Path = typer.Option(None)) -> None:
    """A model's metadata and validated metrics."""
    settings = load_settings(data_dir=data_dir)
    folder = registry.folder_of(settings.models_dir, name, version)
    meta = json.loads((folder / "metadata.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    console.print_json(json.dumps(meta))
    console.print(_metrics_table(f"{name} v{meta['version']}: {metrics['validation']}", metrics["summary"]))


@models_app.command("promote")
def models_promote(name: str, version: int = typer.Option(None, help="default: the newest"), data_dir: Path = typer.Option(None)) -> None:
    """Make a model version the champion (the one the decision service uses)."""
    settings = load_settings(data_dir=data_dir)
    folder = registry.promote(settings.models_dir, name, version)
    console.print(f"champion is now {name} v{int(folder.name)} ({folder})")
