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
from fieldbank.risk.tabular import MODEL_NAMES, fit_all, load_table, validate

console = Console()
models_app = typer.Typer(help="The model registry: list, show and promote models.", no_args_is_help=True)


def _metrics_table(title: str, summary: dict) -> Table:
    t = Table(title=title)
    for col in ("model", "AUC", "± sd", "KS", "Brier", "ECE"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for model in MODEL_NAMES:
        m = summary[model]
        t.add_row(model, f"{m['auc']['mean']:.4f}", f"{m['auc']['sd']:.4f}",
                  *(f"{m[k]['mean']:.4f}" for k in ("ks", "brier", "ece")))
    return t


def train_command(
    table: Path = typer.Option(..., "--table", help="CSV or Parquet file, one row per applicant"),
    target: str = typer.Option(..., "--target", help="column saying who went bad (0/1, or see --bad-value)"),
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
    """Train, validate and register credit models on any tabular data set (generic mode)."""
    settings = load_settings(data_dir=data_dir)
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


@models_app.command("list")
def models_list(data_dir: Path = typer.Option(None)) -> None:
    """Every registered model version, champion marked."""
    settings = load_settings(data_dir=data_dir)
    t = Table(title=f"models in {settings.models_dir}")
    for col in ("name", "version", "created", "mode", "rows", "validated AUC", "champion"):
        t.add_column(col)
    for row in registry.list_models(settings.models_dir):
        metrics = json.loads((registry.folder_of(settings.models_dir, row["name"], row["version"]) / "metrics.json").read_text())
        auc = metrics["summary"][row["champion_model"]]["auc"]["mean"]
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
