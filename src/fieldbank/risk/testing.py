"""A small simulated economy with trained portrait models, for tests and benchmarks: simulate
18 months from 2023-01, ingest, train on five month starts (the last one out of time) with a
180-day label, optionally promote the champion. One definition, so the decision, backtest and
risk tests and the decision benchmark train on the same kind of data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from fieldbank.config import load_settings

if TYPE_CHECKING:
    from fieldbank.config import Settings
    from fieldbank.risk.portrait_training import TrainingResult

TRAIN_DATES = [dt.date(2023, m, 1) for m in (4, 5, 6, 7)] + [dt.date(2024, 1, 1)]
HORIZON_DAYS = 180


def trained_economy(data_dir: Path, *, parties: int, pd_paths: int = 4, promote: bool = False
                    ) -> tuple[Settings, TrainingResult]:
    from fieldbank.lake.commands import ingest_command
    from fieldbank.risk import registry
    from fieldbank.risk.portrait_training import train_on_portraits
    from fieldbank.simulate.commands import simulate_command

    simulate_command(parties=parties, months=18, seed=11, start="2023-01-01", pd_paths=pd_paths,
                     data_dir=data_dir, quiet=True)
    ingest_command(src=data_dir / "raw", data_dir=data_dir)
    settings = load_settings(data_dir=data_dir)
    result = train_on_portraits(settings, TRAIN_DATES, horizon_days=HORIZON_DAYS, seed=3)
    if promote:
        registry.promote(settings.models_dir, "portrait")
    return settings, result
